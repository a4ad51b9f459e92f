"""Data-parallel scaling of pre-training on CPU: tokens/s of 1 vs 2 (or more) processes
(gloo DDP) running the real entry point, ``python -m models.pretraining``, on the same
synthetic corpus.

Each run is launched as its own process tree, by default through
``infra/launch/torchrun.sh`` (``NPROC_PER_NODE`` = the process count; ``--launcher
lightning`` uses ``--devices N --strategy ddp`` instead). Every process gets
``--threads-per-process`` threads (default 1, so 2 processes on a 2-core machine compete
with 1 process fairly: the comparison is 1 core vs 2 cores). The batch is per process
(weak scaling: N processes see N times the windows per step).

Figures per run:
* steady aggregate tokens/s: from the trainer's progress lines (tokens of all ranks and
  elapsed seconds at ~10% steps), between the first and the last line, so start-up,
  DDP set-up, final validation and checkpoint saving are left out;
* trainer's aggregate tokens/s: ``tokens_per_second`` from OUT/metrics.json when the
  trainer writes it (fit start to end: DDP set-up and periodic validation included), else
  ``tokens_seen / wall_seconds`` (also final validation and saving);
* per-process tokens/s = aggregate / N; scaling efficiency = aggregate(N) / (N x aggregate(1)).

Run (2-core CPU, about 2.5 minutes):
    .venv/bin/python benchmarks/ddp_scaling.py
    .venv/bin/python benchmarks/ddp_scaling.py --preset tiny --steps 10 --series 16   # smoke test
"""

from __future__ import annotations

import argparse
import json
import socket
import sys
import tempfile
from pathlib import Path

