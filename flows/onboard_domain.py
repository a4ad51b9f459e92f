from prefect import flow

from flows.ingest import ingest_flow
from infra.settings import IngestParams, OnboardParams, load_settings
from tasks.artifacts import publish_task
from tasks.onboard import adapt_task, evaluate_task, register_task
from tasks.promote import promote_task


@flow(name="onboard_domain", log_prints=True)
def onboard_domain_flow(params: OnboardParams, backbone: str = "models:/backbone@champion",
                        promote: bool = True) -> dict:
    """(source ->) store -> teacher + adapter + fusion weight -> test table -> registry (-> champion)
    -> Prefect artifacts (report, test table, fan chart, MLflow links)."""
    settings = load_settings()
    store = str(settings.store_dir(params.domain))
    if params.source:
        # the ingest flow, so a source given here is validated and logged like any other
        store = ingest_flow(IngestParams(source=params.source, domain=params.domain, horizon=params.horizon))
    result_dir = adapt_task(params, store, backbone, settings)
    result_dir = evaluate_task(result_dir, store, params)
    registered = register_task(result_dir, params, settings)
    if promote:
        registered["promotion"] = promote_task(params.domain, settings, registered["fused_version"])
    registered["artifacts"] = publish_task(registered, params.domain, settings)
    return registered
