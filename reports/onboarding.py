"""What a user reads after one onboarding: the markdown report (versions, fusion weight,
promotion decision, validation and test tables, where the runs and models are in MLflow),
the links to MLflow and the fan chart as something a browser can show.
``tasks.onboard.publish_onboarding_task`` turns them into Prefect artifacts."""

from __future__ import annotations

import base64
import re

import mlflow
import pandas as pd

from infra.settings import Settings
from models.forecasting.kinds import FAMILIES
from models.memory.result import OnboardingResult
from reports.summary import alpha_line, backbone_line, ensemble_line, validation_line, verdict_lines
from reports.tables import markdown_table
from tracking.links import run_url, ui_base

INLINE_IMAGE_MAX_BYTES = 2_000_000  # a bigger chart is linked by path only


def artifact_key(prefix: str, domain: str) -> str:
    """Prefect keys allow lowercase letters, digits and dashes only."""
    return re.sub(r"[^a-z0-9-]", "-", f"{prefix}-{domain}".lower())


def mlflow_links(settings: Settings, run_id: str, domain: str, version: str) -> dict[str, str]:
    """UI links to the run and the domain's forecaster version; empty without an HTTP tracking server."""
    uri = settings.tracking_uri
    base = ui_base(uri)
    if base is None:
        return {}
    run = mlflow.MlflowClient(tracking_uri=uri).get_run(run_id)
    return {
        "run": run_url(uri, run.info.experiment_id, run_id),
        "model": f"{base}/#/models/forecaster-{domain}/versions/{version}",
        "fan_chart": f"{base}/get-artifact?path=report/test_fan_chart.png&run_uuid={run_id}",
    }


def onboarding_report(registered: dict, domain: str, settings: Settings, links: dict[str, str]) -> str:
    result = OnboardingResult.load(registered["result_dir"])
    out = result.folder
    val = pd.read_csv(result.metrics_file("val"), index_col=0)
    test = pd.read_csv(result.metrics_file("test"), index_col=0)
    lines = [
        f"# Onboarding of `{domain}`",
        "",
        *(f"- {line}" for line in verdict_lines(registered)),
        f"- `forecaster-{domain}` versions: "
        + ", ".join(f"{family} v{v}" for family, v in registered["versions"].items()),
        f"- components: `fused-{domain}` v{registered['fused_version']}, `teacher-{domain}` "
        f"v{registered['teacher_version']}, `adapter-{domain}` v{registered['adapter_version']}",
        f"- frequency {result.provenance.get('freq') or 'integer steps'}, season {result.provenance.get('season', '?')}: "
        "seasonal naive, AutoETS, Theta and the MASE scale use this season",
        *(f"- {line}" for line in backbone_line(registered.get("backbone"))),
        f"- {validation_line(result.split.origin_counts(), registered.get('val_origins_asked'))}",
        f"- {alpha_line(registered['alpha'], registered.get('alpha_grid'))}",
        f"- {ensemble_line(registered.get('ensemble'), registered.get('versions'))}",
    ]
    if links:
        lines.append(f"- MLflow: [run]({links['run']}), [model version]({links['model']})")
    else:
        lines.append(
            f"- MLflow run `{registered['run_id']}` in experiment `tsfm-onboard`; open it with "
            f"`mlflow ui --backend-store-uri {settings.tracking_uri}`"
        )
    lines.append(f"- result folder: `{out}`")
    for title, table in (("Validation (selection happens here)", val), ("Test (never seen while fitting)", test)):
        lines += ["", f"## {title}", "", markdown_table(table.rename_axis("model"))]
    return "\n".join(lines) + "\n"


def fan_chart_url(result: OnboardingResult, links: dict[str, str]) -> str | None:
    """The test fan chart for the Prefect UI: MLflow's artifact URL when tracking is a server,
    else the PNG inlined as a data URL (the UI cannot read local files); None when too big."""
    if "fan_chart" in links:
        return links["fan_chart"]
    chart = result.plot_file("test", "fan_chart")
    if chart.is_file() and chart.stat().st_size <= INLINE_IMAGE_MAX_BYTES:
        return "data:image/png;base64," + base64.b64encode(chart.read_bytes()).decode()
    return None


def headline(domain: str, val: pd.DataFrame, test: pd.DataFrame, why: str) -> str:
    """The onboarding run's description, first on its MLflow page: every family on validation and
    test, and the gate's choice."""
    rows = [
        f"| {f} | {val.loc[f, 'sCRPS']:.4f} | {val.loc[f, 'MASE']:.3f} | {test.loc[f, 'sCRPS']:.4f} | "
        f"{test.loc[f, 'MASE']:.3f} |"
        for f in FAMILIES
        if f in val.index and f in test.index
    ]
    return "\n".join(
        [
            f"**{domain}**: challenger chosen because {why}.",
            "",
            "| family | val sCRPS | val MASE | test sCRPS | test MASE |",
            "|---|---|---|---|---|",
            *rows,
            "",
            "Validation chooses; test is reported, never used to choose. Full tables: report/.",
        ]
    )


def tables_description(result: OnboardingResult, val: pd.DataFrame, test: pd.DataFrame) -> str:
    """Every registered version's description: the validation and test tables of its onboarding."""
    return (
        f"Season {result.provenance.get('season', '?')}. Validation (fusion weight alpha={result.alpha:.2f} "
        "and the champion chosen here):\n\n"
        + markdown_table(val.rename_axis("model"))
        + "\n\nTest (never seen while choosing):\n\n"
        + markdown_table(test.rename_axis("model"))
    )
