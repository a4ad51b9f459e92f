"""A short trainer run as a subprocess, shared by the resume tests: its corpus, its command line and
the loss curve it logged."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd

MAX_STEPS = 40
# the tiny model on CPU (windows of (64 + 16) / 8 = 10 patches): what every trainer-run test passes
TINY = ["--preset", "tiny", "--context-length", "64", "--horizon-length", "16", "--accelerator", "cpu"]
TINY_CPU = [*TINY, "--devices", "1"]  # ... in one process


def make_corpus(path: Path) -> Path:
    rng = np.random.default_rng(1)
    frames = []
    for i in range(12):
        n = int(rng.integers(60, 200))
        t = np.arange(n)
        y = 3 * i + 4 * np.sin(2 * np.pi * t / int(rng.choice([7, 12]))) + rng.normal(0, 0.5, n)
        frames.append(pd.DataFrame({"unique_id": f"s{i}", "ds": t, "y": y}))
    pd.concat(frames).to_parquet(path, index=False)
    return path


def command(data: Path, out: Path, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "models.pretraining",
        "--data",
        str(data),
        "--out",
        str(out),
        *TINY_CPU,
        "--max-steps",
        str(MAX_STEPS),
        "--batch-size",
        "8",
        "--warmup-steps",
        "5",
        "--lr",
        "3e-3",
        "--seed",
        "0",
        "--log-every-n-steps",
        "1",
        *extra,
    ]


def train_losses(out: Path) -> dict[int, float]:
    """step -> train_loss from the CSV logs, one version folder per (re)start (the last row wins if a step
    was logged twice)."""
    folders = sorted((out / "logs").glob("version_*"), key=lambda p: int(p.name.split("_")[1]))
    df = pd.concat([pd.read_csv(f / "metrics.csv") for f in folders]).dropna(subset=["train_loss"])
    return {int(s): float(v) for s, v in zip(df["step"], df["train_loss"])}
