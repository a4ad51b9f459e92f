"""A small long-format training corpus for the trainer's subprocess tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd


def seasonal_corpus(
    path: Path,
    n_series: int,
    lengths: tuple[int, int],
    periods: tuple[int, ...] = (7, 12, 24),
    gap_rate: float = 0.0,
    shuffle: bool = False,
    seed: int = 0,
) -> Path:
    """Series i: level 10*i, a sine of a random period, a little trend and noise; optional
    missing values (NaN at ``gap_rate``) and shuffled rows (the trainer must sort)."""
    rng = np.random.default_rng(seed)
    frames = []
    for i in range(n_series):
        n = int(rng.integers(*lengths))
        t = np.arange(n)
        period = int(rng.choice(periods))
        y = 10 * i + 5 * np.sin(2 * np.pi * t / period) + 0.05 * t + rng.normal(0, 0.5, n)
        if gap_rate:
            y[rng.random(n) < gap_rate] = np.nan
        frames.append(pd.DataFrame({"unique_id": f"s{i}", "ds": t, "y": y}))
    df = pd.concat(frames)
    (df.sample(frac=1.0, random_state=seed) if shuffle else df).to_parquet(path, index=False)
    return path
