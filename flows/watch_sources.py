from prefect import flow

from infra.settings import load_settings
from tasks.watch import watch_sources_task


@flow(name="watch_sources", log_prints=True)
def watch_sources_flow() -> list[str]:
    """sources -> fingerprints vs last seen -> `tsfm.source.updated` per changed domain
    (each `onboard-<domain>` deployment is triggered by its domain's event)."""
    return watch_sources_task(load_settings())
