"""Inference latency of the fused model (frozen backbone + memory adapter) against the
backbone alone and against retrieval at inference (the kNN teacher).

Per batch size, wall time of one ``predict`` call (median over repeats, after warm-up):
- backbone: ``models.forecasting.batch.batch_forecast`` (the frozen backbone alone);
- backbone_fwd: the backbone's ``forecast`` alone in one inference pass on the padded
            batch (no per-call module moves/mode switches): the floor under both;
- fused:    ``FusedForecaster.predict`` (backbone + adapter, one pass, no search);
- teacher:  ``TeacherForecaster.predict`` (backbone + faiss search over a datastore of
            ``--store-windows`` windows + re-rank, per request);
- adapter:  the adapter's forward and the fusion alone, on tensors (its pure cost).
The methods are timed round-robin within each repeat, so load from other processes
falls on all of them alike. Targets (issue 4): fused / backbone <= 1.10 at batch 1
and 256; the adapter has at most 5% of the backbone's parameters.

    .venv/bin/python benchmarks/adapter_latency.py --threads 1 --out /tmp/adapter_latency.json
"""

from __future__ import annotations

import argparse
import contextlib
import time
from pathlib import Path

import numpy as np  # bench_common (imported first) puts the repository on sys.path
import torch
from bench_common import REPO, machine, markdown_table, median, warn_if_busy, write_json

from models.backbone.io import load_backbone
from models.backbone.network import PatchBackbone
from models.backbone.presets import get_preset
from models.forecasting.batch import batch_forecast
from models.forecasting.fused import FusedForecaster
from models.forecasting.inputs import left_pad
from models.forecasting.teacher import TeacherForecaster
from models.memory.adapter import ADAPTER_MAX_FRACTION, AdapterShape, MemoryAdapter
from models.memory.config import TeacherConfig
from models.memory.fusion import fuse_torch
from models.memory.teacher import KnnTeacher
from models.memory.windows import sliding_windows

DEFAULT_BACKBONE = REPO / ".tsfm/zero-shot/runs/evaluate/backbone-1-20261123-123156/model/artifacts/forecaster/backbone"


def synthetic_series(n: int, length: int, seed: int) -> list[np.ndarray]:
    """Seasonal + trend + AR(1) noise series of random level, scale and period."""
    rng = np.random.default_rng(seed)
    t = np.arange(length)
    out = []
    for _ in range(n):
        period = rng.choice([4, 7, 12, 24, 52])
        noise = np.zeros(length)
        e = rng.normal(0, 1, length)
        phi = rng.uniform(0, 0.9)
        for i in range(1, length):
            noise[i] = phi * noise[i - 1] + e[i]
        x = (
            rng.uniform(1, 5) * np.sin(2 * np.pi * t / period + rng.uniform(0, 2 * np.pi))
            + rng.normal(0, 0.02) * t
            + noise
        )
        out.append((rng.uniform(-100, 1000) + rng.uniform(0.1, 50) * x).astype(np.float32))
    return out


def build_backbone(path: str | None, preset: str, seed: int) -> tuple[PatchBackbone, str]:
    if path and Path(path).exists():
        return load_backbone(path), str(path)
    if path and path != str(DEFAULT_BACKBONE):
        raise SystemExit(f"--backbone {path} does not exist")
    torch.manual_seed(seed)
    return PatchBackbone(get_preset(preset)).eval(), f"random {preset} preset (seed {seed})"


