"""The zero-shot evaluation as markdown: headline tables, slices, windows and run time."""

from __future__ import annotations

import numpy as np
import pandas as pd

from infra.settings import EvaluateParams
from reports.tables import pipe_table
from store.sources import ELECTRICITY


def _fmt(v: float) -> str:
    return "nan" if not np.isfinite(v) else f"{v:.2f}" if abs(v) >= 10 else f"{v:.3f}"


def _md_rows(table: pd.DataFrame, first: str) -> list[str]:
    cols = ["MASE", "sCRPS", "sMAPE", "sCRPS_pooled", "MASE_rel", "sCRPS_rel"]
    head = [first, "n", "model", "MASE", "sCRPS", "sMAPE", "sCRPS pooled", "MASE rel", "sCRPS rel"]
    rows = []
    for key, block in table.groupby(first, sort=False):
        best = {c: block[c].min() for c in cols}
        for _, r in block.iterrows():
            cells = [f"**{_fmt(r[c])}**" if r[c] == best[c] and len(block) > 1 else _fmt(r[c]) for c in cols]
            rows.append([key, r["n"], r["model"], *cells])
    return pipe_table(head, rows, right_from=3).split("\n")


def _pretrain_text(backbone: dict) -> str:
    sources = backbone.get("pretrain_sources") or []
    if not sources:
        return backbone.get("data_version") or "unknown"
    return ", ".join(
        f"{s['domain']} (`{s['source']}`, train part: all but the last 2 x {s['horizon']} points)"
        if s.get("source")
        else s["domain"]
        for s in sources
    )


def markdown_report(table: pd.DataFrame, backbone: dict, datasets: dict[str, dict], params: EvaluateParams) -> str:
    who = f"{backbone['name']} v{backbone['version']}"
    lines = [
        f"### Zero-shot evaluation of {who}",
        "",
        f"Backbone `models:/{backbone['name']}/{backbone['version']}` (asked for as `{backbone['uri']}`; "
        f"preset {backbone.get('preset') or '?'}, {backbone['parameters']:,} parameters, context "
        f"{backbone['context_length']} points, trained with {backbone['train_context']}); "
        f"pre-training data: {_pretrain_text(backbone)}.",
        "",
        "n = test windows (series x windows); means over them of MASE (seasonal-naive scale of the history), "
        "scaled CRPS over the quantiles 0.1..0.9 and sMAPE (%); sCRPS pooled = dataset-level "
        "(GIFT-Eval); *rel* = geometric mean over windows of the ratio to seasonal naive. Lower is better; "
        "the best value per block is bold.",
        "",
        "#### Overall",
        "",
        *_md_rows(table[table["by"] == "all"], "dataset"),
    ]
    for by in ("category", "frequency"):
        for dataset in table.loc[table["by"] == by, "dataset"].unique():
            sub = table[(table["by"] == by) & (table["dataset"] == dataset)]
            lines += ["", f"#### {dataset} by {by}", "", *_md_rows(sub, "slice")]
    lines += ["", "#### Test windows and run time", ""]
    for name, info in datasets.items():
        if name in ELECTRICITY:
            h, m = ELECTRICITY[name]
            what = (
                f"last {params.windows} window(s) of {h} steps per series (rolling origin, season {m}; "
                f"baselines fitted on the last {params.max_history} points)"
            )
        else:
            what = "official M3 test part (horizon 6/8/18/8, season 1/4/12/1 for yearly/quarterly/monthly/other)"
        if info["series"] < info["series_total"]:
            what += f"; {info['series']} of {info['series_total']} series, evenly spaced (--max-series)"
        secs = ", ".join(f"{k} {v:.1f} s" for k, v in info["seconds"].items())
        lines.append(f"- {name}: {info['windows']} windows; {what}. Time: {secs}.")
    for name, info in datasets.items():
        for o in info.get("pretrain_overlap", []):
            if o["series"]:
                lines.append(
                    f"- **Not fully zero-shot on {name}**: pre-training used the train part of "
                    f"`{o['source']}` (store {o['domain']}, horizon {o['horizon']}), which holds up to "
                    f"{o['max_points']} test point(s) of {o['series']} of the series here "
                    f"({o['points']} points in all)."
                )
            else:
                lines.append(
                    f"- {name}: overlap with pre-training store {o['domain']} ({o['source']}) could not be checked."
                )
    if any(info["fallbacks"] for info in datasets.values()):
        n = sum(len(info["fallbacks"]) for info in datasets.values())
        lines.append(f"- {n} baseline fit(s) fell back to a simpler model (listed in forecast.json).")
    return "\n".join(lines) + "\n"
