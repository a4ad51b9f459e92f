"""Record an ingest in MLflow: the store's counts, its quarantine and the dataset digest."""
from __future__ import annotations

import json
from pathlib import Path

import mlflow
from prefect import task

from infra.settings import Settings
from tasks import tracking
from tasks.datasets import log_store_input
from tasks.ingest import META_FILE, QUARANTINE_FILE


@task(name="log-ingest", **tracking.remote_retries())
def log_ingest_task(store_dir: str, settings: Settings) -> str:
    """Log the ingest run (tsfm-ingest experiment); returns its run id."""
    meta = json.loads((Path(store_dir) / META_FILE).read_text())
    tracking.use_experiment("ingest", settings)
    with mlflow.start_run(run_name=f"ingest-{meta['domain']}") as run:
        mlflow.log_params({k: meta[k] for k in ("domain", "source", "horizon", "min_train", "freq")})
        mlflow.log_metrics({k: float(meta[k]) for k in ("n_series", "rows_in", "rows_kept", "rows_quarantined")})
        mlflow.set_tags({"data_version": meta["md5"], "git_commit": tracking.git_commit(), "domain": meta["domain"]})
        # digest = what DVC records for the store (dvc.lock), so the run points at a DVC version
        dataset = log_store_input(store_dir, context="ingest")
        mlflow.set_tag("dvc_md5", dataset.digest)
        for name in (META_FILE, QUARANTINE_FILE):
            mlflow.log_artifact(str(Path(store_dir) / name), artifact_path="store")
    return run.info.run_id
