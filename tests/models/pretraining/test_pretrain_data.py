"""The pre-training data pipeline: cached sources, mixture epochs, augmentations, sharding."""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
import textwrap
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from models.pretraining.augment import mean_scale, tsmixup
from models.pretraining.data import KERNELSYNTH, TSMIXUP, WINDOW, Permutation, PretrainDataModule, window

ROOT = Path(__file__).resolve().parents[3]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
CTX, FUT = 48, 16  # windows of 64


def write_source(path: Path, n_series: int, lengths: tuple[int, int], level: float, seed: int) -> Path:
    """Unsorted long format with a few gaps; series i of a source sits at level * (i + 1)."""
    rng = np.random.default_rng(seed)
    frames = []
    for i in range(n_series):
        n = int(rng.integers(*lengths))
        y = level * (i + 1) + np.sin(np.arange(n) / 3) + rng.normal(0, 0.1, n)
        y[rng.random(n) < 0.02] = np.nan
        frames.append(pd.DataFrame({"unique_id": f"s{i}", "ds": np.arange(n), "y": y}))
    pd.concat(frames).sample(frac=1.0, random_state=seed).to_parquet(path, index=False)
    return path


@pytest.fixture(scope="module")
def sources(tmp_path_factory) -> list[Path]:
    """A big, a medium and a tiny source (the tiny one has fewer windows than its quota)."""
    d = tmp_path_factory.mktemp("sources")
    return [
        write_source(d / "big.parquet", 30, (80, 400), 10.0, 0),
        write_source(d / "mid.parquet", 10, (100, 300), 100.0, 1),
        write_source(d / "tiny.parquet", 4, (20, 70), 1000.0, 2),
    ]


def datamodule(paths, **kw) -> PretrainDataModule:
    kw = {"batch_size": 8, "samples_per_epoch": 2000, "weights": [0.6, 0.3, 0.1], **kw}
    return PretrainDataModule(paths, CTX, FUT, **kw)


def test_permutation_is_a_bijection():
    for n in (1, 2, 5, 64, 1000, 4097):
        assert sorted(map(Permutation(n, [3, n]), range(n))) == list(range(n))
    assert [Permutation(1000, [1])(k) for k in range(5)] != [Permutation(1000, [2])(k) for k in range(5)]


def test_without_weights_sources_mix_by_their_number_of_windows(sources):
    ds = datamodule(sources, weights=None).train_set
    n_windows = np.array([s.n for s in ds.sources])
    assert np.allclose(ds.weights, n_windows / n_windows.sum())
    assert abs(ds.quotas[2] - 2000 * n_windows[2] / n_windows.sum()) <= 1  # the tiny source is not upsampled


