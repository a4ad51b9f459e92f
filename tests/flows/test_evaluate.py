"""The evaluate flow end to end on a tiny registered backbone (no pre-training: random weights).

The backbone is registered as `zs-backbone`, not `backbone`, so that the demo's
`backbone@champion` in the shared test MLflow store is never moved.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

BIN = Path(sys.executable).parent
NAME = "zs-backbone"


@pytest.fixture(scope="module")
def tiny_backbone(tsfm_env, tmp_path_factory):
    import mlflow
    import torch

    from infra.settings import load_settings
    from models.backbone.network import PatchBackbone
    from models.backbone.presets import PRESETS
    from models.forecasting.backbone import BackboneForecaster
    from tracking import registry as tracking
    from tracking.model_logging import log_forecaster

    settings = load_settings()
    torch.manual_seed(0)
    model_dir = tmp_path_factory.mktemp("zs") / "forecaster"
    BackboneForecaster(PatchBackbone(PRESETS["tiny"]), 48).save(model_dir)
    tracking.use_experiment("pretrain", settings)
    with mlflow.start_run(run_name="zs-test-backbone"):
        uri = log_forecaster("backbone", model_dir, {"kind": "backbone", "default_horizon": 8, "max_horizon": None})
    # as if pre-trained on the m3-other store (horizon 8 by default): the flow must notice that
    # this store's train part holds the first 2 official test points of M3's monthly series
    version = tracking.register(uri, NAME, {"preset": "tiny", "data_version": "m3-other:0123456789ab"})
    tracking.set_alias(NAME, "champion", version)
    return {"settings": settings, "version": version}


@pytest.fixture(scope="module")
def evaluated(prefect_harness, tiny_backbone):
    from flows.evaluate import evaluate_flow
    from infra.settings import EvaluateParams

    params = EvaluateParams(backbone=f"models:/{NAME}@champion", datasets=["m3-other"], max_series=20, n_jobs=1)
    return evaluate_flow(params)


def test_table_has_every_model_and_finite_metrics(evaluated, tiny_backbone):
    assert evaluated["backbone_version"] == tiny_backbone["version"]
    table = pd.read_csv(evaluated["table_csv"])
    overall = table[table["by"] == "all"].set_index("model")
    assert list(overall.index) == ["backbone", "seasonal_naive", "theta", "auto_ets"]
    assert (overall["n"] == 20).all()
    metrics = ["MASE", "sCRPS", "sMAPE", "sCRPS_pooled", "MASE_rel", "sCRPS_rel"]
    assert np.isfinite(table[metrics].to_numpy()).all()
    sn = table[table["model"] == "seasonal_naive"]
    assert (sn["MASE_rel"] == 1.0).all() and (sn["sCRPS_rel"] == 1.0).all()
    for model in ("theta", "auto_ets"):  # true on this subset: 1.60 and 1.09 against 2.36
        assert overall.loc[model, "MASE"] < overall.loc["seasonal_naive", "MASE"]
        assert overall.loc[model, "MASE_rel"] < 1.0
    # m3-other holds yearly, monthly and "other" series: one slice per frequency, none per category
    assert set(table["scope"]) == {
        "m3-other",
        "m3-other.frequency-yearly",
        "m3-other.frequency-monthly",
        "m3-other.frequency-other",
    }
    md = Path(evaluated["markdown_file"]).read_text()
    assert "| m3-other | 20 | backbone |" in md and "#### m3-other by frequency" in md
    assert "20 of 204 series" in md
    assert "Not fully zero-shot on m3-other" in md and "2 test point(s) of 5 of the series" in md


def test_mlflow_run_and_registry_tag(evaluated, tiny_backbone):
    import mlflow

    client = mlflow.MlflowClient()
    run = client.get_run(evaluated["run_id"])
    assert run.info.run_name == f"zero-shot-{NAME}-{tiny_backbone['version']}"
    exp = client.get_experiment(run.info.experiment_id)
    assert exp.name == "tsfm-evaluate"
    m = run.data.metrics
    for model in ("backbone", "seasonal_naive", "theta", "auto_ets"):
        for metric in ("MASE", "sCRPS", "sMAPE", "MASE_rel", "sCRPS_rel"):
            assert np.isfinite(m[f"m3-other/{model}/{metric}"])
    assert m["m3-other/seasonal_naive/MASE_rel"] == 1.0
    assert "m3-other.frequency-monthly/theta/MASE" in m and "m3-other/auto_ets/seconds" in m
    assert run.data.tags["backbone_version"] == tiny_backbone["version"]
    files = {f.path for f in client.list_artifacts(run.info.run_id)}
    assert {"zero_shot.md", "zero_shot.csv", "backbone.json", "datasets"} <= files
    md = Path(mlflow.artifacts.download_artifacts(run_id=run.info.run_id, artifact_path="zero_shot.md")).read_text()
    assert "seasonal_naive" in md and "auto_ets" in md
    tags = client.get_model_version(NAME, tiny_backbone["version"]).tags
    # a subsample is tagged as one, so it never passes for the full data set's figure
    assert float(tags["zero_shot_m3-other_sample20_mase"]) == pytest.approx(m["m3-other/backbone/MASE"], rel=1e-3)
    assert tags["zero_shot_run_id"] == evaluated["run_id"]
    assert tags["zero_shot_m3-other_sample20_pretrain_overlap_series"] == "5"  # the 5 monthly series
    assert evaluated["tags"] == {k: v for k, v in tags.items() if k.startswith("zero_shot_")}


def test_unknown_backbone_is_a_clean_lookup_error(tiny_backbone):
    from tracking.registry import resolve

    assert resolve(f"models:/{NAME}/{tiny_backbone['version']}") == (NAME, tiny_backbone["version"])
    assert resolve(NAME) == (NAME, tiny_backbone["version"])  # latest version
    with pytest.raises(LookupError, match="no such registered model version"):
        resolve(f"models:/{NAME}@nope")


def test_cli_evaluate_rejects_bad_input_cleanly(tmp_path):
    env_cmd = [str(BIN / "tsfm"), "evaluate"]
    help_text = subprocess.run(env_cmd + ["--help"], capture_output=True, text=True, check=True).stdout
    assert "--max-series" in help_text and "--datasets" in help_text
    for args, expected in (
        (["--datasets", "m3,m4"], "unknown dataset(s) ['m4']"),
        (["--baselines", "theta"], "seasonal_naive is required"),
    ):
        proc = subprocess.run(env_cmd + args, capture_output=True, text=True, cwd=tmp_path)
        assert proc.returncode == 2, proc.stderr  # a user's mistake
        assert expected in proc.stderr and "Traceback" not in proc.stderr
