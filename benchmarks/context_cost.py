"""What a longer context costs: one training step and one forecast of the shipped-shape backbone
at contexts of 256, 1,024 and 2,048 steps, in-process on this machine's CPU (or GPU).

- training step: forward + backward + AdamW step on a batch of ``--batch`` windows of context +
  48 masked steps, all observed (the fixed-length cost; the long-run recipe crops each step to a
  drawn context at a constant token budget, so its steps cost about the 256-step figure);
- forecast: ``batch_forecast`` of ``--series`` series whose histories are at least as long as
  the context, 48 steps ahead, per series and per request of 64 series.

    python benchmarks/context_cost.py --out benchmarks/out/context_cost.json
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from bench_common import REPO, machine, markdown_table, median, warn_if_busy, write_json

CONTEXTS = (256, 1024, 2048)
HORIZON = 48


def step_seconds(backbone_dir, context: int, batch: int, repeats: int) -> float:
    import torch

    from models.backbone.io import load_backbone
    from models.pretraining.module import PretrainModule

    model = load_backbone(backbone_dir)
    module = PretrainModule(model.config.to_dict(), future_length=HORIZON)
    module.model.load_state_dict(model.state_dict())
    module.train()
    opt = torch.optim.AdamW(module.parameters(), lr=1e-4)
    values = torch.randn(batch, 1, context + HORIZON).cumsum(-1)
    batch_ = {"values": values, "observed": torch.ones_like(values, dtype=torch.bool)}
    times = []
    for i in range(repeats + 1):
        started = time.perf_counter()
        loss, _ = module.masked_loss(batch_)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if i:  # the first step warms the allocator up
            times.append(time.perf_counter() - started)
    return median(times)


def forecast_seconds(backbone_dir, context: int, n_series: int, request: int, repeats: int) -> tuple[float, float]:
    from models.backbone.io import load_backbone
    from models.forecasting.batch import batch_forecast

    backbone = load_backbone(backbone_dir)
    rng = np.random.default_rng(0)
    histories = [rng.normal(0, 1, context + 100).cumsum().astype(np.float32) for _ in range(n_series)]
    bulk, small = [], []
    for i in range(repeats + 1):
        started = time.perf_counter()
        batch_forecast(backbone, histories, HORIZON, context)
        bulk.append(time.perf_counter() - started)
        started = time.perf_counter()
        batch_forecast(backbone, histories[:request], HORIZON, context)
        small.append(time.perf_counter() - started)
    return median(bulk[1:]) / n_series, median(small[1:])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--backbone", default=str(REPO / "models" / "backbone" / "shipped"))
    ap.add_argument("--batch", type=int, default=64, help="training windows per step")
    ap.add_argument("--series", type=int, default=512, help="series per bulk forecast")
    ap.add_argument("--request", type=int, default=64, help="series per request")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    warn_if_busy()
    rows = []
    for context in CONTEXTS:
        step = step_seconds(args.backbone, context, args.batch, args.repeats)
        per_series, request = forecast_seconds(args.backbone, context, args.series, args.request, args.repeats)
        rows.append(
            {
                "context": context,
                "patches": context // 16,
                "step_ms": step * 1000,
                "forecast_ms_per_series": per_series * 1000,
                "request_ms": request * 1000,
            }
        )
        print(rows[-1], flush=True)
    base = rows[0]
    for r in rows:
        r["step_x"], r["forecast_x"] = r["step_ms"] / base["step_ms"], r["request_ms"] / base["request_ms"]
    print(
        markdown_table(
            rows,
            [
                ("context", "context (steps)", "d"),
                ("patches", "tokens", "d"),
                ("step_ms", f"training step, batch {args.batch} (ms)", ".0f"),
                ("step_x", "x 256", ".2f"),
                ("forecast_ms_per_series", "forecast per series, bulk (ms)", ".2f"),
                ("request_ms", f"request of {args.request} series (ms)", ".0f"),
                ("forecast_x", "x 256", ".2f"),
            ],
        )
    )
    write_json(args.out, {"machine": machine(), "rows": rows, "args": vars(args)})


if __name__ == "__main__":
    main()
