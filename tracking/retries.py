"""Retrying calls to remotes (an MLflow server, S3): only errors a later attempt can cure.

The retried tasks are idempotent (``tracking.registry.register``), so a retry after a
half-done attempt creates no duplicates.
"""

from __future__ import annotations

from functools import lru_cache

from mlflow.exceptions import MlflowException

TRANSIENT_STATUS = {429, 500, 502, 503, 504}
TRANSIENT_TEXT = (
    "connection refused",
    "connection reset",
    "connection aborted",
    "max retries exceeded",
    "timed out",
    "temporarily unavailable",
    "database is locked",
    "remote end closed",
)
BOTO_TRANSIENT_CODES = {
    "Throttling",
    "ThrottlingException",
    "SlowDown",
    "RequestTimeout",
    "RequestTimeTooSkewed",
    "InternalError",
    "ServiceUnavailable",
    "503",
    "500",
}


def _chain(exc: BaseException):
    """The exception and its causes, as its traceback shows them: ``raise ... from None`` ends the
    chain, so a user error raised that way is never retried for the error it replaced."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__ or (None if exc.__suppress_context__ else exc.__context__)


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
            if isinstance(
                e,
                (
                    boto.EndpointConnectionError,
                    boto.ConnectionClosedError,
                    boto.ReadTimeoutError,
                    boto.ConnectTimeoutError,
                ),
            ):
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
    return {
        "retries": retry.retries,
        "retry_delay_seconds": exponential_backoff(backoff_factor=retry.backoff_s),
        "retry_jitter_factor": retry.jitter,
        "retry_condition_fn": retry_if_transient,
    }
