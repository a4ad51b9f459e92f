"""Serving tests share the session's demo run (tests/conftest.py) and add two domains to its
registry without training: ``forecaster-m3-copy`` v1 is the demo's fused candidate registered
again (same artifacts, same backbone version), v2 is that model with fusion weight 0 (the
backbone's own quantiles), so a swap changes the answers; ``forecaster-m3-twin`` serves the
demo's frozen-backbone candidate, so two domains share one backbone object. ``m3-other`` itself
serves whatever family the demo's gate chose (usually a statistical one on this tiny run)."""

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
TWIN = "m3-twin"


def family_version(client, domain: str, family: str):
    """The version of forecaster-<domain> whose tag ``family`` is ``family`` (the newest one)."""
    found = [
        mv
        for mv in client.search_model_versions(f"name = '{tracking.forecaster_name(domain)}'")
        if mv.tags.get("family") == family
    ]
    assert found, f"the demo registered no {family} version of forecaster-{domain}"
    return max(found, key=lambda mv: int(mv.version))


@pytest.fixture(scope="session")
def registry(demo_run):
    settings = demo_run["settings"]
    client = tracking.configure(settings)
    fused = family_version(client, "m3-other", "fused")
    tags = dict(fused.tags)
    copy_name, twin_name = tracking.forecaster_name(COPY), tracking.forecaster_name(TWIN)
    v1 = tracking.register(fused.source, copy_name, {**tags, "domain": COPY})
    # v2: the same folder with alpha = 0, logged as a model of its own
    folder = Path(
        mlflow.artifacts.download_artifacts(
            artifact_uri=f"{client.get_model_version_download_uri(fused.name, fused.version)}/artifacts/fused",
            dst_path=tempfile.mkdtemp(prefix="tsfm-copy-"),
        )
    )
    meta = json.loads((folder / "fused.json").read_text())
    (folder / "fused.json").write_text(json.dumps({**meta, "alpha": 0.0}))
    serving_meta = json.loads((folder / "serving.json").read_text())
    tracking.use_experiment("onboard", settings)
    with mlflow.start_run(run_name=f"serving-test-{COPY}-alpha0"):
        uri = log_forecaster("fused", folder, {**serving_meta, "domain": COPY})
    v2 = tracking.register(uri, copy_name, {**tags, "domain": COPY, "alpha": "0.0"})
    tracking.set_alias(copy_name, "champion", v1)
    backbone = family_version(client, "m3-other", "backbone")
    twin = tracking.register(backbone.source, twin_name, {**dict(backbone.tags), "domain": TWIN})
    tracking.set_alias(twin_name, "champion", twin)
    champion = client.get_model_version_by_alias(tracking.forecaster_name("m3-other"), "champion")
    return {
        "settings": settings,
        "root": demo_run["root"],
        "copy_v1": v1,
        "copy_v2": v2,
        "twin_v": twin,
        "other_champion": str(champion.version),
        "other_family": champion.tags["family"],
        "alpha": float(meta["alpha"]),
    }


@pytest.fixture(scope="session")
def context(demo_run):  # noqa: F811
    """Context rows of 4 m3-other series (train + validation parts)."""
    df, _ = read_store(demo_run["settings"].store_dir("m3-other"))
    split = split_frame(df, 8)
    history = pd.concat([split.train, split.val])
    ids = sorted(history["unique_id"].unique())[:4]
    return history[history["unique_id"].isin(ids)].sort_values(["unique_id", "ds"]).reset_index(drop=True)
