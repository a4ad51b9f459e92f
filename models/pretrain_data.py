"""Pre-training windows from long-format Parquet files (unique_id, ds, y).

The files must already hold only train parts (the caller's guarantee). A small set
of whole series is held out for the validation loss. Training windows are drawn
uniformly over all (series, end) positions; a window index maps to one window
through a seeded generator, so any sampler shards windows across ranks without overlap.
The training sampler is a function of (seed, epoch, rank, global batch index): a run
resumed from a checkpoint at step N skips the N batches already consumed and then sees
the batches an uninterrupted run would have seen.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import lightning as L
import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler

ALIASES = {"item_id": "unique_id", "timestamp": "ds", "target": "y"}


@dataclass
class SeriesStore:
    """All series concatenated: values [total] float32 (NaN = missing), offsets [n + 1]."""

    values: np.ndarray
    offsets: np.ndarray
    ids: list[str]

    def __len__(self) -> int:
        return len(self.ids)

    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    def series(self, i: int) -> np.ndarray:
        return self.values[self.offsets[i]:self.offsets[i + 1]]

    def subset(self, index: np.ndarray) -> "SeriesStore":
        parts = [self.series(i) for i in index]
        offsets = np.concatenate([[0], np.cumsum([len(p) for p in parts])]).astype(np.int64)
        values = np.concatenate(parts) if parts else np.zeros(0, np.float32)
        return SeriesStore(values, offsets, [self.ids[i] for i in index])


def load_series(paths: list[str | Path], min_length: int = 1) -> SeriesStore:
    """Read long-format Parquet files; sort each series by ds; keep series with at least
    ``min_length`` points of which at least one is observed. Raises ValueError when empty."""
    frames = []
    for path in paths:
        df = pd.read_parquet(path).rename(columns=ALIASES)
        missing = {"unique_id", "ds", "y"} - set(df.columns)
        if missing:
            raise ValueError(f"{path}: missing columns {sorted(missing)}")
        # the same id in two files is two series
        frames.append(df[["unique_id", "ds", "y"]].assign(unique_id=f"{path}::" + df["unique_id"].astype(str)))
    df = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=["unique_id", "ds", "y"])
    if df.empty:
        raise ValueError(f"no rows in {', '.join(map(str, paths))}")
    df = df.sort_values(["unique_id", "ds"], kind="stable")
    y = pd.to_numeric(df["y"], errors="coerce").to_numpy(np.float32)
    codes, ids = pd.factorize(df["unique_id"], sort=False)
    counts = np.bincount(codes, minlength=len(ids))
    observed = np.bincount(codes, weights=~np.isnan(y), minlength=len(ids))
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    store = SeriesStore(y, offsets, [str(i) for i in ids])
    keep = np.flatnonzero((counts >= min_length) & (observed > 0))
    if len(keep) == 0:
        raise ValueError(f"no series with at least {min_length} points and one observed value")
    return store.subset(keep) if len(keep) < len(store) else store


def window(series: np.ndarray, end: int, length: int) -> np.ndarray:
    """series[end - length:end], left-padded with NaN when the series starts later."""
    out = np.full(length, np.nan, dtype=np.float32)
    start = max(end - length, 0)
    out[length - (end - start):] = series[start:end]
    return out


def as_item(w: np.ndarray) -> dict[str, torch.Tensor]:
    """-> values [1, W] (0 where missing), observed [1, W] bool: one univariate series."""
    observed = ~np.isnan(w)
    return {
        "values": torch.from_numpy(np.where(observed, w, 0.0).astype(np.float32))[None],
        "observed": torch.from_numpy(observed)[None],
    }


class RandomWindows(Dataset):
    """``size`` windows of ``length`` ending anywhere a full future fits; index -> window is seeded."""

    def __init__(self, store: SeriesStore, length: int, future_length: int, size: int, seed: int):
        self.store, self.length, self.size, self.seed = store, length, size, seed
        lengths = store.lengths()
        # ends from min(length, L) .. L: at least one end per series, short ones padded
        self.first_end = np.minimum(np.maximum(length, future_length + 1), lengths)
        n_ends = lengths - self.first_end + 1
        self.cum_ends = np.cumsum(n_ends)

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        rng = np.random.default_rng([self.seed, index])
        pick = int(rng.integers(self.cum_ends[-1]))  # uniform over all (series, end) pairs
        i = int(np.searchsorted(self.cum_ends, pick, side="right"))
        before = self.cum_ends[i - 1] if i else 0
        end = int(self.first_end[i] + pick - before)
        return as_item(window(self.store.series(i), end, self.length))


class LastWindows(Dataset):
    """The most recent window of each (held-out) series: a fixed validation set."""

    def __init__(self, store: SeriesStore, length: int):
        self.store, self.length = store, length

    def __len__(self) -> int:
        return len(self.store)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        s = self.store.series(index)
        return as_item(window(s, len(s), self.length))


class ResumableSampler(DistributedSampler):
    """A DistributedSampler (a permutation seeded by seed + epoch, rank r takes every
    num_replicas-th index) that starts ``start_batch`` batches of ``batch_size`` into the run:
    the epoch that holds that batch yields only the rest of its indices, later epochs all.
    Being a DistributedSampler, Lightning keeps it under DDP rather than swapping in its own."""

    def __init__(self, dataset: Dataset, batch_size: int, num_replicas: int = 1, rank: int = 0,
                 seed: int = 0, start_batch: int = 0):
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=True, seed=seed, drop_last=False)
        if start_batch < 0:
            raise ValueError(f"start_batch must be >= 0, got {start_batch}")
        self.batch_size = batch_size
        # batches per epoch and rank, as the DataLoader (drop_last=True) makes them
        self.batches_per_epoch = max(1, self.num_samples // batch_size)
        self.skip_epoch, skip_batches = divmod(start_batch, self.batches_per_epoch)
        self.skip_samples = skip_batches * batch_size

    def __iter__(self):
        indices = list(super().__iter__())
        if self.epoch == self.skip_epoch and self.skip_samples:
            indices = indices[self.skip_samples:]
        return iter(indices)


class StepResumedLoader(DataLoader):
    """A DataLoader that Lightning treats as resumable (it has state_dict/load_state_dict). There
    is no state to keep: its ResumableSampler starts at the trainer's restored global step (one
    batch per optimizer step), which Lightning restores before it asks for the dataloader."""

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state_dict: dict) -> None:
        pass


class PretrainDataModule(L.LightningDataModule):
    """Windows of context_length + future_length; ``future_length`` is the masked run the
    model learns to fill. Data are loaded at construction so bad input fails early."""

    def __init__(
        self,
        paths: list[str | Path],
        context_length: int,
        future_length: int,
        batch_size: int,
        num_workers: int = 0,
        seed: int = 0,
        val_fraction: float = 0.1,
        max_val_series: int = 512,
        samples_per_epoch: int = 1 << 16,
    ):
        super().__init__()
        self.batch_size, self.num_workers, self.seed = batch_size, num_workers, seed
        self.length = context_length + future_length
        store = load_series(paths, min_length=future_length + 1)
        # hold out whole series for validation; with a single series there is nothing to hold out
        order = np.random.default_rng(seed).permutation(len(store))
        n_val = 0 if len(store) < 2 else min(max(1, round(val_fraction * len(store))), max_val_series)
        self.train_store = store.subset(np.sort(order[n_val:]))
        self.val_store = store.subset(np.sort(order[:n_val])) if n_val else None
        # an epoch is virtual (training stops at max_steps); it only has to hold many batches
        size = max(samples_per_epoch, 64 * batch_size)
        self.train_set = RandomWindows(self.train_store, self.length, future_length, size, seed)
        self.val_set = LastWindows(self.val_store, self.length) if self.val_store else None

    @classmethod
    def from_args(cls, args, context_length: int, future_length: int) -> "PretrainDataModule":
        """Built from ``python -m models.pretrain``'s arguments (see models/data_args.py)."""
        return cls(args.data, context_length, future_length, args.batch_size,
                   num_workers=args.num_workers, seed=args.seed)

    def train_dataloader(self) -> DataLoader:
        # rank shards and the start batch come from the trainer (none: one process, from batch 0);
        # on resume global_step is already restored: skip the batches the checkpointed run consumed
        trainer = self.trainer
        world, rank, start = (trainer.world_size, trainer.global_rank, trainer.global_step) if trainer else (1, 0, 0)
        sampler = ResumableSampler(self.train_set, self.batch_size, num_replicas=world, rank=rank,
                                   seed=self.seed, start_batch=start)
        return StepResumedLoader(self.train_set, batch_size=self.batch_size, sampler=sampler, drop_last=True,
                                 num_workers=self.num_workers, persistent_workers=self.num_workers > 0)

    def val_dataloader(self) -> DataLoader | list:
        if self.val_set is None:
            return []
        return DataLoader(self.val_set, batch_size=self.batch_size, shuffle=False, num_workers=self.num_workers)
