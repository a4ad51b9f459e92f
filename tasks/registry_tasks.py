"""Small registry moves that flows call as tasks."""
from __future__ import annotations

from prefect import task

from infra.settings import Settings
from tasks import tracking


@task(name="set-backbone-alias", **tracking.remote_retries())
def set_backbone_alias_task(model_uri: str, settings: Settings, alias: str = "champion") -> str:
    """Point ``backbone@<alias>`` at a freshly registered version; returns its versioned URI."""
    tracking.configure(settings)
    version = model_uri.rstrip("/").rsplit("/", 1)[-1]
    tracking.set_alias("backbone", alias, version)
    return model_uri
