"""Record an ingest in MLflow: the store's counts, its quarantine and the dataset digest."""
from __future__ import annotations

from pathlib import Path

import mlflow
from prefect import task

from infra.settings import Settings
from tasks import tracking
from tasks.ingest import META_FILE, QUARANTINE_FILE, read_store


@task(name="log-ingest")
def log_ingest_task(store_dir: str, settings: Settings) -> str:
    """Log the ingest run (tsfm-ingest experiment); returns its run id."""
    df, meta = read_store(Path(store_dir))
    tracking.use_experiment("ingest", settings)
    with mlflow.start_run(run_name=f"ingest-{meta['domain']}") as run:
        mlflow.log_params({k: meta[k] for k in ("domain", "source", "horizon", "min_train", "freq")})
        mlflow.log_metrics({k: float(meta[k]) for k in ("n_series", "rows_in", "rows_kept", "rows_quarantined")})
        mlflow.set_tags({"data_version": meta["md5"], "git_commit": tracking.git_commit(), "domain": meta["domain"]})
        mlflow.log_input(mlflow.data.from_pandas(df, source=str(store_dir), name=meta["domain"],
                                                 digest=meta["md5"][:36]), context="ingest")
        for name in (META_FILE, QUARANTINE_FILE):
            mlflow.log_artifact(str(Path(store_dir) / name), artifact_path="store")
    return run.info.run_id
