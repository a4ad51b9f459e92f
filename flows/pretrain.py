from prefect import flow

from flows.ingest import ingest_flow
from infra.settings import PretrainParams, load_settings
from tasks.ingest import missing_ingests
from tasks.pretrain import pretrain_backbone_task, set_backbone_alias_task


@flow(name="pretrain", log_prints=True)
def pretrain_flow(params: PretrainParams) -> str:
    """(declared sources not ingested yet ->) ingested stores (train parts) -> trained, registered
    backbone; returns its model URI."""
    settings = load_settings()
    for ingest in missing_ingests(params.domains, settings):
        ingest_flow(ingest)
    stores = [str(settings.store_dir(d)) for d in params.domains]
    uri = pretrain_backbone_task(params, stores, settings)
    return set_backbone_alias_task(uri, settings)
