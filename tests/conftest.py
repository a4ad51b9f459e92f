"""Shared test setup: isolated Prefect/MLflow state, one Prefect test harness per session, and one
real end-to-end demo run (small settings) shared by the flow, registry and serving tests."""
from __future__ import annotations

import json
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


SMALL = {
    "TSFM_SOURCES": json.dumps({
        "synthetic": {"source": "synthetic:kernelsynth?n_series=60&length=128&seed=1", "horizon": 8},
        "m3-other": {"source": "builtin:m3-other", "horizon": 8},
    }),
    "TSFM_PRETRAIN__MAX_STEPS": "40",
    "TSFM_PRETRAIN__BATCH_SIZE": "32",
    "TSFM_PRETRAIN__WARMUP_STEPS": "5",
    "TSFM_PRETRAIN__ACCELERATOR": "cpu",
    "TSFM_ONBOARD__EPOCHS": "4",
    "TSFM_ONBOARD__STRIDE": "2",
    "TSFM_ONBOARD__FINETUNE_STEPS": "10",  # the comparison row of full fine-tuning, kept cheap
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