from bench_common import (
    REPO,
    kernelsynth_frame,
    machine,
    markdown_table,
    median,
    run_logged,
    steady_rate,
    trainer_env,
    warn_if_busy,
    write_json,
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_once(n: int, args, corpus: Path, out: Path) -> dict:
    env = trainer_env(args.threads_per_process)
    train = [
        "--data",
        str(corpus),
        "--out",
        str(out),
        "--preset",
        args.preset,
        "--accelerator",
        "cpu",
        "--context-length",
        str(args.context),
        "--horizon-length",
        str(args.horizon),
        "--batch-size",
        str(args.batch),
        "--max-steps",
        str(args.steps),
        "--warmup-steps",
        str(max(1, args.steps // 10)),
        "--checkpoint-every",
        str(args.steps),
        "--seed",
        str(args.seed),
    ]
    if args.launcher == "torchrun":
        env.update(
            NNODES="1",
            NPROC_PER_NODE=str(n),
            MASTER_ADDR="127.0.0.1",
            MASTER_PORT=str(free_port()),
            PYTHON=sys.executable,
        )
        cmd = ["bash", str(REPO / "infra" / "launch" / "torchrun.sh"), *train]
    else:
        cmd = [sys.executable, "-m", "models.pretraining", *train, "--devices", str(n)]
        if n > 1:
            cmd += ["--strategy", "ddp"]
    out.mkdir(parents=True, exist_ok=True)
    rc, wall, points = run_logged(cmd, out.parent / f"{out.name}.log", env)
    if rc != 0:
        raise SystemExit(f"run with {n} process(es) failed (exit {rc}); log: {out.parent / f'{out.name}.log'}")
    metrics = json.loads((out / "metrics.json").read_text())
    e2e = metrics.get("tokens_per_second") or metrics["tokens_seen"] / max(metrics["wall_seconds"], 1e-9)
    steady = steady_rate(points)
    return {
        "processes": n,
        "devices": metrics.get("devices"),
        "tokens_seen": metrics["tokens_seen"],
        "wall_seconds": metrics["wall_seconds"],
        "process_wall_s": wall,
        "steady_tokens_per_s": steady,
        "e2e_tokens_per_s": e2e,
        "final_train_loss": metrics.get("final_train_loss"),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--processes", default="1,2", help="process counts to compare, the first is the baseline")
    ap.add_argument("--preset", default="4m")
    ap.add_argument("--context", type=int, default=256)
    ap.add_argument("--horizon", type=int, default=64)
    ap.add_argument("--batch", type=int, default=16, help="windows per step per process")
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--threads-per-process", type=int, default=1)
    ap.add_argument("--launcher", choices=["torchrun", "lightning"], default="torchrun")
    ap.add_argument("--rounds", type=int, default=1, help="runs of each count, interleaved; medians reported")
    ap.add_argument("--series", type=int, default=64, help="KernelSynth series in the corpus")
    ap.add_argument("--length", type=int, default=512, help="points per series")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workdir", default=None, help="corpus, runs and logs (default: a new temp folder)")
    ap.add_argument("--json", default=None, help="write the figures here")
    args = ap.parse_args()
    counts = [int(c) for c in args.processes.split(",") if c.strip()]
    if not counts or min(counts) < 1 or args.rounds < 1 or args.steps < 2:
        ap.error("--processes must be >= 1, --rounds >= 1, --steps >= 2")

    warn_if_busy()
    work = Path(args.workdir or tempfile.mkdtemp(prefix="tsfm-ddp-scaling-"))
    work.mkdir(parents=True, exist_ok=True)
    corpus = work / f"kernelsynth-{args.series}x{args.length}-{args.seed}.parquet"
    if not corpus.is_file():
        kernelsynth_frame(args.series, args.length, args.seed).to_parquet(corpus, index=False)
    print(
        f"preset {args.preset}, window {args.context}+{args.horizon}, batch {args.batch}/process, "
        f"{args.steps} steps, {args.threads_per_process} thread(s)/process, launcher {args.launcher}; "
        f"work dir {work}",
        flush=True,
    )

    runs: dict[int, list[dict]] = {n: [] for n in counts}
    for r in range(args.rounds):
        for n in counts if r % 2 == 0 else counts[::-1]:
            print(f"round {r + 1}: {n} process(es)", flush=True)
            runs[n].append(run_once(n, args, corpus, work / f"run-{n}p-r{r + 1}"))

    def med(n: int, key: str) -> float | None:
        vals = [x[key] for x in runs[n] if x[key] is not None]
        return median(vals) if vals else None

    base_steady, base_e2e = med(counts[0], "steady_tokens_per_s"), med(counts[0], "e2e_tokens_per_s")
    rows = []
    for n in counts:
        steady, e2e = med(n, "steady_tokens_per_s"), med(n, "e2e_tokens_per_s")
        rows.append(
            {
                "processes": n,
                "devices": runs[n][-1]["devices"],
                "steady": steady,
                "per_process": steady / n if steady else None,
                "efficiency": steady / (n / counts[0] * base_steady) if steady and base_steady else None,
                "e2e": e2e,
                "e2e_efficiency": e2e / (n / counts[0] * base_e2e) if e2e and base_e2e else None,
                "process_wall_s": med(n, "process_wall_s"),
            }
        )
    print()
    print(
        markdown_table(
            rows,
            [
                ("processes", "processes", "d"),
                ("devices", "world size", "d"),
                ("steady", "aggregate tokens/s (steady)", ",.0f"),
                ("per_process", "per process", ",.0f"),
                ("efficiency", "scaling efficiency", ".1%"),
                ("e2e", "aggregate tokens/s (metrics.json)", ",.0f"),
                ("e2e_efficiency", "efficiency (metrics.json)", ".1%"),
                ("process_wall_s", "process wall s", ".1f"),
            ],
        )
    )
    write_json(
        args.json,
        {
            "benchmark": "ddp_scaling",
            "machine": machine(),
            "settings": {k: v for k, v in vars(args).items() if k != "json"},
            "results": rows,
            "runs": {str(k): v for k, v in runs.items()},
        },
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
