from prefect import flow

from infra.settings import MonitorParams, load_settings
from tasks.monitor import check_accuracy_task, check_drift_task, log_monitor_task, new_check_dir, react_task
from tracking.registry import monitored_domains


@flow(name="monitor", log_prints=True)
def monitor_flow(params: MonitorParams = MonitorParams()) -> dict:
    """Per domain: stored batch forecasts the new actuals cover -> realized accuracy vs validation;
    per-series features of the store (and served contexts) vs the champion's training data -> PSI;
    -> MLflow run (tsfm-monitor) + Prefect artifact + the verdict on the registry -> tsfm.domain.degraded
    when realized accuracy or drift crosses its threshold (re-onboarding's trigger)."""
    settings = load_settings()
    verdicts = {}
    for domain in monitored_domains(params.domain, settings):
        check_dir = new_check_dir(domain, settings)
        accuracy = check_accuracy_task(domain, params, settings, check_dir)
        drifted = check_drift_task(domain, params, settings, check_dir)
        verdict = log_monitor_task(domain, accuracy, drifted, params, settings, check_dir)
        verdict["event"] = react_task(domain, verdict, params, settings)["emitted"]
        verdicts[domain] = verdict
    return verdicts
