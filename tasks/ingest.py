"""Ingesting a source as Prefect tasks: validate and write the domain's store, then record it
in MLflow (counts, quarantine, the dataset digest DVC records for the store)."""
from __future__ import annotations

from pathlib import Path

import mlflow
from prefect import task

from infra.settings import Settings
from store.canonical import META_FILE, QUARANTINE_FILE, read_meta
from store.ingest import ingest_to_store
from tracking import registry
from tracking.datasets import log_store_input
from tracking.retries import remote_retries


# Retried (S3 reads) only on transient errors: bad input (IngestError/ValueError) fails at once.
@task(name="ingest", **remote_retries())
def ingest_task(source: str, domain: str, horizon: int = 6, min_train: int = 8, data_dir: str = "data") -> str:
    """Ingest ``source`` into ``<data_dir>/store/<domain>``; returns that path."""
    return str(ingest_to_store(source, domain, horizon, min_train, Path(data_dir)))


@task(name="log-ingest", **remote_retries())
def log_ingest_task(store_dir: str, settings: Settings) -> str:
    """Log the ingest run (tsfm-ingest experiment); returns its run id."""
    meta = read_meta(store_dir)
    registry.use_experiment("ingest", settings)
    with mlflow.start_run(run_name=f"ingest-{meta['domain']}") as run:
        mlflow.log_params({k: meta[k] for k in ("domain", "source", "horizon", "min_train", "freq")})
        mlflow.log_metrics({k: float(meta[k]) for k in ("n_series", "rows_in", "rows_kept", "rows_quarantined")})
        mlflow.set_tags({"data_version": meta["md5"], "git_commit": registry.git_commit(), "domain": meta["domain"]})
        # digest = what DVC records for the store (dvc.lock), so the run points at a DVC version
        dataset = log_store_input(store_dir, context="ingest")
        mlflow.set_tag("dvc_md5", dataset.digest)
        for name in (META_FILE, QUARANTINE_FILE):
            mlflow.log_artifact(str(Path(store_dir) / name), artifact_path="store")
    return run.info.run_id
