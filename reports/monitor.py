"""A monitor check as markdown (its Prefect artifact): the verdict, realized accuracy against what
validation promised, the drift tables and the MLflow run."""

from __future__ import annotations

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
