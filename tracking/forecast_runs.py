"""A batch forecast in MLflow: one run in ``tsfm-forecast`` per committed batch, with its counts and
timings as metrics and the partition it wrote as a tag."""

from __future__ import annotations

import mlflow

from infra.settings import Settings
from tracking import registry

PARAMS = ("domain", "origin", "model", "model_version", "family", "horizon", "source")
METRICS = (
    "series",
    "rows",
    "skipped",
    "chunks",
    "retried_chunks",
    "rows_quarantined",
    "seconds",
    "plan_seconds",
    "chunk_seconds",
    "series_per_s",
    "workers",
)


def log_forecast_run(summary: dict, settings: Settings) -> tuple[str, str]:
    """The batch's summary (``batch.run.commit_forecast``) as an MLflow run; returns (experiment id, run id)."""
    registry.use_experiment("forecast", settings)
    with mlflow.start_run(run_name=f"forecast-{summary['domain']}-{summary['origin']}") as run:
        mlflow.log_params({k: summary[k] for k in PARAMS})
        mlflow.log_metrics({k: float(summary[k]) for k in METRICS})
        mlflow.set_tags(
            {
                "output_uri": summary["output_uri"],
                "domain": summary["domain"],
                "git_commit": registry.git_commit(),
                "data_version": summary["data_version"] or "",
                registry.NOTE: f"{summary['series']} series of {summary['domain']} forecast "
                f"{summary['horizon']} steps by {summary['model']} v{summary['model_version']} "
                f"({summary['family']}) -> {summary['output_uri']}",
            }
        )
    return run.info.experiment_id, run.info.run_id
