from prefect import flow

from infra.settings import EvaluateParams, load_settings
from tasks.evaluate import forecast_zero_shot_task, log_zero_shot_task, prepare_zero_shot_task, summarize_zero_shot_task
from tasks.pretrain import ensure_backbone_task


@flow(name="evaluate", log_prints=True)
def evaluate_flow(params: EvaluateParams = EvaluateParams()) -> dict:
    """registered backbone -> zero-shot forecasts and baselines per dataset -> tables -> MLflow + registry tags."""
    settings = load_settings()
    ensure_backbone_task(settings, params.backbone)  # a fresh clone evaluates the shipped backbone
    backbone = prepare_zero_shot_task(params, settings)
    dataset_dirs = [forecast_zero_shot_task(dataset, backbone, params) for dataset in params.datasets]
    summary = summarize_zero_shot_task(backbone, dataset_dirs, params)
    return log_zero_shot_task(backbone, summary, params, settings)
