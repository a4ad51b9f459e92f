from prefect import flow

from batch.run import settled
from infra.engines import chunk_runner
from infra.settings import ForecastParams, load_settings
from tasks.forecast import (
    commit_forecast_task,
    discard_forecast_task,
    forecast_chunk_task,
    log_forecast_task,
    plan_forecast_task,
)


@flow(name="forecast-chunks")
def forecast_chunks_flow(plan: dict, retries: int) -> list[dict]:
    """Every chunk of the plan on this flow's task runner; a failed chunk is retried alone."""
    chunk = forecast_chunk_task.with_options(retries=retries)
    futures = [chunk.submit(plan, i) for i in range(len(plan["chunks"]))]
    return [f.result() for f in futures]


@flow(name="forecast", log_prints=True)
def forecast_flow(params: ForecastParams = ForecastParams()) -> dict:
    """champion of forecaster-<domain> -> chunks of series on Dask (or inline) -> one Parquet partition
    per origin, committed whole -> MLflow run + Prefect artifact."""
    settings = load_settings()
    params = settled(params, settings)  # the machine's scheduler address and output where params name none
    plan = plan_forecast_task(params, settings)
    try:
        chunks = forecast_chunks_flow.with_options(task_runner=chunk_runner(params, len(plan["chunks"])))(
            plan, params.retries
        )
    except BaseException:
        discard_forecast_task(plan)  # nothing of a failed run is left, nothing was ever visible
        raise
    return log_forecast_task(commit_forecast_task(plan, chunks), settings)
