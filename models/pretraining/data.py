"""Pre-training windows from long-format Parquet files (unique_id, ds, y), one file per source.

The files must already hold only train parts (the caller's guarantee); they are read once
into memory-mapped caches (``series_cache``) that workers and ranks share. A few
whole series per source are held out for the validation loss and never enter training,
not even inside a TSMixup. An epoch is a fixed number of slots split between the sources
by their mixture weights; each slot is a distinct window of its source (see MixtureWindows),
a TSMixup or a KernelSynth series. Everything an item holds is a function of (seed, epoch,
slot), and the training sampler of (seed, epoch, rank, global batch index): a run resumed
from a checkpoint at step N skips the batches already consumed and then sees the batches
an uninterrupted run would have seen.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypedDict

import lightning as L
import numpy as np
import torch
from jaxtyping import Bool, Float
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from models.pretraining.augment import DIRICHLET_ALPHA, tsmixup
from models.pretraining.series_cache import SeriesStore, load_sources
from models.pretraining.synthetic import kernelsynth_series

KERNELSYNTH_LENGTH = 1024  # Chronos' KernelSynth length; longer windows are left-padded (cost ~ length^3)
WINDOW, TSMIXUP, KERNELSYNTH = "window", "tsmixup", "kernelsynth"
_M64 = (1 << 64) - 1


def window(series: np.ndarray, end: int, length: int) -> np.ndarray:
    """series[end - length:end], left-padded with NaN when the series starts later."""
    out = np.full(length, np.nan, dtype=np.float32)
    start = max(end - length, 0)
    out[length - (end - start) :] = series[start:end]
    return out


class Item(TypedDict):
    """One training window of one univariate series (batched by the DataLoader to
    ``[batch, variate, window]``, what ``PretrainModule`` trains on)."""

    values: Float[Tensor, "1 window"]  # 0 where missing
    observed: Bool[Tensor, "1 window"]


def as_item(w: Float[np.ndarray, " window"]) -> Item:
    """A window (NaN = missing) as a training item."""
    observed = ~np.isnan(w)
    return {
        "values": torch.from_numpy(np.where(observed, w, 0.0).astype(np.float32))[None],
        "observed": torch.from_numpy(observed)[None],
    }


class Permutation:
    """A seeded pseudo-random bijection of [0, n): a Feistel network on the next even power
    of two, cycle-walking back into range. It shuffles billions of windows without storing
    a permutation of them."""

    def __init__(self, n: int, key: list[int]):
        self.n = n
        bits = max(2, (n - 1).bit_length())
        self.half = (bits + 1) // 2
        self.mask = (1 << self.half) - 1
        self.keys = [int(k) for k in np.random.SeedSequence(key).generate_state(4, np.uint64)]

    @staticmethod
    def _mix(x: int) -> int:  # splitmix64's finaliser: a cheap, well-spread round function
        x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _M64
        x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _M64
        return x ^ (x >> 31)

    def __call__(self, k: int) -> int:
        x = k
        while True:
            left, right = x >> self.half, x & self.mask
            for key in self.keys:
                left, right = right, left ^ (self._mix((right + key) & _M64) & self.mask)
            x = (left << self.half) | right
            if x < self.n:
                return x


class SourceWindows:
    """All training windows of one source: (series, end) with end from min(length, L) to L
    (at least one per series; short series are left-padded), numbered 0..n-1."""

    def __init__(self, store: SeriesStore, length: int, future_length: int):
        self.store = store
        lengths = store.lengths()
        self.first_end = np.minimum(np.maximum(length, future_length + 1), lengths)
        self.cum_ends = np.cumsum(lengths - self.first_end + 1)
        self.n = int(self.cum_ends[-1])

    def locate(self, k: int) -> tuple[int, int, int]:
        """window k -> (source, row, end): the series' number inside its source file."""
        i = int(np.searchsorted(self.cum_ends, k, side="right"))
        end = int(self.first_end[i] + k - (self.cum_ends[i - 1] if i else 0))
        return int(self.store.source[i]), int(self.store.row[i]), end