def build_teacher(
    backbone, n_windows: int, context: int, horizon: int, index_type: str | None, seed: int, batch_size: int
) -> tuple[KnnTeacher, float]:
    """A datastore of ``n_windows`` synthetic train windows (stride 1), keyed by the backbone's embedding."""
    per_series = 100  # windows per series: length = context + horizon + per_series - 1
    n_series = -(-n_windows // per_series)
    series = synthetic_series(n_series, context + horizon + per_series - 1, seed)
    win = sliding_windows(series, context, horizon)
    keep = slice(0, n_windows)
    started = time.perf_counter()
    contexts = list(win.context[keep])  # full windows: no left padding to strip
    keys = batch_forecast(backbone, contexts, horizon, context, batch_size=batch_size).embedding
    config = TeacherConfig() if index_type is None else TeacherConfig(index_type=index_type)
    teacher = KnnTeacher(keys, win.context[keep], win.future[keep], config)
    return teacher, time.perf_counter() - started


def resolved_index_type(teacher: KnnTeacher) -> str:
    """The faiss index the store got ("auto" resolves by size where TeacherConfig can say how)."""
    resolve = getattr(teacher.config, "resolve_index_type", None)
    return resolve(teacher.size) if resolve else teacher.config.index_type


def limit_threads(threads: int | None):
    if not threads:
        return contextlib.nullcontext()
    torch.set_num_threads(threads)
    import faiss

    faiss.omp_set_num_threads(threads)
    try:
        from threadpoolctl import threadpool_limits

        return threadpool_limits(threads)
    except ImportError:
        return contextlib.nullcontext()


def time_round_robin(fns: dict, repeats: int, warmup: int) -> dict[str, list[float]]:
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            t = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t)
    return times


