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
def ingest_task(
    source: str,
    domain: str,
    horizon: int,
    min_train: int = 8,
    data_dir: str = "data",
    columns: dict[str, str] | None = None,
    date_format: str | None = None,
) -> str:
    """Ingest ``source`` into ``<data_dir>/store/<domain>``; returns that path."""
    return str(ingest_to_store(source, domain, horizon, min_train, Path(data_dir), columns, date_format))


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


@task(name="announce-store")
def announce_store_task(store_dir: str) -> str | None:
    """``tsfm.store.updated`` when this ingest changed the store's data (md5) since the version before it:
    new actuals for the monitor (its deployment's trigger). A first ingest or unchanged data: no event."""
    from infra.events import STORE_UPDATED, emit, store_resource
    from store.ingest import previous_version

    meta = read_meta(store_dir)
    before = previous_version(Path(store_dir))
    if before is None or before[1].get("md5") == meta["md5"]:
        return None
    return emit(
        STORE_UPDATED,
        store_resource(meta["domain"]),
        meta["domain"],
        {
            "domain": meta["domain"],
            "data_version": meta["md5"],
            "previous": before[1].get("md5"),
            "n_series": meta.get("n_series"),
            "rows_kept": meta.get("rows_kept"),
        },
    )
