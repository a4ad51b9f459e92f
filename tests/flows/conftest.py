"""One real end-to-end demo run (small settings) shared by the flow, registry and serving tests."""
from __future__ import annotations

import json
import os

import pytest

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
