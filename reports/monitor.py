"""A monitor check as markdown (its Prefect artifact): the verdict, realized accuracy against what
validation promised, the drift tables and the MLflow run; and the check's plots (forecast vs actual,
realized error by forecast step)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from reports.tables import markdown_table
from tracking.links import run_link

REALIZED_COLUMNS = [
    "model_version",
    "family",
    "points",
    "series",
    "origins",
    "MASE",
    "val_MASE",
    "naive_MASE",
    "sCRPS",
    "val_sCRPS",
    "naive_sCRPS",
    "sMAPE",
    "val_sMAPE",
    "coverage",
    "val_coverage",
]
DRIFT_COLUMNS = ["psi", "n_reference", "n_current", "reference_median", "current_median", "drifted"]


def monitor_report(verdict: dict, table: pd.DataFrame, drifted: dict, tracking_uri: str, run) -> str:
    head = (
        f"# Monitor of {verdict['domain']}: {'DEGRADED' if verdict['degraded'] else 'healthy'}\n\n"
        + "".join(f"- {r}\n" for r in verdict["reasons"])
        + f"\n{verdict['points']} forecast points scored (origins {', '.join(verdict['origins']) or 'none'}), "
        f"{verdict['waiting']} wait for their actuals.\n\n"
    )
    if not table.empty:
        realized = table[REALIZED_COLUMNS].reset_index(drop=True)
        head += "## Realized vs validation\n\n" + markdown_table(realized, na="n/a") + "\n\n"
    for data, features in drifted["tables"].items():
        frame = pd.DataFrame(features).T[DRIFT_COLUMNS].reset_index(names="feature")
        head += (
            f"## Drift of the {'served contexts' if data == 'serving' else 'new data'} "
            f"(vs {drifted['reference']})\n\n" + markdown_table(frame, na="n/a") + "\n\n"
        )
    return head + f"MLflow: {run_link(tracking_uri, run.info.experiment_id, run.info.run_id)}\n"


def realized_plots(points: pd.DataFrame, actuals: pd.DataFrame, steps: pd.DataFrame, folder: Path, domain: str) -> None:
    """Forecast vs actual for a few series (latest origin), and the error by forecast step."""
    from reports.plots import forecast_vs_actual_plot, per_horizon_plot

    latest = points[points["origin"] == points["origin"].max()]
    ids = list(dict.fromkeys(latest["unique_id"]))
    picks = [ids[i] for i in np.linspace(0, len(ids) - 1, min(6, len(ids))).astype(int)]
    history = actuals.assign(unique_id=actuals["unique_id"].astype(str))
    history = history[history["unique_id"].isin(picks)]
    forecast_vs_actual_plot(
        latest[latest["unique_id"].isin(picks)],
        history,
        folder / "forecast_vs_actual.png",
        f"{domain}: forecasts of origin {latest['origin'].iloc[0]} and what happened",
    )
    errors = {
        f"v{v} ({f})": g.set_index("step")["MASE"].reindex(range(1, int(steps["step"].max()) + 1)).to_numpy()
        for (v, f), g in steps.groupby(["model_version", "family"])
    }
    per_horizon_plot(errors, folder / "per_step_error.png", f"{domain}: realized error by forecast step")
