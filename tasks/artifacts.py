"""Prefect artifacts of an onboarding run: what a user opens in the Prefect UI after one click.

- markdown report (key ``onboard-<domain>``): versions, fusion weight, promotion decision,
  validation and test tables, where to find the runs and models in MLflow;
- table artifact of the test metrics (renders natively, sortable);
- the test fan chart as an image artifact (MLflow's artifact URL when tracking is a server,
  else the PNG inlined as a data URL, since the Prefect UI cannot read local files);
- link artifacts to the MLflow run and the registered model version (tracking servers only).
"""
from __future__ import annotations

import base64
import re
from pathlib import Path

import mlflow
import pandas as pd
from prefect import task
from prefect.artifacts import (
    create_image_artifact,
    create_link_artifact,
    create_markdown_artifact,
    create_table_artifact,
)

from infra.settings import Settings
from tasks.metrics import markdown_table
from tasks.tracking import remote_retries

INLINE_IMAGE_MAX_BYTES = 2_000_000  # a bigger chart is linked by path only


def artifact_key(prefix: str, domain: str) -> str:
    """Prefect keys allow lowercase letters, digits and dashes only."""
    return re.sub(r"[^a-z0-9-]", "-", f"{prefix}-{domain}".lower())


def mlflow_links(settings: Settings, run_id: str, domain: str, version: str) -> dict[str, str]:
    """UI links to the run and the fused model version; empty without an HTTP tracking server."""
    uri = settings.tracking_uri
    if not uri.startswith(("http://", "https://")):
        return {}
    base = uri.rstrip("/")
    run = mlflow.MlflowClient(tracking_uri=uri).get_run(run_id)
    return {
        "run": f"{base}/#/experiments/{run.info.experiment_id}/runs/{run_id}",
        "model": f"{base}/#/models/fused-{domain}/versions/{version}",
        "fan_chart": f"{base}/get-artifact?path=report/test_fan_chart.png&run_uuid={run_id}",
    }


def onboarding_report(registered: dict, domain: str, settings: Settings, links: dict[str, str]) -> str:
    out = Path(registered["result_dir"])
    val = pd.read_csv(out / "val_metrics.csv", index_col=0)
    test = pd.read_csv(out / "test_metrics.csv", index_col=0)
    promotion = registered.get("promotion") or {}
    lines = [
        f"# Onboarding of `{domain}`",
        "",
        f"- registered: `fused-{domain}` v{registered['fused_version']}, `teacher-{domain}` "
        f"v{registered['teacher_version']}, `adapter-{domain}` v{registered['adapter_version']}",
        f"- fusion weight alpha = {registered['alpha']:.2f} (chosen on validation)",
    ]
    if promotion:
        verdict = "promoted to `champion`" if promotion.get("promoted") else "not promoted (stays `challenger`)"
        lines.append(f"- promotion gate: {verdict}: {promotion.get('reason', '')}")
    if links:
        lines.append(f"- MLflow: [run]({links['run']}), [model version]({links['model']})")
    else:
        lines.append(f"- MLflow run `{registered['run_id']}` in experiment `tsfm-onboard`; open it with "
                     f"`mlflow ui --backend-store-uri {settings.tracking_uri}`")
    lines.append(f"- result folder: `{out}`")
    for title, table in (("Validation (selection happens here)", val), ("Test (never seen while fitting)", test)):
        lines += ["", f"## {title}", "", markdown_table(table.rename_axis("model"))]
    return "\n".join(lines) + "\n"


def publish_onboarding_artifacts(registered: dict, domain: str, settings: Settings) -> dict[str, str]:
    """Create the artifacts; returns {kind: artifact id}."""
    out = Path(registered["result_dir"])
    links = mlflow_links(settings, registered["run_id"], domain, registered["fused_version"])
    ids = {"report": create_markdown_artifact(
        onboarding_report(registered, domain, settings, links), key=artifact_key("onboard", domain),
        description=f"onboarding report of {domain}")}
    test = pd.read_csv(out / "test_metrics.csv", index_col=0).round(4).reset_index()
    ids["test_table"] = create_table_artifact(test.to_dict("records"), key=artifact_key("onboard-test", domain),
                                              description=f"{domain}: test metrics per model")
    chart = out / "test_fan_chart.png"
    if "fan_chart" in links:
        image_url = links["fan_chart"]
    elif chart.is_file() and chart.stat().st_size <= INLINE_IMAGE_MAX_BYTES:
        image_url = "data:image/png;base64," + base64.b64encode(chart.read_bytes()).decode()
    else:
        image_url = None
    if image_url:
        ids["fan_chart"] = create_image_artifact(image_url, key=artifact_key("onboard-fan-chart", domain),
                                                 description=f"{domain}: fused forecast on the test split")
    for name in ("run", "model"):
        if name in links:
            ids[name] = create_link_artifact(links[name], link_text=f"MLflow {name} of {domain}",
                                             key=artifact_key(f"onboard-mlflow-{name}", domain))
    return {k: str(v) for k, v in ids.items()}


# retried: it talks to MLflow and the Prefect API
publish_task = task(publish_onboarding_artifacts, name="publish-artifacts", **remote_retries())
