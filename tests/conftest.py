"""Shared test setup: isolated Prefect/MLflow state, one Prefect test harness per session."""
from __future__ import annotations

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

import pytest  # noqa: E402

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def prefect_harness():
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
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
