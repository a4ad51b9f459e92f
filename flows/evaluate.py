from prefect import flow

from infra.settings import EvaluateParams, load_settings
from tasks.zero_shot import forecast_task, log_task, prepare_task, summarize_task


@flow(name="evaluate", log_prints=True)
def evaluate_flow(params: EvaluateParams = EvaluateParams()) -> dict:
    """registered backbone -> zero-shot forecasts and baselines per dataset -> tables -> MLflow + registry tags."""
    settings = load_settings()
    backbone = prepare_task(params, settings)
    dataset_dirs = [forecast_task(dataset, backbone, params) for dataset in params.datasets]
    summary = summarize_task(backbone, dataset_dirs, params)
    return log_task(backbone, summary, params, settings)