class MixtureWindows(Dataset):
    """One epoch of training items. ``len`` is the sum of the quotas q_s = round(w_s * size);
    index ``epoch * len + i`` (what ResumableSampler(global_index=True) yields) is slot i of
    that epoch, and slots [q_0 + .. + q_{s-1}, .. + q_s) belong to source s.

    Source s's j-th slot of epoch e is its window perm_s((e * q_s + j) mod N_s) of N_s windows
    (perm_s a seeded shuffle): WITHOUT replacement, so within an epoch no window appears
    twice when q_s <= N_s, and later epochs walk on through the same shuffled order (all
    windows before any repeats). A source upsampled beyond its windows (q_s > N_s) repeats
    each of them floor(q_s / N_s) or ceil(q_s / N_s) times per epoch.

    A seeded draw per index then decides the item: a fresh KernelSynth series (probability
    ``kernelsynth_prob``; the slot's window is skipped), a TSMixup of the slot's window with
    1..tsmixup_max_series-1 others drawn at random (with replacement) from the sources by
    weight (``tsmixup_prob``), or else the slot's window itself.
    """

    def __init__(
        self,
        sources: list[SeriesStore],
        length: int,
        future_length: int,
        size: int,
        seed: int,
        weights: list[float] | None = None,
        tsmixup_prob: float = 0.0,
        tsmixup_max_series: int = 3,
        kernelsynth_prob: float = 0.0,
    ):
        self.sources = [SourceWindows(s, length, future_length) for s in sources]
        # no weights: each source in proportion to its windows (every window equally likely), so a
        # small domain is not repeated many times per epoch next to a large one
        weights = np.array([s.n for s in self.sources], float) if weights is None else np.asarray(weights, float)
        if len(weights) != len(sources) or (weights < 0).any() or weights.sum() <= 0:
            raise ValueError(f"need one weight >= 0 per source ({len(sources)}), with a positive sum")
        self.weights = weights / weights.sum()
        self.length, self.context_length, self.seed = length, length - future_length, seed
        self.arrays = sources[0].sources  # the cached files, by source number
        self.quotas = np.array([round(w * size) for w in self.weights], dtype=np.int64)
        self.cum_quotas = np.cumsum(self.quotas)
        self.size = int(self.cum_quotas[-1])
        self.perms = [Permutation(s.n, [seed, i]) for i, s in enumerate(self.sources)]
        self.tsmixup_prob, self.tsmixup_max_series = tsmixup_prob, tsmixup_max_series
        self.kernelsynth_prob = kernelsynth_prob

    def __len__(self) -> int:
        return self.size

    def slot_window(self, epoch: int, i: int) -> tuple[int, int, int]:
        s = int(np.searchsorted(self.cum_quotas, i, side="right"))
        j = i - (int(self.cum_quotas[s - 1]) if s else 0)
        q, src = int(self.quotas[s]), self.sources[s]
        return src.locate(self.perms[s]((epoch * q + j) % src.n))

    def plan(self, index: int) -> tuple[str, list[tuple[int, int, int]], np.random.Generator]:
        """index -> (kind, component windows (source, row, end), the item's generator for the rest)."""
        epoch, i = divmod(int(index), self.size)
        rng = np.random.default_rng([self.seed, epoch, i])
        u = rng.random()
        if u < self.kernelsynth_prob:
            return KERNELSYNTH, [], rng
        parts = [self.slot_window(epoch, i)]
        if u >= self.kernelsynth_prob + self.tsmixup_prob:
            return WINDOW, parts, rng
        for s in rng.choice(len(self.sources), size=int(rng.integers(1, self.tsmixup_max_series)), p=self.weights):
            parts.append(self.sources[s].locate(int(rng.integers(self.sources[s].n))))
        return TSMIXUP, parts, rng

    def identity(self, index: int) -> tuple[int, int, int] | None:
        """(source, row, end) of the slot's window the item is (or mixes first); None for KernelSynth."""
        parts = self.plan(index)[1]
        return parts[0] if parts else None

    def components(self, index: int) -> list[tuple[int, int, int]]:
        return self.plan(index)[1]

    def _window(self, part: tuple[int, int, int]) -> np.ndarray:
        source, row, end = part
        src = self.arrays[source]
        return window(src.values[src.offsets[row] : src.offsets[row + 1]], end, self.length)

    def __getitem__(self, index: int) -> Item:
        kind, parts, rng = self.plan(index)
        if kind == KERNELSYNTH:
            n = min(self.length, KERNELSYNTH_LENGTH)
            return as_item(window(kernelsynth_series(n, rng).astype(np.float32), n, self.length))
        if kind == WINDOW:
            return as_item(self._window(parts[0]))
        weights = rng.dirichlet(np.full(len(parts), DIRICHLET_ALPHA))
        return as_item(tsmixup(np.stack([self._window(p) for p in parts]), weights, self.context_length))