def quantile(values: list[float], q: float) -> float:
    return float(np.quantile(np.asarray(values), q))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--backbone",
        default=str(DEFAULT_BACKBONE),
        help="saved backbone folder (config.json + weights.pt); default: the zero-shot 4m run's, "
        "or a random --preset backbone when that is missing",
    )
    ap.add_argument("--preset", default="4m", help="preset of the random backbone used when --backbone is missing")
    ap.add_argument("--batches", default="1,256", help="comma-separated batch sizes (series per predict call)")
    ap.add_argument("--repeats", type=int, default=30, help="timed calls per method and batch size")
    ap.add_argument("--warmup", type=int, default=5, help="untimed calls first")
    ap.add_argument("--threads", type=int, default=None, help="torch / faiss / BLAS threads (default: as is)")
    ap.add_argument("--store-windows", type=int, default=50_000, help="teacher datastore size (windows)")
    ap.add_argument("--index-type", default=None, help="teacher faiss index type (default: TeacherConfig's)")
    ap.add_argument("--context", type=int, default=64)
    ap.add_argument("--horizon", type=int, default=18)
    ap.add_argument("--hidden", type=int, default=64, help="adapter hidden width")
    ap.add_argument("--alpha", type=float, default=0.5, help="fusion weight of the fused model")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=None, help="write the figures here as JSON")
    args = ap.parse_args(argv)
    batches = [int(b) for b in args.batches.split(",") if b.strip()]
    c, h = args.context, args.horizon

    with limit_threads(args.threads):
        warn_if_busy()
        backbone, backbone_src = build_backbone(args.backbone, args.preset, args.seed)
        n_backbone = sum(p.numel() for p in backbone.parameters())
        torch.manual_seed(args.seed)
        adapter = MemoryAdapter(AdapterShape(backbone.config.d_model, h, backbone.config.n_quantiles, args.hidden))
        with torch.no_grad():  # an untrained adapter's last layer is zero: make it do real work
            adapter.out.weight.normal_(0.0, 0.05)
            adapter.out.bias.normal_(0.0, 0.05)
        adapter.eval()
        n_adapter = adapter.n_parameters()
        fused = FusedForecaster(backbone, adapter, args.alpha, c, h, batch_size=max(batches))
        print(
            f"backbone: {backbone_src}: {n_backbone:,} parameters; adapter hidden {args.hidden}: "
            f"{n_adapter:,} parameters = {n_adapter / n_backbone:.2%} of the backbone "
            f"(budget {ADAPTER_MAX_FRACTION:.0%}); threads {torch.get_num_threads()}",
            flush=True,
        )
        teacher, build_s = build_teacher(
            backbone, args.store_windows, c, h, args.index_type, args.seed + 1, max(batches)
        )
        index_type = resolved_index_type(teacher)
        print(
            f"teacher datastore: {teacher.size:,} windows, index {index_type}, embedded and indexed in {build_s:.1f} s",
            flush=True,
        )
        teacher_fc = TeacherForecaster(backbone, teacher, c, h, batch_size=max(batches))

        rows = []
        queries = synthetic_series(max(batches), c + 40, args.seed + 2)  # longer than the context: cut to it
        for b in batches:
            ctx = queries[:b]
            emb = torch.randn(b, backbone.config.d_model)
            base = torch.sort(torch.randn(b, h, backbone.config.n_quantiles), -1).values
            scale, loc = torch.rand(b) + 0.5, torch.randn(b)

            def adapter_only():
                with torch.inference_mode():
                    q_mem = adapter(emb, base) * scale[:, None, None] + loc[:, None, None]
                    return fuse_torch(base, q_mem, args.alpha).numpy()

            def backbone_fwd():
                with torch.inference_mode():
                    return backbone.forecast(torch.from_numpy(left_pad(ctx, c)), h).quantiles.numpy()

            fns = {
                "backbone": lambda: batch_forecast(backbone, ctx, h, c, batch_size=b),
                "backbone_fwd": backbone_fwd,
                "fused": lambda: fused.predict(ctx, h).quantiles,
                "teacher": lambda: teacher_fc.predict(ctx, h).quantiles,
                "adapter": adapter_only,
            }
            times = time_round_robin(fns, args.repeats, args.warmup)
            row = {"batch": b}
            for name, t in times.items():
                row[f"{name}_ms"] = 1e3 * median(t)
                row[f"{name}_p10_ms"], row[f"{name}_p90_ms"] = 1e3 * quantile(t, 0.1), 1e3 * quantile(t, 0.9)
            row["fused_over_backbone"] = row["fused_ms"] / row["backbone_ms"]
            row["fused_over_backbone_fwd"] = row["fused_ms"] / row["backbone_fwd_ms"]
            row["teacher_over_fused"] = row["teacher_ms"] / row["fused_ms"]
            # per-repeat ratios (the calls of one repeat ran back to back): robust to slow drifts in load
            row["fused_over_backbone_paired"] = median([f / g for f, g in zip(times["fused"], times["backbone"])])
            row["fused_over_backbone_fwd_paired"] = median(
                [f / g for f, g in zip(times["fused"], times["backbone_fwd"])]
            )
            row["teacher_over_fused_paired"] = median([f / g for f, g in zip(times["teacher"], times["fused"])])
            rows.append(row)
            print(
                f"batch {b}: backbone {row['backbone_ms']:.2f} ms, fused {row['fused_ms']:.2f} ms, "
                f"teacher {row['teacher_ms']:.2f} ms",
                flush=True,
            )

    print()
    print(
        markdown_table(
            rows,
            [
                ("batch", "batch", "d"),
                ("backbone_ms", "backbone ms", ".2f"),
                ("backbone_fwd_ms", "backbone fwd ms", ".2f"),
                ("fused_ms", "fused ms", ".2f"),
                ("teacher_ms", "teacher ms", ".2f"),
                ("adapter_ms", "adapter alone ms", ".3f"),
                ("fused_over_backbone", "fused / backbone", ".3f"),
                ("fused_over_backbone_paired", "(paired)", ".3f"),
                ("fused_over_backbone_fwd", "fused / backbone fwd", ".3f"),
                ("fused_over_backbone_fwd_paired", "(paired)", ".3f"),
                ("teacher_over_fused", "teacher / fused", ".2f"),
                ("teacher_over_fused_paired", "(paired)", ".2f"),
            ],
        )
    )
    print(
        f"\nmedians of {args.repeats} calls after {args.warmup} warm-up calls; context {c}, horizon {h}; "
        f"teacher datastore {teacher.size:,} windows; target fused / backbone <= 1.10"
    )
    write_json(
        args.out,
        {
            "config": {
                **vars(args),
                "backbone_source": backbone_src,
                "backbone_params": n_backbone,
                "adapter_params": n_adapter,
                "adapter_fraction": n_adapter / n_backbone,
                "store_windows": teacher.size,
                "index_type": index_type,
                "torch_threads": torch.get_num_threads(),
                "datastore_build_s": build_s,
            },
            "machine": machine(),
            "rows": rows,
        },
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