def test_mixture_proportions_and_each_window_once_per_epoch(sources):
    dm = datamodule(sources)
    ds = dm.train_set
    n_windows = [s.n for s in ds.sources]
    assert n_windows[0] > 1200 and n_windows[1] > 600 and n_windows[2] < 200  # tiny is upsampled
    assert ds.quotas.tolist() == [1200, 600, 200] and len(ds) == 2000
    seen: dict[int, set] = {0: set(), 1: set()}
    for epoch in range(3):
        ids = [ds.identity(epoch * len(ds) + i) for i in range(len(ds))]
        assert Counter(i[0] for i in ids) == {0: 1200, 1: 600, 2: 200}  # exact per epoch
        for s in (0, 1):
            mine = [i for i in ids if i[0] == s]
            assert len(set(mine)) == len(mine)  # without replacement
            assert not seen[s] & set(mine) or len(seen[s]) + len(mine) > n_windows[s]
            seen[s] |= set(mine)
        # the upsampled source repeats its windows evenly: floor or ceil of quota / windows
        reps = Counter(i for i in ids if i[0] == 2)
        assert set(reps.values()) <= {200 // n_windows[2], -(-200 // n_windows[2])} and len(reps) == n_windows[2]
    # the identity is the item: the window at (source, row, end) of that file
    for index in (0, 1500, 2345):
        source, row, end = ds.identity(index)
        src = ds.arrays[source]
        expected = window(np.asarray(src.values[src.offsets[row] : src.offsets[row + 1]]), end, CTX + FUT)
        item = ds[index]
        assert np.array_equal(item["observed"][0].numpy(), ~np.isnan(expected))
        assert np.allclose(item["values"][0].numpy()[~np.isnan(expected)], expected[~np.isnan(expected)])


def test_augmented_mixture_kinds_and_held_out_series(sources):
    dm = datamodule(sources, tsmixup_prob=0.3, kernelsynth_prob=0.1, tsmixup_max_series=4)
    ds, n = dm.train_set, len(dm.train_set)
    plans = [ds.plan(i) for i in range(2 * n)]
    kinds = Counter(p[0] for p in plans)
    assert abs(kinds[KERNELSYNTH] / (2 * n) - 0.1) < 0.03 and abs(kinds[TSMIXUP] / (2 * n) - 0.3) < 0.04
    assert all(2 <= len(p[1]) <= 4 for p in plans if p[0] == TSMIXUP)
    slots = Counter(p[1][0][0] for p in plans if p[1])  # every non-synthetic item's own window
    assert abs(slots[0] / sum(slots.values()) - 0.6) < 0.03
    # held-out series: 3 + 1 + 1, whole series, never a training window nor a mix's component
    held = dm.val_store.keys()
    assert len(held) == len(dm.val_store) == 5 and not held & dm.train_store.keys()
    assert set(dm.val_store.ids).isdisjoint(dm.train_store.ids)
    used = {(s, r) for p in plans for s, r, _ in p[1]}
    assert used and not used & held
    assert {s for s, _ in used} == {0, 1, 2}


def test_kernelsynth_and_tsmixup_items_are_finite_reproducible_and_scaled(sources):
    dm = datamodule(sources, tsmixup_prob=0.5, kernelsynth_prob=0.25)
    ds = dm.train_set
    copy = pickle.loads(pickle.dumps(ds))  # as a DataLoader worker or another rank sees it
    picked = {k: [i for i in range(400) if ds.plan(i)[0] == k][:5] for k in (WINDOW, TSMIXUP, KERNELSYNTH)}
    for kind, indices in picked.items():
        assert len(indices) == 5, kind
        for i in indices:
            item = ds[i]
            assert item["values"].shape == item["observed"].shape == (1, CTX + FUT)
            assert torch.isfinite(item["values"]).all() and item["observed"][0, CTX:].any()
            again = copy[i]
            assert torch.equal(item["values"], again["values"]) and torch.equal(item["observed"], again["observed"])
            v = item["values"][0][item["observed"][0]]
            if kind == TSMIXUP:  # mean-scaled components: level ~1 whatever the sources' levels (10..4000)
                assert 0.2 < v[:CTX].abs().mean() < 1.5, v
            if kind == KERNELSYNTH:
                assert item["observed"].all() and v.std() > 0 and v.abs().max() < 1e4
    ks = picked[KERNELSYNTH]
    assert not torch.equal(ds[ks[0]]["values"], ds[ks[1]]["values"])


def test_tsmixup_scaling_and_missing_rule():
    a = np.full(10, 1000.0, np.float32)
    b = np.full(10, 0.001, np.float32)
    b[2] = np.nan
    mix = tsmixup(np.stack([a, b]), np.array([0.3, 0.7]), context_length=6)
    assert np.isnan(mix[2]) and np.allclose(np.delete(mix, 2), 1.0)  # missing where any is missing
    c = a.copy()
    c[6:] = np.nan  # no future: dropped rather than leaving nothing to learn from
    assert np.allclose(tsmixup(np.stack([a, c]), np.array([0.5, 0.5]), 6), 1.0)
    zero_context = np.array([0, 0, 0, 4, 4], np.float32)
    assert np.allclose(mean_scale(zero_context, 3), [0, 0, 0, 2.5, 2.5])  # whole window's mean |y|


def test_cache_reused_then_invalidated_and_bad_input(tmp_path, monkeypatch):
    import models.pretraining.series_cache as store

    path = write_source(tmp_path / "d.parquet", 6, (30, 90), 5.0, 3)
    dm = PretrainDataModule([path], CTX, FUT, batch_size=4)
    cache = store.cache_path(path)
    stamp = (cache / "values.npy").stat().st_mtime_ns
    first = dm.train_set[0]["values"]

    def no_parquet(*a, **k):
        raise AssertionError("read the Parquet file again")

    with monkeypatch.context() as m:  # a second load (another rank, a resumed run) maps the cache
        m.setattr(store.pq, "read_table", no_parquet)
        again = PretrainDataModule([path], CTX, FUT, batch_size=4)
    assert torch.equal(again.train_set[0]["values"], first)
    assert (cache / "values.npy").stat().st_mtime_ns == stamp
    assert isinstance(again.train_set.arrays[0].values, np.memmap)

    # a changed file gets a new cache; the stale one goes
    write_source(path, 6, (30, 90), 50.0, 4)
    os.utime(path, ns=(stamp + 10**9, stamp + 10**9))
    changed = PretrainDataModule([path], CTX, FUT, batch_size=4)
    assert store.cache_path(path) != cache and not cache.exists()
    assert not torch.equal(changed.train_set[0]["values"], first)

    # aliases and text ids
    alias = tmp_path / "alias.parquet"
    pd.DataFrame(
        {"item_id": ["a"] * 30 + ["b"] * 30, "timestamp": list(range(30)) * 2, "target": np.arange(60.0)}
    ).to_parquet(alias)
    aliased = PretrainDataModule([alias], CTX, FUT, batch_size=4)
    assert sorted(aliased.train_store.ids + aliased.val_store.ids) == [f"{alias}::a", f"{alias}::b"]
    # bad input fails at construction with the file named
    bad = tmp_path / "bad.parquet"
    pd.DataFrame({"unique_id": ["a"], "y": [1.0]}).to_parquet(bad)
    with pytest.raises(ValueError, match=r"bad.parquet: missing columns \['ds'\]"):
        PretrainDataModule([bad], CTX, FUT, batch_size=4)
    empty = tmp_path / "empty.parquet"
    pd.DataFrame(
        {"unique_id": pd.Series([], dtype=str), "ds": pd.Series([], dtype=int), "y": pd.Series([], dtype=float)}
    ).to_parquet(empty)
    with pytest.raises(ValueError, match="no rows in .*empty.parquet"):
        PretrainDataModule([path, empty], CTX, FUT, batch_size=4)
    short = tmp_path / "short.parquet"
    pd.DataFrame({"unique_id": ["a"] * 5, "ds": range(5), "y": [1.0] * 5}).to_parquet(short)
    with pytest.raises(ValueError, match="short.parquet: no series with at least 17 points"):
        PretrainDataModule([path, short], CTX, FUT, batch_size=4)


RANK_SCRIPT = textwrap.dedent("""
    import json, sys
    from types import SimpleNamespace
    import torch.distributed as dist
    import torch.multiprocessing as mp

    def run(rank, paths, rdzv, out):
        dist.init_process_group("gloo", init_method="file://" + rdzv, rank=rank, world_size=2)
        from models.pretraining.data import PretrainDataModule
        dm = PretrainDataModule(paths, 48, 16, batch_size=8, samples_per_epoch=2000, weights=[0.6, 0.3, 0.1],
                                tsmixup_prob=0.2, kernelsynth_prob=0.1)
        dm.trainer = SimpleNamespace(world_size=dist.get_world_size(), global_rank=dist.get_rank(), global_step=0)
        loader = dm.train_dataloader()
        seen = []
        for epoch in (0, 1):
            loader.sampler.set_epoch(epoch)
            seen.append([[epoch, i, dm.train_set.identity(i)] for batch in loader.batch_sampler for i in batch])
        gathered = [None, None]
        dist.all_gather_object(gathered, seen)
        if rank == 0:
            json.dump(gathered, open(out, "w"))
        dist.destroy_process_group()

    if __name__ == "__main__":
        paths, rdzv, out = json.loads(sys.argv[1]), sys.argv[2], sys.argv[3]
        mp.spawn(run, args=(paths, rdzv, out), nprocs=2)
""")


def test_two_processes_shard_each_epoch_without_overlap(sources, tmp_path):
    # fresh copies: both ranks build the same caches at once
    paths = []
    for p in sources:
        paths.append(tmp_path / p.name)
        paths[-1].write_bytes(p.read_bytes())
    script = tmp_path / "ranks.py"
    script.write_text(RANK_SCRIPT)
    out = tmp_path / "seen.json"
    res = subprocess.run(
        [sys.executable, str(script), json.dumps(list(map(str, paths))), str(tmp_path / "rdzv"), str(out)],
        cwd=ROOT,
        env={**ENV, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    ranks = json.loads(out.read_text())
    batches_per_rank = 2000 // 2 // 8
    for epoch in (0, 1):
        r0, r1 = (ranks[r][epoch] for r in (0, 1))
        assert len(r0) == len(r1) == batches_per_rank * 8
        indices = [i for _, i, _ in r0 + r1]
        assert len(set(indices)) == len(indices) and all(e == epoch for e, _, _ in r0 + r1)
        windows = [tuple(w) for _, _, w in r0 + r1 if w is not None and w[0] != 2]  # source 2 is upsampled
        assert len(windows) > 0.8 * len(indices) and len(set(windows)) == len(windows)
        assert {tuple(w) for *_, w in r0 if w}.isdisjoint(tuple(w) for *_, w in r1 if w and w[0] != 2)
    assert len(list((paths[0].parent / ".tsfm-cache").iterdir())) == 3  # one cache per file, no leftovers
