"""A monitor check in MLflow: its run in ``tsfm-monitor`` (parameters, realized and drift figures, the
check folder, the verdict) and the verdict on ``forecaster-<domain>``'s ``monitor.*`` tags, which every
server re-exports to Prometheus."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, cast

import mlflow
import numpy as np
import pandas as pd

from infra.settings import MonitorParams, Settings
from tracking import registry


def log_check(
    domain: str,
    verdict: Mapping[str, Any],
    accuracy: Mapping[str, Any],
    drifted: Mapping[str, Any],
    table: pd.DataFrame,
    params: MonitorParams,
    settings: Settings,
    check_dir: str,
    metric_names: Sequence[str],
) -> mlflow.ActiveRun:
    """The check's MLflow run: ``table`` holds the realized figures per model version (``metric_names``
    each, with its ``val_`` and ``_ratio``); ``verdict.json`` and ``check_dir`` become its artifacts."""
    reasons = verdict["reasons"]
    registry.use_experiment("monitor", settings)
    stamp = datetime.fromtimestamp(verdict["checked_at"], timezone.utc).strftime("%Y-%m-%dT%H%M%SZ")
    with mlflow.start_run(run_name=f"monitor-{domain}-{stamp}") as run:
        mlflow.log_params(
            {
                "domain": domain,
                "champion": drifted.get("champion"),
                "forecasts": accuracy["forecasts"],
                "degraded_ratio": params.degraded_ratio,
                "ratio_metrics": ",".join(params.ratio_metrics),
                "psi_threshold": params.psi_threshold,
                "window": params.window,
                "min_points": params.min_points,
                "drift_reference": drifted.get("reference"),
            }
        )
        metrics: dict[str, Any] = {
            "points_scored": accuracy["points"],
            "points_waiting": accuracy["waiting"],
            "origins_scored": len(accuracy["origins"]),
            "degraded": float(bool(reasons)),
        }
        for _, row in table.iterrows():  # one set per model version that made the scored forecasts
            tag = f"v{row['model_version']}"
            for metric in metric_names:
                metrics[f"{metric}_{tag}"] = row[metric]
                metrics[f"val_{metric}_{tag}"] = row[f"val_{metric}"]
                if f"{metric}_ratio" in row:
                    metrics[f"{metric}_ratio_{tag}"] = row[f"{metric}_ratio"]
            for key in ("naive_MASE", "MASE_vs_naive", "naive_sCRPS", "sCRPS_vs_naive"):
                metrics[f"{key}_{tag}"] = row[key]
        for data, features in drifted["tables"].items():
            for feature, row in features.items():
                metrics[f"psi_{data}_{feature}"] = row["psi"]
        mlflow.log_metrics({k: float(v) for k, v in metrics.items() if v is not None and np.isfinite(float(v))})
        if accuracy.get("per_step"):
            steps = pd.read_csv(accuracy["per_step"])
            for (v, _), g in steps.groupby(["model_version", "family"]):
                for _, r in g.iterrows():  # MLflow's charts draw these against the step
                    mlflow.log_metrics(
                        {
                            f"step_MASE_v{v}": float(r["MASE"]),
                            f"step_sCRPS_v{v}": float(r["sCRPS"]),
                            f"step_coverage_v{v}": float(r["coverage"]),
                        },
                        step=int(r["step"]),
                    )
        Path(check_dir).mkdir(parents=True, exist_ok=True)
        (Path(check_dir) / "verdict.json").write_text(json.dumps(verdict, indent=2, default=str))
        mlflow.log_artifacts(check_dir, artifact_path="check")
        note = (
            f"**degraded**: {'; '.join(reasons)}"
            if reasons
            else f"healthy: {accuracy['points']} forecast points scored, no drift past PSI {params.psi_threshold:g}"
        )
        mlflow.set_tags(
            {
                "domain": domain,
                "degraded": str(bool(reasons)).lower(),
                "reason": "; ".join(reasons)[:4900],
                "data_version": accuracy.get("data_version") or "",
                "git_commit": registry.git_commit(),
                registry.NOTE: note,
            }
        )
    return cast(mlflow.ActiveRun, run)


def tag_verdict(
    domain: str, verdict: Mapping[str, Any], table: pd.DataFrame, drifted: Mapping[str, Any], params: MonitorParams
) -> None:
    """The verdict on forecaster-<domain> (``monitor.*``): every server re-exports it to Prometheus."""
    client = mlflow.MlflowClient()
    name = registry.forecaster_name(domain)
    tags = {
        "monitor.checked_at": f"{verdict['checked_at']:.0f}",
        "monitor.degraded": str(int(verdict["degraded"])),
        "monitor.reason": "; ".join(verdict["reasons"])[:4900] or "none",
        "monitor.psi_threshold": f"{params.psi_threshold:g}",
    }
    if not table.empty:
        current = table[table["model_version"].astype(str) == str(verdict.get("champion"))]
        row = (current if not current.empty else table).sort_values("points").iloc[-1]
        for metric in ("MASE", "sCRPS", "sMAPE"):
            if np.isfinite(row.get(f"{metric}_ratio", np.nan)):
                tags[f"monitor.ratio.{metric}"] = f"{row[f'{metric}_ratio']:.4f}"
        for metric in ("MASE", "sCRPS"):
            if np.isfinite(row.get(f"{metric}_vs_naive", np.nan)):
                tags[f"monitor.vs_naive.{metric}"] = f"{row[f'{metric}_vs_naive']:.4f}"
        tags["monitor.coverage"] = f"{row['coverage']:.4f}"
        tags["monitor.scored_at"] = tags["monitor.checked_at"]
    for data, features in drifted["tables"].items():
        for feature, row in features.items():
            if row["psi"] is not None:
                tags[f"monitor.psi.{data}.{feature}"] = f"{row['psi']:.4f}"
    for key, value in tags.items():
        client.set_registered_model_tag(name, key, value)
    # drift figures this check did not measure are not current; realized ones stay until new points are scored
    for key in client.get_registered_model(name).tags:
        if key.startswith("monitor.psi.") and key not in tags:
            client.delete_registered_model_tag(name, key)
