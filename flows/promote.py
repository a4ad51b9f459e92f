from prefect import flow

from infra.settings import load_settings
from tasks.promote import promote_domain_task


@flow(name="promote", log_prints=True)
def promote_flow(domain: str, version: str | None = None, margin: float | None = None) -> dict:
    """Move `champion` of fused-<domain> only when the gate passes (margin: settings' promote.margin)."""
    return promote_domain_task(domain, load_settings(), version, margin)
