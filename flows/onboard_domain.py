from prefect import flow

from flows.ingest import ingest_flow
from infra.settings import DEFAULT_BACKBONE, IngestParams, OnboardParams, load_settings
from tasks.onboard import (
    adapt_domain_task,
    choose_backbone_task,
    evaluate_domain_task,
    publish_onboarding_task,
    register_domain_task,
    results_storage,
)
from tasks.pretrain import ensure_backbone_task
from tasks.promote import promote_domain_task
from tracking.known_sources import missing_ingests


@flow(name="onboard_domain", log_prints=True)
def onboard_domain_flow(params: OnboardParams, backbone: str = DEFAULT_BACKBONE, promote: bool = True) -> dict:
    """(source ->) store -> the backbone (the default; for daily or finer data the shipped long-context
    one where it validates better) -> teacher + adapter + fusion weight -> validation and test tables of every
    candidate family -> registry, the best validated candidate offered as challenger (-> champion)
    -> Prefect artifacts (report, test table, fan chart, MLflow links).

    adapt and evaluate are cached across runs (results persisted in the state dir) and register
    is idempotent, so a re-run after a crash resumes after the last finished stage."""
    settings = load_settings()
    store = str(settings.store_dir(params.domain))
    if params.source:
        # the ingest flow, so a source given here is validated and logged like any other
        store = ingest_flow(
            IngestParams(
                source=params.source,
                domain=params.domain,
                horizon=params.horizon,
                columns=params.columns,
                date_format=params.date_format,
            )
        )
    for ingest in missing_ingests([params.domain], settings):  # declared or remembered, not ingested yet
        store = ingest_flow(ingest)
    backbone = ensure_backbone_task(settings, backbone)  # a fresh clone registers the shipped one here
    chosen = choose_backbone_task(params, store, backbone, settings)  # daily or finer data: maybe long-context
    cached = {"result_storage": results_storage(settings)}
    result_dir = adapt_domain_task.with_options(**cached)(params, store, chosen["uri"], settings, chosen["why"])
    result_dir = evaluate_domain_task.with_options(**cached)(result_dir, params, settings)
    registered = register_domain_task(result_dir, params, settings)
    if promote:
        registered["promotion"] = promote_domain_task(
            params.domain,
            settings,
            registered["challenger"]["version"],
            result_dir=registered["result_dir"],
            why=registered["challenger"]["reason"],
        )
    registered["artifacts"] = publish_onboarding_task(registered, params.domain, settings)
    return registered
