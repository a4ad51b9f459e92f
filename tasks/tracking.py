"""MLflow plumbing shared by the tasks: where runs go, how models are registered.

Kept in one module so every stage names experiments, tags versions and moves
aliases the same way (DESIGN.md: registry contract).
"""
from __future__ import annotations

import logging
import subprocess
from functools import lru_cache
from pathlib import Path

import mlflow
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from infra.settings import Settings

log = logging.getLogger(__name__)

EXPERIMENTS = {
    "ingest": "tsfm-ingest",
    "pretrain": "tsfm-pretrain",
    "onboard": "tsfm-onboard",
    "promote": "tsfm-promote",
    "evaluate": "tsfm-evaluate",
    "compare": "tsfm-compare",  # cross-domain onboarding comparison (benchmarks/onboard_domains.py)
}


def configure(settings: Settings) -> MlflowClient:
    """Point this process at the configured tracking + registry store."""
    settings.paths.state_dir.mkdir(parents=True, exist_ok=True)
    mlflow.set_tracking_uri(settings.tracking_uri)
    mlflow.set_registry_uri(settings.tracking_uri)
    return MlflowClient(tracking_uri=settings.tracking_uri, registry_uri=settings.tracking_uri)


def use_experiment(stage: str, settings: Settings) -> str:
    """Create (once) and select the stage's experiment with an explicit artifact location.

    Without one, a sqlite store puts artifacts in ./mlruns of whatever directory
    the process happens to run in (STACK.md).
    """
    configure(settings)
    name = EXPERIMENTS[stage]
    exp = mlflow.get_experiment_by_name(name)
    if exp is None:
        location = f"{settings.artifact_root.rstrip('/')}/{name}"
        try:
            exp_id = mlflow.create_experiment(name, artifact_location=location)
        except MlflowException:  # created concurrently by another process
            exp_id = mlflow.get_experiment_by_name(name).experiment_id
    else:
        exp_id = exp.experiment_id
    mlflow.set_experiment(experiment_id=exp_id)
    return exp_id


@lru_cache(maxsize=1)
def git_commit() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True,
            cwd=Path(__file__).resolve().parent.parent,
        )
        return out.stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def register(model_uri: str, name: str, tags: dict[str, str], description: str = "") -> str:
    """Register ``model_uri`` as a new version of ``name``; returns the version number."""
    client = MlflowClient()
    try:
        client.get_registered_model(name)
    except MlflowException:
        client.create_registered_model(name)
    mv = mlflow.register_model(model_uri, name, tags={k: str(v) for k, v in tags.items()})
    if description:
        client.update_model_version(name, mv.version, description=description)
    log.info("registered %s version %s", name, mv.version)
    return str(mv.version)


def set_alias(name: str, alias: str, version: str) -> None:
    MlflowClient().set_registered_model_alias(name, alias, version)


def alias_version(name: str, alias: str) -> str | None:
    try:
        return str(MlflowClient().get_model_version_by_alias(name, alias).version)
    except MlflowException:
        return None


def version_tags(name: str, version: str) -> dict[str, str]:
    return dict(MlflowClient().get_model_version(name, version).tags)


def latest_version(name: str) -> str | None:
    versions = MlflowClient().search_model_versions(f"name='{name}'")
    return max((str(v.version) for v in versions), key=int, default=None)