class LastWindows(Dataset):
    """The most recent window of each (held-out) series: a fixed validation set."""

    def __init__(self, store: SeriesStore, length: int):
        self.store, self.length = store, length

    def __len__(self) -> int:
        return len(self.store)

    def __getitem__(self, index: int) -> Item:
        s = self.store.series(index)
        return as_item(window(s, len(s), self.length))


class ResumableSampler(DistributedSampler):
    """A DistributedSampler (a permutation seeded by seed + epoch, rank r takes every
    num_replicas-th index, the tail that does not divide evenly dropped so ranks never share
    an index) that starts ``start_batch`` batches of ``batch_size`` into the run: the epoch
    that holds that batch yields only the rest of its indices, later epochs all. With
    ``global_index`` it yields epoch * len(dataset) + i, so the dataset knows the epoch (its
    workers never see set_epoch). Being a DistributedSampler, Lightning keeps it under DDP."""

    def __init__(
        self,
        dataset: Dataset,
        batch_size: int,
        num_replicas: int = 1,
        rank: int = 0,
        seed: int = 0,
        start_batch: int = 0,
        global_index: bool = False,
        batches_per_step: int = 1,
    ):
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=True, seed=seed, drop_last=True)
        if start_batch < 0:
            raise ValueError(f"start_batch must be >= 0, got {start_batch}")
        self.batch_size, self.global_index = batch_size, global_index
        # batches per epoch and rank, as the DataLoader (drop_last=True) makes them, rounded down to
        # whole optimizer steps: no epoch ends mid-accumulation, so step * batches_per_step is
        # exactly the number of batches consumed and a resume lands on the right one
        whole = max(1, self.num_samples // batch_size)
        self.batches_per_epoch = max(batches_per_step, whole - whole % batches_per_step)
        self.epoch_samples = min(self.num_samples, self.batches_per_epoch * batch_size)
        self.skip_epoch, skip_batches = divmod(start_batch, self.batches_per_epoch)
        self.skip_samples = skip_batches * batch_size

    def __iter__(self):
        indices = list(super().__iter__())[: self.epoch_samples]
        if self.epoch == self.skip_epoch and self.skip_samples:
            indices = indices[self.skip_samples :]
        if self.global_index:
            indices = [self.epoch * len(self.dataset) + i for i in indices]
        return iter(indices)

    def __len__(self) -> int:
        return self.epoch_samples


class StepResumedLoader(DataLoader):
    """A DataLoader that Lightning treats as resumable (it has state_dict/load_state_dict). There
    is no state to keep: its ResumableSampler starts at the trainer's restored global step (times
    the batches per optimizer step), which Lightning restores before it asks for the dataloader."""

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        pass


def hold_out(
    stores: list[SeriesStore], seed: int, val_fraction: float, max_val_series: int
) -> tuple[list[SeriesStore], SeriesStore | None]:
    """Whole series per source for validation (none from a source of one series): -> the train
    part of each source, all held-out series together (None when there are none)."""
    train, val = [], []
    cap = max(1, max_val_series // len(stores))
    for s, store in enumerate(stores):
        order = np.random.default_rng([seed, s]).permutation(len(store))
        n_val = 0 if len(store) < 2 else min(max(1, round(val_fraction * len(store))), cap, len(store) - 1)
        train.append(store.subset(np.sort(order[n_val:])))
        val.append(store.subset(np.sort(order[:n_val])))
    held_out = concat(val)
    return train, (held_out if len(held_out) else None)


def concat(stores: list[SeriesStore]) -> SeriesStore:
    return SeriesStore(
        stores[0].sources, np.concatenate([s.source for s in stores]), np.concatenate([s.row for s in stores])
    )


class PretrainDataModule(L.LightningDataModule):
    """Windows of context_length + future_length; ``future_length`` is the masked run the
    model learns to fill. Data are cached and checked at construction so bad input fails early.
    The trainer sets ``batches_per_step`` (gradient accumulation) for exact resume."""

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
        weights: list[float] | None = None,
        tsmixup_prob: float = 0.0,
        tsmixup_max_series: int = 3,
        kernelsynth_prob: float = 0.0,
        cache_dir: str | Path | None = None,
    ):
        super().__init__()
        self.batch_size, self.num_workers, self.seed = batch_size, num_workers, seed
        self.batches_per_step = 1
        self.length = context_length + future_length
        stores = load_sources(list(paths), min_length=future_length + 1, cache_root=cache_dir)
        self.train_stores, self.val_store = hold_out(stores, seed, val_fraction, max_val_series)
        self.train_store = concat(self.train_stores)
        # an epoch is virtual (training stops at max_steps); it only has to hold many batches
        size = max(samples_per_epoch, 64 * batch_size)
        self.train_set = MixtureWindows(
            self.train_stores,
            self.length,
            future_length,
            size,
            seed,
            weights,
            tsmixup_prob,
            tsmixup_max_series,
            kernelsynth_prob,
        )
        self.val_set = LastWindows(self.val_store, self.length) if self.val_store else None

    @classmethod
    def from_job(cls, job, context_length: int, future_length: int) -> PretrainDataModule:
        """Built from a ``models.pretraining.spec.TrainerJob``."""
        return cls(
            job.data,
            context_length,
            future_length,
            job.batch_size,
            num_workers=job.num_workers,
            seed=job.seed,
            samples_per_epoch=job.samples_per_epoch,
            weights=job.normalised_weights(),
            tsmixup_prob=job.tsmixup_prob,
            tsmixup_max_series=job.tsmixup_max_series,
            kernelsynth_prob=job.kernelsynth_prob,
            cache_dir=job.data_cache,
        )

    def train_dataloader(self) -> DataLoader:
        # rank shards and the start batch come from the trainer (none: one process, from batch 0);
        # on resume global_step (optimizer steps) is already restored: skip the batches consumed
        trainer = self.trainer
        if trainer:
            world, rank = trainer.world_size, trainer.global_rank
            start = trainer.global_step * self.batches_per_step
        else:
            world, rank, start = 1, 0, 0
        sampler = ResumableSampler(
            self.train_set,
            self.batch_size,
            num_replicas=world,
            rank=rank,
            seed=self.seed,
            start_batch=start,
            global_index=True,
            batches_per_step=self.batches_per_step,
        )
        return StepResumedLoader(
            self.train_set,
            batch_size=self.batch_size,
            sampler=sampler,
            drop_last=True,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
        )

    def val_dataloader(self) -> DataLoader | list[Any]:
        if self.val_set is None:
            return []
        return DataLoader(self.val_set, batch_size=self.batch_size, shuffle=False, num_workers=self.num_workers)
