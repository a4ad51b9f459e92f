"""Shared test setup: isolated Prefect/MLflow state, one Prefect test harness per session, and one
real end-to-end demo run (small settings) shared by the flow, registry and serving tests."""

from __future__ import annotations

import json
import logging
import os
import tempfile
from pathlib import Path

# Before prefect is imported anywhere: its home, analytics and logging.
_HOME = Path(tempfile.mkdtemp(prefix="tsfm-tests-"))
os.environ.setdefault("PREFECT_HOME", str(_HOME / "prefect"))
os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
os.environ["DVC_NO_ANALYTICS"] = "1"
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
# a CLI test's project Prefect API (infra/project_api.py) stops soon after its last command
os.environ.setdefault("TSFM_PREFECT_IDLE_S", "30")
if os.environ.get("PYTEST_XDIST_WORKER"):
    # two workers on two cores: one math thread per process (and per subprocess it starts). Two threads
    # each doubled the suite's CPU time: idle OpenMP threads spin while the other worker wants the core.
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    os.environ.setdefault("MKL_NUM_THREADS", "1")

import pytest  # noqa: E402

REPO = Path(__file__).resolve().parent.parent


@pytest.hookimpl(optionalhook=True)  # an xdist hook: a run without xdist (-p no:xdist) must not fail on it
def pytest_xdist_make_scheduler(config, log):
    """`make test`'s two workers: the demo state's modules on one, every other module a unit of its own
    (tests/scheduling.py)."""
    if config.getvalue("dist") not in ("loadscope", "loadgroup"):
        return None
    from xdist.scheduler import LoadScopeScheduling

    from tests.scheduling import expected_seconds, scope

    class DemoStateScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return scope(nodeid.split("::")[0])

        def _assign_work_unit(self, node) -> None:  # the longest unit left first (xdist: most tests first)
            unit = max(self.workqueue, key=lambda u: expected_seconds(u, len(self.workqueue[u])))
            self.workqueue.move_to_end(unit, last=False)
            super()._assign_work_unit(node)

    return DemoStateScheduling(config, log)


@pytest.fixture(autouse=True)
def _environment_restored():
    """Nothing a test sets in os.environ reaches the next test on its worker: code run in-process exports
    variables on purpose (the server its profile's PREFECT_API_URL, a command its project's Prefect API),
    and a later test that copies os.environ for a subprocess would point it at a server long gone."""
    before = os.environ.copy()
    yield
    for name in set(os.environ) - set(before):
        del os.environ[name]
    os.environ.update(before)


@pytest.fixture(scope="session")
def prefect_harness():
    import tempfile

    import prefect.testing.utilities as harness

    from infra.prefect_db import seed

    def seeded_mkdtemp(*args, **kwargs):  # the harness's database starts migrated, as tsfm's servers' do
        folder = tempfile.mkdtemp(*args, **kwargs)
        seed(Path(folder) / "prefect-test.db")
        return folder

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(harness, "mkdtemp", seeded_mkdtemp)
        with harness.prefect_test_harness(server_startup_timeout=120):
            yield


@pytest.fixture(scope="session")
def tsfm_env(tmp_path_factory):
    """A settings environment of its own: data, MLflow db and artifacts in a temp folder."""
    root = tmp_path_factory.mktemp("tsfm")
    env = {
        "TSFM_PATHS__DATA_DIR": str(root / "data"),
        "TSFM_PATHS__STATE_DIR": str(root / "state"),
        "TSFM_PARAMS": str(root / "params.yaml"),  # absent: schema defaults + env only
    }
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    yield root
    for k, v in old.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


SMALL = {
    "TSFM_SOURCES": json.dumps(
        {
            "synthetic": {"source": "synthetic:kernelsynth?n_series=60&length=128&seed=1", "horizon": 8},
            "m3-other": {"source": "builtin:m3-other", "horizon": 8},
        }
    ),
    "TSFM_PRETRAIN__MAX_STEPS": "40",
    "TSFM_DEMO__CONTINUE_STEPS": "20",  # where a backbone is shipped: continued briefly instead
    "TSFM_PRETRAIN__BATCH_SIZE": "32",
    "TSFM_PRETRAIN__WARMUP_STEPS": "5",
    "TSFM_PRETRAIN__ACCELERATOR": "cpu",
    "TSFM_ONBOARD__ADAPTER__EPOCHS": "4",
    "TSFM_ONBOARD__STRIDE": "2",
    "TSFM_ONBOARD__FINETUNE__MAX_STEPS": "10",  # the comparison row of full fine-tuning, kept cheap
}


@pytest.fixture(scope="session")
def demo_run(prefect_harness, tsfm_env):
    """Runs the demo flow once: ingest x2 -> pretrain -> onboard m3-other -> promote -> serve."""
    old = {k: os.environ.get(k) for k in SMALL}
    os.environ.update(SMALL)
    try:
        from flows.demo import demo_flow
        from infra.settings import DemoParams, load_settings

        result = demo_flow(DemoParams(domain="m3-other"))
        yield {"result": result, "settings": load_settings(), "root": tsfm_env}
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


# ----------------------------------------------- source files and a real S3 endpoint (moto)
@pytest.fixture
def write_file(tmp_path: Path):
    """write_file("name.csv", text) -> path of a real file under tmp_path."""

    def _write(name: str, text: str) -> Path:
        path = tmp_path / name
        path.write_text(text)
        return path

    return _write


@pytest.fixture(scope="session")
def moto_endpoint():
    """A real HTTP S3 endpoint on a free local port for the whole session."""
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def aws_env(monkeypatch, tmp_path):
    """Dummy credentials, no profile or config from the machine running the tests."""
    for var in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    return monkeypatch
