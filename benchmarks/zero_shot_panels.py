"""Zero-shot on the daily and hourly panels' test windows (issue 25's targets): a backbone against
seasonal naive and AutoETS, geometric mean over windows of the MASE and scaled-CRPS ratios.

Test windows: the last 7 windows of one horizon per series of each panel of ``zero_shot_val.PANELS``
(Warsaw air quality and Victoria daily, 14 days; Nord Pool and Victoria hourly, 24 hours), none of
which is in any training corpus. The backbone reads the context it was trained on (its card or
``--context``); the statistical models see the same history (the latest 2,000 points).

    python benchmarks/zero_shot_panels.py --backbone models/backbone/shipped --context 256
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from bench_common import REPO, machine, markdown_table, write_json
from zero_shot_val import PANELS, panel_windows


def main() -> None:
    from evaluation.baselines import baseline_forecasts
    from evaluation.scores import per_series_frame
    from models.backbone.io import load_backbone
    from models.forecasting.batch import batch_forecast
    from models.metrics import geometric_mean_ratio

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--backbone", default=str(REPO / "models" / "backbone" / "shipped"))
    ap.add_argument("--context", type=int, default=None, help="default: the card's context_length, else 2048")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    card = Path(args.backbone) / "card.json"
    context = args.context or (json.loads(card.read_text()).get("context_length") if card.is_file() else None) or 2048
    backbone = load_backbone(args.backbone)
    rows = []
    for name, (contexts, truth, season) in panel_windows("test").items():
        h = truth.shape[1]
        stats = baseline_forecasts(contexts, h, season, models=["seasonal_naive", "auto_ets"])
        forecasts = {"backbone": batch_forecast(backbone, contexts, h, context).quantiles.astype(np.float64), **stats}
        frame = per_series_frame(forecasts, truth, contexts, season)
        wide = {m: f.reset_index(drop=True) for m, f in frame.groupby("model")}
        row = {"panel": name, "windows": len(contexts)}
        for ref in ("seasonal_naive", "auto_ets"):
            for metric in ("MASE", "sCRPS"):
                row[f"{metric} vs {ref}"] = geometric_mean_ratio(
                    wide["backbone"][metric].to_numpy(), wide[ref][metric].to_numpy()
                )
        rows.append(row)
        print(row, flush=True)
    columns = [("panel", "panel", ""), ("windows", "windows", "d")] + [
        (f"{m} vs {r}", f"{m} / {r.replace('_', ' ')}", ".3f")
        for r in ("seasonal_naive", "auto_ets")
        for m in ("MASE", "sCRPS")
    ]
    print(f"backbone {args.backbone}, context {context}")
    print(markdown_table(rows, columns))
    write_json(
        args.out,
        {"machine": machine(), "backbone": args.backbone, "context": context, "rows": rows, "panels": list(PANELS)},
    )


if __name__ == "__main__":
    main()
