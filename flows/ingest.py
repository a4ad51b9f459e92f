from prefect import flow

from infra.settings import IngestParams, load_settings
from store.horizon import ingest_params
from tasks.ingest import announce_store_task, ingest_task, log_ingest_task


@flow(name="ingest", log_prints=True)
def ingest_flow(params: IngestParams) -> str:
    """source -> validated canonical Parquet store (+ MLflow ingest run) -> ``tsfm.store.updated`` when its
    data changed (the monitor's trigger); returns the store path."""
    settings = load_settings()
    params = ingest_params(params, settings)
    store = ingest_task(
        params.source,
        params.domain,
        params.horizon,
        params.min_train,
        settings.paths.data_dir,
        params.columns,
        params.date_format,
    )
    log_ingest_task(store, settings)
    announce_store_task(store)
    return store
