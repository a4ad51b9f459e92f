"""Zero-shot evaluation of a registered backbone as Prefect tasks:

prepare (resolve and download the backbone, open a run folder) -> forecast one dataset at
a time (frozen backbone and statsforecast baselines on the test windows, metrics per
series) -> summarize (tables overall, by M3 category and by frequency) -> log (MLflow run,
metrics, artifacts, tags on the backbone version). What is scored is ``evaluation.zero_shot``.
"""

from __future__ import annotations

import json
import os
import time
from contextlib import ExitStack
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
from prefect import task

from evaluation.baselines import baseline_pool
from evaluation.zero_shot import (
    BACKBONE,
    METRICS,
    TAGGED,
    check_datasets,
    dataset_table,
    load_groups,
    pretrain_overlap,
    pretrain_sources,
    score_groups,
    tag_label,
)
from infra.logs import run_logger
from infra.settings import EvaluateParams, Settings
from reports.zero_shot import markdown_report
from tracking import registry


def _device(name: str) -> str:
    if name != "auto":
        return name
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def _n_jobs(n: int) -> int:
    if n:
        return n
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def prepare_zero_shot(params: EvaluateParams, settings: Settings) -> dict:
    """Check the datasets, resolve and download the backbone, open the run folder."""
    from models.forecasting.backbone import CONFIG_FILE, BackboneForecaster

    check_datasets(params.datasets)
    registry.configure(settings)
    name, version = registry.resolve(params.backbone)
    run_dir = settings.run_dir("evaluate", f"{name}-{version}-{time.strftime('%Y%m%d-%H%M%S')}")
    run_dir.mkdir(parents=True, exist_ok=True)
    local = Path(mlflow.artifacts.download_artifacts(f"models:/{name}/{version}", dst_path=str(run_dir / "model")))
    found = sorted(local.rglob(CONFIG_FILE))
    if not found:
        raise ValueError(f"{params.backbone} (models:/{name}/{version}) is not a backbone forecaster")
    model_dir = found[0].parent
    forecaster = BackboneForecaster.load(model_dir)
    cfg = forecaster.backbone.config
    tags = registry.version_tags(name, version)
    info = {
        "uri": params.backbone,
        "name": name,
        "version": version,
        "model_dir": str(model_dir),
        "run_dir": str(run_dir),
        "train_context": int(forecaster.context_length),
        "context_length": int(params.context_length or forecaster.context_length),
        "max_context": int(cfg.max_context),
        "patch_size": int(cfg.patch_size),
        "parameters": int(sum(p.numel() for p in forecaster.backbone.parameters())),
        "preset": tags.get("preset"),
        "data_version": tags.get("data_version"),
        "pretrain_sources": pretrain_sources(tags.get("data_version"), settings),
        "started": time.time(),
    }
    (run_dir / "backbone.json").write_text(json.dumps(info, indent=2))
    run_logger().info(
        "zero-shot evaluation of %s/%s (%s parameters, context %d) on %s -> %s",
        name,
        version,
        f"{info['parameters']:,}",
        info["context_length"],
        ", ".join(params.datasets),
        run_dir,
    )
    return info


def forecast_zero_shot(dataset: str, backbone: dict, params: EvaluateParams) -> str:
    """Backbone and baseline forecasts for one dataset's test windows -> per-series metrics.

    Writes ``<run_dir>/<dataset>/per_series.csv`` (one row per window and model) and
    ``forecast.json`` (timings, contexts, baseline fallbacks); returns that folder.
    """
    from models.forecasting.backbone import BackboneForecaster

    out = Path(backbone["run_dir"]) / dataset
    out.mkdir(parents=True, exist_ok=True)
    groups = load_groups(dataset, params.max_series, params.windows)
    forecaster = BackboneForecaster.load(backbone["model_dir"])
    device, n_jobs = _device(params.device), _n_jobs(params.n_jobs)
    with ExitStack() as stack:
        pool = stack.enter_context(baseline_pool(n_jobs, params.baselines)) if n_jobs > 1 else None
        per, info = score_groups(groups, forecaster.backbone, params, backbone, device, n_jobs, pool, out)
    per.to_csv(out / "per_series.csv", index=False)
    if info["fallbacks"]:
        run_logger().warning(
            "%s: %d baseline note(s) (season or model fallbacks), listed in forecast.json",
            dataset,
            len(info["fallbacks"]),
        )
    info["series"] = int(per["unique_id"].nunique())
    info["series_total"] = groups[0].n_total
    info["pretrain_overlap"] = pretrain_overlap(groups, backbone.get("pretrain_sources", []))
    for o in info["pretrain_overlap"]:
        run_logger().warning(
            "%s: pre-training data (%s) %s",
            dataset,
            o["domain"],
            f"overlaps the test windows of {o['series']} series (up to {o['max_points']} points each)"
            if o["series"]
            else "could not be checked for overlap",
        )
    (out / "forecast.json").write_text(json.dumps({"dataset": dataset, **info}, indent=2))
    return str(out)


