"""KernelSynth: shape, ids, determinism and speed of the synthetic generator."""

from __future__ import annotations

import time

import numpy as np

from models.pretraining.synthetic import kernelsynth
from store.sources import read_source


def test_shape_ids_and_types():
    df = kernelsynth(n_series=7, length=50, seed=0)
    assert len(df) == 350 and list(df.columns) == ["unique_id", "ds", "y"]
    assert df["unique_id"].unique().tolist() == [f"ks-{i:05d}" for i in range(1, 8)]
    assert df["ds"].dtype == "int64" and df.groupby("unique_id")["ds"].apply(list).iloc[0] == list(range(50))
    assert df["y"].dtype == "float64" and np.isfinite(df["y"]).all()
    assert (df.groupby("unique_id")["y"].std() > 0).all()


def test_deterministic_per_seed_and_stable_prefix():
    a, b = kernelsynth(20, 64, seed=1), kernelsynth(20, 64, seed=1)
    assert a.equals(b)
    assert not np.allclose(a["y"], kernelsynth(20, 64, seed=2)["y"])
    more = kernelsynth(30, 64, seed=1)  # more series extend, never reshuffle
    np.testing.assert_array_equal(more["y"].to_numpy()[: len(a)], a["y"].to_numpy())


def test_demo_size_is_fast_and_reachable_by_uri():
    t = time.perf_counter()
    src = read_source("synthetic:kernelsynth?n_series=400&length=256&seed=0")
    elapsed = time.perf_counter() - t
    assert src.frame.shape == (400 * 256, 3)
    assert elapsed < 20, f"kernelsynth 400x256 took {elapsed:.1f}s"  # ~1.5 s on one core here
