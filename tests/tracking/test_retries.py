"""Tasks that talk to remotes retry transient failures with backoff, and fail bad input at once.

The transient failure is real: the MLflow-logging task points at a loopback port where nothing
listens; a real `mlflow server` is started on that port only once the first attempt has failed.
"""

from __future__ import annotations

import pytest
from prefect import flow

from infra.servers import free_port, start_mlflow_server, stop
from infra.settings import MlflowSettings, PathSettings, RetrySettings, load_settings
from store.ingest import ingest_to_store
from store.validate import IngestError
from tasks.ingest import ingest_task, log_ingest_task
from tasks.pretrain import set_backbone_alias_task
from tracking.retries import is_transient, remote_retries, retry_if_transient

FAST = RetrySettings(retries=2, backoff_s=0.2, jitter=0.0)


@pytest.fixture
def no_client_retries(monkeypatch):
    # MLflow's own HTTP retries would hide the failure from the task (and take minutes)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "5")


def _run_count(state, timeout: float = 30.0) -> int:
    """Attempts of a finished task run, as the API recorded them (task runs reach it as events)."""
    import time

    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound

    deadline = time.monotonic() + timeout
    with get_client(sync_client=True) as client:
        while True:
            try:
                run = client.read_task_run(state.state_details.task_run_id)
                if run.state is not None and run.state.is_final():
                    return run.run_count
            except ObjectNotFound:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError("the task run never reached the API")
            time.sleep(0.2)


def test_mlflow_task_retries_until_the_server_is_up_and_a_404_fails_at_once(
    prefect_harness, no_client_retries, tmp_path
):
    port = free_port()
    settings = load_settings(
        paths=PathSettings(data_dir=tmp_path / "data", state_dir=tmp_path / "state"),
        mlflow=MlflowSettings(tracking_uri=f"http://127.0.0.1:{port}", artifact_root=(tmp_path / "artifacts").as_uri()),
    )
    store = str(
        ingest_to_store("synthetic:kernelsynth?n_series=3&length=40&seed=1", "retry-demo", 4, 8, tmp_path / "data")
    )
    servers, verdicts = [], []

    def start_server_then_decide(task, task_run, state):
        verdict = retry_if_transient(task, task_run, state)
        verdicts.append((type(state.result(raise_on_failure=False)).__name__, verdict))
        if not servers:  # the remote comes back only after the first attempt failed
            servers.append(start_mlflow_server(tmp_path / "mlflow", port)[0])
        return verdict

    log_ingest = log_ingest_task.with_options(
        **{**remote_retries(FAST), "retry_condition_fn": start_server_then_decide}
    )
    set_alias = set_backbone_alias_task.with_options(
        **{**remote_retries(FAST), "retry_condition_fn": start_server_then_decide}
    )

    @flow
    def remote_stages() -> dict:
        states = {
            "logged": log_ingest(store, settings, return_state=True),
            "missing": set_alias("models:/backbone/7", settings, return_state=True),
        }
        # plain data out, so the flow itself does not fail with the task that must fail
        return {k: (s.type.value, _run_count(s), s.result(raise_on_failure=False)) for k, s in states.items()}

    try:
        out = remote_stages()
        # transient: connection refused, retried, then logged on the real server
        assert out["logged"][:2] == ("COMPLETED", 2)
        assert verdicts[0] == ("MlflowException", True)
        import mlflow

        run = mlflow.MlflowClient(tracking_uri=settings.tracking_uri).get_run(out["logged"][2])
        assert run.data.tags["domain"] == "retry-demo" and run.data.metrics["n_series"] == 3
        # not transient: the server answers 404 for a model that does not exist, no retry
        assert out["missing"][:2] == ("FAILED", 1) and "RESOURCE_DOES_NOT_EXIST" in str(out["missing"][2])
        assert verdicts[1:] == [("NotFoundError", False)]  # a LookupError: never retried
    finally:
        for proc in servers:
            stop(proc)


def test_invalid_source_fails_without_retrying(prefect_harness, tmp_path):
    @flow
    def bad_ingest():
        state = ingest_task.with_options(**remote_retries(FAST))(
            str(tmp_path / "missing.csv"), "bad", 4, 8, str(tmp_path / "data"), return_state=True
        )
        return state.type.value, _run_count(state), state.result(raise_on_failure=False)

    kind, attempts, error = bad_ingest()
    assert (kind, attempts) == ("FAILED", 1)
    assert isinstance(error, IngestError) and "file not found" in str(error)


def test_which_errors_are_transient(no_client_retries):
    import mlflow
    from botocore.exceptions import ClientError, EndpointConnectionError
    from mlflow.exceptions import MlflowException, RestException

    # a real refused connection, as MLflow's client reports it
    with pytest.raises(MlflowException) as refused:
        mlflow.MlflowClient(tracking_uri=f"http://127.0.0.1:{free_port()}").search_experiments()
    assert is_transient(refused.value)
    assert is_transient(EndpointConnectionError(endpoint_url="http://127.0.0.1:9"))
    assert is_transient(RestException({"error_code": "TEMPORARILY_UNAVAILABLE", "message": "busy"}))
    assert is_transient(RestException({"error_code": "REQUEST_LIMIT_EXCEEDED", "message": "slow down"}))
    assert is_transient(
        ClientError({"Error": {"Code": "SlowDown"}, "ResponseMetadata": {"HTTPStatusCode": 503}}, "GetObject")
    )
    assert not is_transient(RestException({"error_code": "RESOURCE_DOES_NOT_EXIST", "message": "no model"}))
    assert not is_transient(
        ClientError({"Error": {"Code": "NoSuchKey"}, "ResponseMetadata": {"HTTPStatusCode": 404}}, "GetObject")
    )
    assert not is_transient(IngestError("bad.csv: no rows"))
    assert not is_transient(FileNotFoundError("summary.json"))
    assert not is_transient(ValueError("horizon too long"))


def test_a_user_error_is_retried_only_for_the_transient_error_it_names_as_its_cause():
    from botocore.exceptions import EndpointConnectionError

    def replaced(explicit: bool) -> IngestError:
        try:
            try:
                raise EndpointConnectionError(endpoint_url="http://127.0.0.1:9")
            except EndpointConnectionError as e:
                if explicit:
                    raise IngestError("cannot reach the S3 endpoint") from e
                raise IngestError("no AWS credentials found") from None
        except IngestError as user:
            return user

    assert is_transient(replaced(explicit=True))  # `from e`: the endpoint may come back, a retry may cure it
    assert not is_transient(replaced(explicit=False))  # `from None`: the cause was replaced, never retried
