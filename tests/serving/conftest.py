"""Serving tests share the session's demo run (tests/conftest.py) and add a second
domain to its registry without training: ``fused-m3-copy`` v1 is the demo's fused model
registered again (same artifacts, same tags, so the same backbone version), v2 is that
model with fusion weight 0 (the backbone's own quantiles), so a swap changes the answers."""
from __future__ import annotations

import json
import tempfile
from pathlib import Path

import mlflow
import pandas as pd
import pytest

from models.splits import split_frame
from store.canonical import read_store
from tracking import registry as tracking
from tracking.model_logging import log_forecaster

COPY = "m3-copy"


@pytest.fixture(scope="session")
def registry(demo_run):
    settings = demo_run["settings"]
    client = tracking.configure(settings)
    source = client.get_model_version_by_alias("fused-m3-other", "challenger")
    tags = {k: v for k, v in source.tags.items()}
    v1 = tracking.register(source.source, f"fused-{COPY}", {**tags, "domain": COPY})
    # v2: the same folder with alpha = 0, logged as a model of its own
    folder = Path(mlflow.artifacts.download_artifacts(
        artifact_uri=f"{client.get_model_version_download_uri('fused-m3-other', source.version)}/artifacts/fused",
        dst_path=tempfile.mkdtemp(prefix="tsfm-copy-")))
    meta = json.loads((folder / "fused.json").read_text())
    (folder / "fused.json").write_text(json.dumps({**meta, "alpha": 0.0}))
    serving_meta = json.loads((folder / "serving.json").read_text())
    tracking.use_experiment("onboard", settings)
    with mlflow.start_run(run_name=f"serving-test-{COPY}-alpha0"):
        uri = log_forecaster("fused", folder, {**serving_meta, "domain": COPY})
    v2 = tracking.register(uri, f"fused-{COPY}", {**tags, "domain": COPY, "alpha": "0.0"})
    tracking.set_alias(f"fused-{COPY}", "champion", v1)
    champion = tracking.alias_version("fused-m3-other", "champion")
    assert champion is not None, "the demo run promoted nothing: these tests need fused-m3-other@champion"
    return {"settings": settings, "root": demo_run["root"], "copy_v1": v1, "copy_v2": v2,
            "other_champion": champion, "alpha": float(meta["alpha"])}


@pytest.fixture(scope="session")
def context(demo_run):  # noqa: F811
    """Context rows of 4 m3-other series (train + validation parts)."""
    df, _ = read_store(demo_run["settings"].store_dir("m3-other"))
    split = split_frame(df, 8)
    history = pd.concat([split.train, split.val])
    ids = sorted(history["unique_id"].unique())[:4]
    return history[history["unique_id"].isin(ids)].sort_values(["unique_id", "ds"]).reset_index(drop=True)
