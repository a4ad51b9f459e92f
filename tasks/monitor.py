"""The monitor of one domain as Prefect tasks: how the served forecasts did, whether the data moved,
and what to do about it.

accuracy (stored batch forecasts that the store's actuals now cover, each point once: a ledger of
scored points per domain in ``<state_dir>/monitor/<domain>/scored.parquet``) -> drift (per-series
features of the store and of the contexts the servers received vs the champion's training data) ->
log (MLflow run in tsfm-monitor with tables and plots, the verdict on forecaster-<domain>'s tags for
the servers to export, a Prefect artifact; only then are the points added to the ledger) -> react
(``tsfm.domain.degraded`` with the reasons; re-onboarding's deployment has a trigger on it).

The checks, the verdict and the ledger are ``evaluation/monitoring.py``'s, the MLflow run and the registry
tags ``tracking/monitor_runs.py``'s, the report and plots ``reports/monitor.py``'s; these tasks read the
batch partitions, publish the artifact and emit the event.
"""

from __future__ import annotations

import json
import shutil
import time
from datetime import datetime, timezone

import pandas as pd
from prefect import task

from batch import partitions
from evaluation import monitoring, realized
from infra.events import DOMAIN_DEGRADED, domain_resource, emit
from infra.logs import run_logger
from infra.settings import MonitorParams, Settings
from reports.monitor import monitor_report
from tracking.monitor_runs import log_check, tag_verdict
from tracking.retries import remote_retries

EVENTS = "events.json"  # the drift reasons already announced, so a standing drift re-onboards once


def forecasts_root(domain: str, params: MonitorParams, settings: Settings) -> str:
    return params.forecasts or settings.forecast.output or settings.forecast_dir(domain)


def _stored_forecasts(domain: str, root: str) -> pd.DataFrame:
    """Every committed partition of the domain (a shared output root may hold other domains' too)."""
    frames = []
    for origin in partitions.origins(root):
        m = partitions.manifest(root, origin)
        if m and m.get("domain", domain) == domain:
            frames.append(partitions.read_forecasts(root, origin))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def check_accuracy(domain: str, params: MonitorParams, settings: Settings, check_dir: str) -> dict:
    """Score the due forecast points not scored before; tables and points into ``check_dir``."""
    actuals, meta = monitoring.read_actuals(domain, settings)
    root = forecasts_root(domain, params, settings)
    stored = _stored_forecasts(domain, root)
    return monitoring.realized_accuracy(domain, actuals, meta, root, stored, params, settings, check_dir)


def check_drift(domain: str, params: MonitorParams, settings: Settings, check_dir: str) -> dict:
    """PSI per feature: the current store, and the served contexts, against the champion's training data."""
    from serving.metrics import FEATURE_METRICS

    return monitoring.drift_check(domain, params, settings, check_dir, FEATURE_METRICS)


def log_monitor(
    domain: str, accuracy: dict, drifted: dict, params: MonitorParams, settings: Settings, check_dir: str
) -> dict:
    """MLflow run, the verdict on forecaster-<domain>'s tags, a Prefect artifact; then the ledger."""
    from prefect.artifacts import create_markdown_artifact

    from reports.onboarding import artifact_key

    verdict = monitoring.verdict(domain, accuracy, drifted, time.time())
    table = pd.DataFrame(accuracy.get("table") or [])
    run = log_check(domain, verdict, accuracy, drifted, table, params, settings, check_dir, realized.METRICS)
    verdict["mlflow_run_id"] = run.info.run_id
    tag_verdict(domain, verdict, table, drifted, params)
    try:
        create_markdown_artifact(
            key=artifact_key("monitor", domain),
            description=f"monitor check of {domain}",
            markdown=monitor_report(verdict, table, drifted, settings.tracking_uri, run),
        )
    except Exception:  # noqa: BLE001 - outside a flow run there is nowhere to publish
        pass
    if accuracy["points"]:
        monitoring.add_to_ledger(domain, settings, accuracy["points_file"])  # after the run: a crash before re-scores
    clean_check_dir(check_dir)  # logged to MLflow; the ledger holds the points
    return verdict


def react(domain: str, verdict: dict, params: MonitorParams, settings: Settings) -> dict:
    """``tsfm.domain.degraded`` when the check found reasons; a drift already announced for the same data
    and champion is not announced again (re-onboarding ran, or its gate kept the champion)."""
    out = {"emitted": None, "reasons": verdict["reasons"]}
    if not verdict["degraded"] or not params.emit_events:
        return out
    path = settings.monitor_dir(domain) / EVENTS
    seen = json.loads(path.read_text()) if path.is_file() else {}
    drift_key = f"{verdict.get('data_version')}/{verdict.get('champion')}"
    accuracy = [r for r in verdict["reasons"] if r.startswith("realized")]
    new_drift = [r for r in verdict["reasons"] if not r.startswith("realized") and seen.get(r) != drift_key]
    if not accuracy and not new_drift:
        run_logger().info("monitor %s: drift already announced for this data and champion", domain)
        return out
    reasons = accuracy + new_drift
    out["emitted"] = emit(
        DOMAIN_DEGRADED,
        domain_resource(domain),
        domain,
        {
            "domain": domain,
            "reasons": reasons,
            "reason": "; ".join(reasons),
            "champion": verdict.get("champion"),
            "mlflow_run_id": verdict.get("mlflow_run_id"),
            "data_version": verdict.get("data_version"),
        },
    )
    seen.update({r: drift_key for r in new_drift})
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(seen, indent=2))
    run_logger().warning("monitor %s: %s emitted: %s", domain, DOMAIN_DEGRADED, "; ".join(reasons))
    return out


def new_check_dir(domain: str, settings: Settings) -> str:
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
    return str(settings.monitor_dir(domain) / "checks" / stamp)


def clean_check_dir(check_dir: str) -> None:
    shutil.rmtree(check_dir, ignore_errors=True)


check_accuracy_task = task(check_accuracy, name="realized-accuracy", **remote_retries())
check_drift_task = task(check_drift, name="drift", **remote_retries())
log_monitor_task = task(log_monitor, name="log-monitor", **remote_retries())
react_task = task(react, name="react")
