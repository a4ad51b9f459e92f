"""MLflow plumbing shared by the tasks: where runs go, how models are registered.

Kept in one module so every stage names experiments, tags versions and moves
aliases the same way (DESIGN.md: registry contract).
"""
from __future__ import annotations

import logging
import subprocess
from functools import lru_cache
from pathlib import Path
from typing import Callable

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


RESULT_ID_TAG = "tsfm_result_id"  # stable id of the result a run / model version was made from


def find_version(name: str, result_id: str) -> str | None:
    """The version of ``name`` registered from result ``result_id`` (tag filter), if any."""
    try:
        found = MlflowClient().search_model_versions(f"name='{name}' and tags.{RESULT_ID_TAG}='{result_id}'")
    except MlflowException as e:
        if getattr(e, "error_code", "") == "RESOURCE_DOES_NOT_EXIST":
            return None
        raise
    return min((str(v.version) for v in found), key=int, default=None)


def find_run(experiment_id: str, result_id: str) -> str | None:
    """The run logged for result ``result_id`` in the experiment (the oldest one), if any."""
    runs = MlflowClient().search_runs([experiment_id], f"tags.{RESULT_ID_TAG} = '{result_id}'",
                                      order_by=["attributes.start_time ASC"], max_results=1)
    return runs[0].info.run_id if runs else None


def register(model_uri: str | Callable[[], str], name: str, tags: dict[str, str], description: str = "",
             result_id: str | None = None) -> str:
    """Register ``model_uri`` as a new version of ``name``; returns the version number.

    With ``result_id`` it is idempotent: a version already tagged with that id is returned instead
    of a new one (a retried or resumed registration creates no duplicates). ``model_uri`` may be a
    function that logs the model, so nothing is logged when the version already exists."""
    client = MlflowClient()
    try:
        client.get_registered_model(name)
    except MlflowException:
        try:
            client.create_registered_model(name)
        except MlflowException:  # created concurrently
            client.get_registered_model(name)
    if result_id:
        existing = find_version(name, result_id)
        if existing:
            log.info("%s version %s already registered from result %s", name, existing, result_id)
            return existing
        tags = {**tags, RESULT_ID_TAG: result_id}
    if callable(model_uri):
        model_uri = model_uri()
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


# Retrying remote calls ------------------------------------------------------------------
# Only the tasks that talk to a remote (an MLflow server, S3) retry, and only on errors that a
# later attempt can cure; the retried tasks are idempotent (see ``register``), so a retry after
# a half-done attempt creates no duplicates.
TRANSIENT_STATUS = {429, 500, 502, 503, 504}
TRANSIENT_TEXT = ("connection refused", "connection reset", "connection aborted", "max retries exceeded",
                  "timed out", "temporarily unavailable", "database is locked", "remote end closed")
BOTO_TRANSIENT_CODES = {"Throttling", "ThrottlingException", "SlowDown", "RequestTimeout", "RequestTimeTooSkewed",
                        "InternalError", "ServiceUnavailable", "503", "500"}


def _chain(exc: BaseException):
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__ or exc.__context__


def is_transient(exc: BaseException) -> bool:
    """Would the same call succeed later? Network failures, timeouts, HTTP 429/5xx from MLflow,
    botocore endpoint/connection errors and S3 throttling: yes. Bad input, missing files or models,
    4xx answers: no (they fail at once)."""
    import requests

    try:
        from botocore import exceptions as boto
    except ImportError:  # pragma: no cover - boto3 is a dependency
        boto = None
    for e in _chain(exc):
        if isinstance(e, (ConnectionError, TimeoutError, requests.ConnectionError, requests.Timeout)):
            return True
        if boto is not None:
            if isinstance(e, (boto.EndpointConnectionError, boto.ConnectionClosedError,
                              boto.ReadTimeoutError, boto.ConnectTimeoutError)):
                return True
            if isinstance(e, boto.ClientError):
                err = e.response.get("Error", {})
                status = e.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
                return err.get("Code") in BOTO_TRANSIENT_CODES or status in TRANSIENT_STATUS
        if isinstance(e, MlflowException):
            text = str(e.message if hasattr(e, "message") else e).lower()
            if any(t in text for t in TRANSIENT_TEXT):
                return True
            # an HTTP answer from a tracking server: its status says whether to try again
            from mlflow.exceptions import RestException
            if isinstance(e, RestException) or text.startswith("api request to"):
                return e.get_http_status_code() in TRANSIENT_STATUS
    return False


def retry_if_transient(_task, _task_run, state) -> bool:
    """Prefect ``retry_condition_fn``: retry only when the failure is transient."""
    exc = state.result(raise_on_failure=False)
    return isinstance(exc, BaseException) and is_transient(exc)


@lru_cache(maxsize=1)
def _configured_retry():
    from infra.settings import RetrySettings, load_settings

    try:
        return load_settings().retry
    except Exception:  # a broken params.yaml fails where it is used, not at import
        return RetrySettings()


def remote_retries(retry=None) -> dict:
    """Task options for a task that talks to a remote: ``retries`` with exponential backoff and
    jitter from the settings' ``retry`` section, transient errors only. Read when the task's module
    is imported (tests and callers may override with ``task.with_options(**remote_retries(r))``)."""
    from prefect.tasks import exponential_backoff

    retry = retry or _configured_retry()
    return {"retries": retry.retries, "retry_delay_seconds": exponential_backoff(backoff_factor=retry.backoff_s),
            "retry_jitter_factor": retry.jitter, "retry_condition_fn": retry_if_transient}
