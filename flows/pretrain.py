from prefect import flow

from flows.ingest import ingest_flow
from infra.settings import PretrainParams, load_settings
from tasks.pretrain import gate_backbone_task, pretrain_backbone_task
from tracking.known_sources import missing_ingests


@flow(name="pretrain", log_prints=True)
def pretrain_flow(params: PretrainParams) -> str:
    """(declared sources not ingested yet ->) ingested stores (train parts) -> trained, registered
    backbone -> gate: champion only if it beats the current one on the same validation windows.
    Returns the champion's versioned URI after the gate (the new one when promoted)."""
    settings = load_settings()
    for ingest in missing_ingests(params.domains, settings):
        ingest_flow(ingest)
    stores = [str(settings.store_dir(d)) for d in params.domains]
    uri = pretrain_backbone_task(params, stores, settings)
    return gate_backbone_task(uri, stores, settings)["champion"]