def summarize_zero_shot(backbone: dict, dataset_dirs: list[str], params: EvaluateParams) -> dict:
    """Per-series metrics of every dataset -> ``zero_shot.csv`` and ``zero_shot.md``."""
    run_dir = Path(backbone["run_dir"])
    tables, infos = [], {}
    for d in map(Path, dataset_dirs):
        per = pd.read_csv(
            d / "per_series.csv",
            dtype={"instance": str, "unique_id": str, "category": str},
            keep_default_na=False,
            na_values=[""],
        )
        per["category"] = per["category"].fillna("")
        info = json.loads((d / "forecast.json").read_text())
        tables.append(dataset_table(info["dataset"], per))
        infos[info["dataset"]] = info
    table = pd.concat(tables, ignore_index=True)
    table.to_csv(run_dir / "zero_shot.csv", index=False)
    text = markdown_report(table, backbone, infos, params)
    (run_dir / "zero_shot.md").write_text(text)
    run_logger().info("zero-shot tables written to %s", run_dir / "zero_shot.md")
    return {
        "table_csv": str(run_dir / "zero_shot.csv"),
        "markdown_file": str(run_dir / "zero_shot.md"),
        "datasets": {k: str(Path(p)) for k, p in zip(infos, dataset_dirs)},
    }


def log_zero_shot(backbone: dict, summary: dict, params: EvaluateParams, settings: Settings) -> dict:
    """One MLflow run (experiment tsfm-evaluate) + tags on the backbone's model version."""
    from prefect.artifacts import create_markdown_artifact

    table = pd.read_csv(summary["table_csv"], keep_default_na=False, na_values=["", "nan", "NaN"])
    text = Path(summary["markdown_file"]).read_text()
    infos = {name: json.loads((Path(d) / "forecast.json").read_text()) for name, d in summary["datasets"].items()}
    name, version = backbone["name"], backbone["version"]
    run_name = f"zero-shot-{name}-{version}"  # which registered model and version was evaluated
    registry.use_experiment("evaluate", settings)
    with mlflow.start_run(run_name=run_name) as run:
        mlflow.log_params(
            {
                **params.model_dump(exclude={"datasets", "baselines"}),
                "datasets": ",".join(params.datasets),
                "baselines": ",".join(params.baselines),
                "backbone_name": name,
                "backbone_version": version,
                "context_length_used": backbone["context_length"],
            }
        )
        overlap = {d: sum(o["series"] or 0 for o in info["pretrain_overlap"]) for d, info in infos.items()}
        mlflow.set_tags(
            {
                "backbone_version": version,
                "backbone_model": name,
                "git_commit": registry.git_commit(),
                "backbone_data_version": backbone.get("data_version") or "unknown",
                **{f"pretrain_overlap_series.{d}": n for d, n in overlap.items() if n},
            }
        )
        metrics = {}
        for _, r in table.iterrows():
            for m in METRICS:
                if np.isfinite(r[m]):
                    metrics[f"{r['scope']}/{r['model']}/{m}"] = float(r[m])
        for dataset, info in infos.items():
            metrics.update({f"{dataset}/{model}/seconds": float(s) for model, s in info["seconds"].items()})
        mlflow.log_metrics(metrics)
        mlflow.log_artifact(summary["markdown_file"])
        mlflow.log_artifact(summary["table_csv"])
        mlflow.log_artifact(str(Path(backbone["run_dir"]) / "backbone.json"))
        for dataset, d in summary["datasets"].items():
            for f in sorted(Path(d).iterdir()):
                mlflow.log_artifact(str(f), artifact_path=f"datasets/{dataset}")

    client = mlflow.MlflowClient()
    headline = {}
    overall = table[(table["by"] == "all") & (table["model"] == BACKBONE)]
    for _, r in overall.iterrows():
        label = tag_label(r["dataset"], infos[r["dataset"]])
        for m in TAGGED:
            headline[f"zero_shot_{label}_{m.lower()}"] = f"{r[m]:.4f}"
        if overlap.get(r["dataset"]):
            headline[f"zero_shot_{label}_pretrain_overlap_series"] = str(overlap[r["dataset"]])
    headline["zero_shot_run_id"] = run.info.run_id
    for key, value in headline.items():
        client.set_model_version_tag(name, version, key, value)
    try:
        create_markdown_artifact(
            key="zero-shot-evaluation", markdown=text, description=f"zero-shot evaluation of {name} v{version}"
        )
    except Exception as exc:  # no Prefect API reachable: the report is in MLflow and on disk anyway
        run_logger().warning("no Prefect artifact: %s", exc)
    results = {
        f"{r['scope']}/{r['model']}/{m}": float(r[m])
        for _, r in table[table["by"] == "all"].iterrows()
        for m in ("MASE", "sCRPS", "sMAPE", "MASE_rel", "sCRPS_rel")
    }
    return {
        "run_id": run.info.run_id,
        "backbone": f"models:/{name}/{version}",
        "backbone_version": version,
        "datasets": list(summary["datasets"]),
        "markdown_file": summary["markdown_file"],
        "table_csv": summary["table_csv"],
        "run_dir": backbone["run_dir"],
        "tags": headline,
        "results": results,
        "seconds": round(time.time() - backbone["started"], 1),
    }


prepare_zero_shot_task = task(prepare_zero_shot, name="prepare-zero-shot")
forecast_zero_shot_task = task(forecast_zero_shot, name="zero-shot-forecast", task_run_name="zero-shot-{dataset}")
summarize_zero_shot_task = task(summarize_zero_shot, name="summarize-zero-shot")
log_zero_shot_task = task(log_zero_shot, name="log-zero-shot")
