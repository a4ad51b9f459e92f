"""Batch forecasts of one domain as Prefect tasks around ``batch.run`` (plan -> chunks -> commit, or
discard), ``tracking.forecast_runs`` (the MLflow run) and ``reports.forecast`` (the artifact). A failed
chunk is retried alone (``forecast.retries``, set by the flow)."""

from __future__ import annotations

from datetime import datetime

from prefect import task

from batch import run
from infra.settings import ForecastParams, Settings
from reports.forecast import batch_markdown
from reports.onboarding import artifact_key
from tracking.forecast_runs import log_forecast_run
from tracking.links import run_link
from tracking.retries import remote_retries


def _scheduled() -> datetime | None:
    """The flow run's scheduled start (a deployment's batch takes its origin from it)."""
    try:
        from prefect.runtime import flow_run

        return flow_run.scheduled_start_time
    except Exception:  # noqa: BLE001 - outside a flow run: none
        return None


def _attempt() -> int:
    try:
        from prefect.runtime import task_run

        return int(task_run.run_count or 1)
    except Exception:  # noqa: BLE001 - called outside Prefect
        return 1


@task(name="plan-forecast", **remote_retries())
def plan_forecast_task(params: ForecastParams, settings: Settings) -> dict:
    """Resolve the champion, read the series, write each chunk's input; returns the plan."""
    return run.plan_forecast(params, settings, _scheduled())


@task(name="forecast-chunk", task_run_name="chunk-{index}")
def forecast_chunk_task(plan: dict, index: int) -> dict:
    """Forecast chunk ``index`` of the plan into the staging area; returns its part's URI and counts."""
    return run.forecast_chunk(plan, index, _attempt())


@task(name="commit-forecast", **remote_retries())
def commit_forecast_task(plan: dict, chunks: list[dict]) -> dict:
    """Publish the chunks as the origin's partition (nothing when no series was forecast); the summary."""
    return run.commit_forecast(plan, chunks)


@task(name="log-forecast", **remote_retries())
def log_forecast_task(summary: dict, settings: Settings) -> dict:
    """The batch's MLflow run (tsfm-forecast) and Prefect artifact; returns the summary with the run id."""
    from prefect.artifacts import create_markdown_artifact

    experiment_id, run_id = log_forecast_run(summary, settings)
    link = run_link(settings.tracking_uri, experiment_id, run_id)
    try:
        create_markdown_artifact(
            key=artifact_key("forecast", summary["domain"]),
            description=f"batch forecast of {summary['domain']}",
            markdown=batch_markdown(summary, link),
        )
    except Exception:  # noqa: BLE001 - outside a flow run there is nowhere to publish
        pass
    return {**summary, "mlflow_run_id": run_id}


@task(name="discard-forecast")
def discard_forecast_task(plan: dict) -> None:
    """A failed run's staging area and model copy removed: nothing of it is left."""
    run.discard_forecast(plan)
