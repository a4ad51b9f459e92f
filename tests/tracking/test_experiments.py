"""tsfm's experiments open on their runs in MLflow 3's UI (it opened tsfm-onboard on an empty GenAI
"Traces" view): each is tagged as a model-training experiment, also one created before the tag."""

from __future__ import annotations

import mlflow

from infra.settings import PathSettings, load_settings
from tracking import registry


def test_experiments_are_tagged_as_model_training(tmp_path):
    settings = load_settings(paths=PathSettings(data_dir=tmp_path / "data", state_dir=tmp_path / "state"))
    exp_id = registry.use_experiment("onboard", settings)
    kind = mlflow.get_experiment(exp_id).tags.get(registry.EXPERIMENT_KIND)
    assert kind == "custom_model_development"
    client = mlflow.MlflowClient()
    client.delete_experiment_tag(exp_id, registry.EXPERIMENT_KIND)  # as an older tsfm created it
    assert registry.use_experiment("onboard", settings) == exp_id
    assert mlflow.get_experiment(exp_id).tags.get(registry.EXPERIMENT_KIND) == "custom_model_development"
