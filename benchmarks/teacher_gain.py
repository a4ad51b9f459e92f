"""Where the kNN teacher's gain goes: onboard domains onto one backbone folder (the pure
``models.memory.onboarding.onboard``, no tracking) and report, per domain, test sCRPS of the backbone,
the teacher and the fused model, the share of the teacher's gain the fused model keeps, and the
diagnostics that explain a low share:

- the teacher's gain over the backbone on the adapter's training queries (with the overlap
  exclusions) against its gain on validation and test: a training-time teacher weaker than the
  inference-time one gives the adapter little to learn;
- the adapter's best epoch and alpha (epoch 0 / alpha 0 = the adapter was thrown away);
- the teacher's median-gate share (queries where its median beat the backbone's).

    python benchmarks/teacher_gain.py --backbone models/backbone/shipped --sources builtin:m3-micro,builtin:aus_retail
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
from bench_common import REPO  # noqa: F401  (puts the repository on sys.path)


def part_scores(result, part: str) -> dict[str, float]:
    from models.metrics import scaled_crps

    y = result.split.truth(part)
    forecasts = getattr(result, part)
    return {
        name: float(np.nanmean(scaled_crps(y, getattr(forecasts, name)))) for name in ("backbone", "teacher", "fused")
    }


def gain_kept(s: dict[str, float]) -> float | None:
    gain = s["backbone"] - s["teacher"]
    return None if gain <= 0 else (s["backbone"] - s["fused"]) / gain


def train_teacher_gain(backbone, split, cfg) -> dict[str, float]:
    """sCRPS of the backbone and of the training-time teacher (overlap exclusions) on the adapter's
    own training queries: what distillation sees."""
    from models.memory import windows
    from models.memory.datastore import BackboneEmbedder, array_chunks, build_datastore
    from models.memory.onboarding import min_context
    from models.metrics import scaled_crps

    h = split.horizon
    c = cfg.context_length
    win = windows.sliding_windows(
        split.train, c, h, cfg.stride, min_context(c, int(split.horizons.min()), cfg.teacher.align_points)
    )
    embed = BackboneEmbedder(backbone, h, cfg.batch_size, "cpu", keep=True)
    teacher = build_datastore(embed, array_chunks(win.context, win.future), cfg.teacher, n_windows=len(win))
    base = embed.outputs(teacher.keys)
    out = teacher.query(base.embedding, win.context, exclude=windows.overlapping_rows(win, h))
    q_t = np.where(np.isnan(out.quantiles), base.quantiles, out.quantiles)
    # scale each window by its own context's mean absolute value, as sCRPS does per series
    return {
        "backbone": float(np.nanmean(scaled_crps(win.future, base.quantiles))),
        "teacher": float(np.nanmean(scaled_crps(win.future, q_t))),
        "confidence": float(out.confidence.mean()),
        "windows": len(win),
    }


def causal_rows(win, horizon: int) -> np.ndarray:
    """Every row of the query's own series whose future does not end before the query's origin
    (what an inference-time query can never retrieve), -1 padded: the experiment's exclusion."""
    n = len(win)
    starts = np.searchsorted(win.series_index, win.series_index, side="left")
    stops = np.searchsorted(win.series_index, win.series_index, side="right")
    first = np.array(
        [
            starts[i] + np.searchsorted(win.end[starts[i] : stops[i]], win.end[i] - horizon, side="right")
            for i in range(n)
        ]
    )
    width = int((stops - first).max())
    out = first[:, None] + np.arange(width)[None, :]
    return np.where(out < stops[:, None], out, -1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--backbone", required=True, help="a backbone folder (config.json + weights)")
    ap.add_argument("--sources", default="builtin:m3-micro,builtin:aus_retail")
    ap.add_argument("--horizon", type=int, default=12, help="for sources without their own horizons")
    ap.add_argument("--set", default="{}", help="onboarding settings as JSON, e.g. '{\"context_length\": 128}'")
    ap.add_argument("--origins", type=int, default=3, help="validation windows per series")
    ap.add_argument("--train-teacher", action="store_true", help="also score the training-time teacher")
    ap.add_argument(
        "--exclusion",
        choices=("overlap", "causal"),
        default="overlap",
        help="training-time teacher exclusions: the current rule or the causal experiment",
    )
    ap.add_argument("--out", default=None, help="write the rows as JSON here")
    args = ap.parse_args()

    from models.backbone.io import load_backbone
    from models.memory.config import OnboardingConfig
    from models.memory.onboarding import onboard
    from store.canonical import read_split
    from store.ingest import ingest_to_store

    cfg = OnboardingConfig(**json.loads(args.set))
    if args.exclusion == "causal":
        import models.memory.onboarding as onboarding_module
        import models.memory.windows as windows_module

        onboarding_module.overlapping_rows = windows_module.overlapping_rows = causal_rows
    backbone = load_backbone(args.backbone)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for source in args.sources.split(","):
            domain = source.split(":")[-1].replace("_", "-").lower()
            store = ingest_to_store(source, domain, args.horizon, 2 * args.horizon, Path(tmp))
            split, _ = read_split(store, args.horizon, None, True, args.origins)
            t = time.perf_counter()
            result = onboard(backbone, split, cfg)
            best = next(h["epoch"] for h in result.history if h.get("best"))
            row = {
                "domain": domain,
                "series": len(split),
                "alpha": result.alpha,
                "best_epoch": best,
                "epochs": len(result.history) - 1,
                "seconds": round(time.perf_counter() - t, 1),
            }
            for part in ("val", "test"):
                s = part_scores(result, part)
                row.update({f"{part}_{k}": round(v, 4) for k, v in s.items()})
                kept = gain_kept(s)
                row[f"{part}_kept"] = None if kept is None else round(kept, 3)
            if args.train_teacher:
                row.update(
                    {
                        f"train_{k}": (round(v, 4) if isinstance(v, float) else v)
                        for k, v in train_teacher_gain(backbone, split, cfg).items()
                    }
                )
            rows.append(row)
            print(json.dumps(row), flush=True)
    if args.out:
        Path(args.out).write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
