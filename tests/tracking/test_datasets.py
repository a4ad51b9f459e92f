"""Stores as MLflow datasets: the digest is what the `dvc` CLI records for the same folder."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import mlflow
import pytest
import yaml

from infra.settings import Settings
from store.ingest import ingest_to_store
from tasks.ingest import log_ingest_task
from tracking.datasets import dvc_md5, store_dataset

DVC = str(Path(sys.executable).parent / "dvc")


@pytest.fixture
def store(tmp_path) -> Path:
    return ingest_to_store(
        "synthetic:kernelsynth?n_series=6&length=48&seed=3",
        "synth-small",
        horizon=4,
        min_train=8,
        data_dir=tmp_path / "data",
    )


def _dvc(*args: str, cwd: Path) -> None:
    env = {**os.environ, "DVC_NO_ANALYTICS": "1"}
    subprocess.run([DVC, *args], cwd=cwd, env=env, check=True, capture_output=True, text=True)


def test_digest_equals_what_dvc_add_records(store, tmp_path):
    root = tmp_path / "data"
    _dvc("init", "--no-scm", "-q", cwd=root)
    _dvc("add", "-q", "store/synth-small", cwd=root)
    recorded = yaml.safe_load((root / "store" / "synth-small.dvc").read_text())["outs"][0]
    assert recorded["md5"].endswith(".dir")
    assert dvc_md5(store) == recorded["md5"]
    # a single file: its plain md5, as DVC records files
    assert dvc_md5(store / "meta.json") == hashlib.md5((store / "meta.json").read_bytes()).hexdigest()


def test_digest_changes_with_the_data(store):
    before = dvc_md5(store)
    (store / "extra.txt").write_text("one more file\n")
    assert dvc_md5(store) != before


def test_store_dataset_metadata(store):
    meta = json.loads((store / "meta.json").read_text())
    ds = store_dataset(store)
    assert (ds.name, ds.digest) == ("synth-small", dvc_md5(store))
    assert len(ds.digest) <= 36  # MLflow's digest column
    assert json.loads(ds.source.to_json())["uri"] == str(store)
    assert ds.profile["data_md5"] == meta["md5"] and ds.profile["num_rows"] == meta["rows_kept"]
    assert [c.name for c in ds.schema.inputs] == ["unique_id", "ds", "y"]


def test_ingest_run_logs_the_store_as_input(store, tmp_path):
    settings = Settings(paths={"data_dir": tmp_path / "data", "state_dir": tmp_path / "state"})
    run_id = log_ingest_task.fn(str(store), settings)
    run = mlflow.MlflowClient(tracking_uri=settings.tracking_uri).get_run(run_id)
    assert run.info.run_name == "ingest-synth-small"
    [inp] = run.inputs.dataset_inputs
    assert (inp.dataset.name, inp.dataset.digest) == ("synth-small", dvc_md5(store))
    tags = {t.key: t.value for t in inp.tags}
    assert tags["mlflow.data.context"] == "ingest"
    assert tags["data_md5"] == json.loads((store / "meta.json").read_text())["md5"]
    assert json.loads(inp.dataset.profile)["dvc_md5"] == run.data.tags["dvc_md5"] == dvc_md5(store)
    assert json.loads(inp.dataset.schema)["mlflow_colspec"][0]["name"] == "unique_id"
