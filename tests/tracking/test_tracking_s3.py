"""MLflow with a sqlite store and S3 artifacts (a real moto endpoint), as the settings configure it."""

from __future__ import annotations

import boto3
import mlflow
import pandas as pd

from infra.settings import Settings
from tracking import registry as tracking
from tracking.registry import rollback_domain


def test_runs_and_registered_models_keep_artifacts_in_s3(tmp_path, moto_endpoint, aws_env):
    aws_env.setenv("AWS_ENDPOINT_URL_S3", moto_endpoint)
    boto3.client("s3").create_bucket(Bucket="tsfm-artifacts")
    settings = Settings(
        paths={"data_dir": tmp_path / "data", "state_dir": tmp_path / "state"},
        mlflow={"artifact_root": "s3://tsfm-artifacts/mlflow"},
    )

    tracking.use_experiment("onboard", settings)
    report = tmp_path / "table.csv"
    pd.DataFrame({"model": ["fused"], "sCRPS": [0.1]}).to_csv(report, index=False)
    with mlflow.start_run() as run:
        mlflow.log_artifact(str(report), artifact_path="report")
        mlflow.log_metric("val_sCRPS", 0.1)
    assert run.info.artifact_uri.startswith("s3://tsfm-artifacts/mlflow/tsfm-onboard/")

    keys = [o["Key"] for o in boto3.client("s3").list_objects_v2(Bucket="tsfm-artifacts")["Contents"]]
    assert any(k.endswith("report/table.csv") for k in keys)
    back = mlflow.artifacts.download_artifacts(
        run_id=run.info.run_id, artifact_path="report/table.csv", dst_path=str(tmp_path / "back")
    )
    assert pd.read_csv(back)["sCRPS"].iloc[0] == 0.1

    # registry round trip on the same store: two versions whose source is in S3, alias moves
    client = mlflow.MlflowClient()
    client.create_registered_model("forecaster-s3test")
    v1, v2 = (
        str(
            client.create_model_version(
                "forecaster-s3test", f"{run.info.artifact_uri}/report", run_id=run.info.run_id, tags={"family": family}
            ).version
        )
        for family in ("auto_ets", "fused")
    )
    tracking.set_alias("forecaster-s3test", "champion", v2)
    assert tracking.alias_version("forecaster-s3test", "champion") == v2
    assert rollback_domain("s3test", v1, settings) == {
        "model": "forecaster-s3test",
        "champion": v1,
        "family": "auto_ets",
        "previous_champion": v2,
    }
    assert tracking.alias_version("forecaster-s3test", "champion") == v1
