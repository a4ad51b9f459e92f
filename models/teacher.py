"""Offline kNN teacher (TS-Memory stage 1): retrieved futures -> quantile targets + confidence.

Datastore: backbone embeddings of train windows (keys) with the windows' contexts
and futures. A query takes the top ``top_k_candidates`` rows by embedding (faiss),
re-ranks them by mean L1 distance between contexts in a per-window normalised
space (level = mean of the last ``align_points`` points, scale = context std),
keeps ``k``, weights them with softmax(-sqrt(d) / temperature), maps the retrieved
futures onto the query's level and scale, and takes weighted empirical quantiles.
Normalising per window makes series of different magnitudes comparable, and the
level alignment is the shift by the last-points level difference of the reference.
"""
from __future__ import annotations

import json
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import faiss
import numpy as np

from models.quantiles import QUANTILES

MIN_SCALE_REL = 1e-3  # scale floor relative to the context's mean |x| (flat series)
MIN_SCALE_ABS = 1e-6
CHUNK = 1024  # queries re-ranked at once: bounds the [chunk, K0, C] work arrays


@dataclass(frozen=True)
class TeacherConfig:
    top_k_candidates: int = 50
    k: int = 20
    temperature: float = 0.12
    align_points: int = 16
    index_type: str = "flat"  # "flat" (exact, the reference) or "hnsw" (approximate, large stores)


@dataclass(frozen=True)
class TeacherOutput:
    quantiles: np.ndarray  # [M, H, Q] raw space, sorted; NaN rows where nothing was retrievable
    norm_quantiles: np.ndarray  # [M, H, Q] in the query window's own normalised space
    confidence: np.ndarray  # [M] max weight (0 when nothing was retrievable)
    entropy: np.ndarray  # [M] weight entropy / log(k_valid), 0 for a single neighbour
    effective_k: np.ndarray  # [M] 1 / sum(w^2)
    neighbors: np.ndarray  # [M, k] datastore rows kept after re-ranking, -1 = none
    weights: np.ndarray  # [M, k] their weights (sum to 1 per row with any neighbour)


def window_stats(context: np.ndarray, align_points: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-window level and scale from its own context [M, C] (NaN = missing): ([M], [M])."""
    # all-missing rows warn "Mean of empty slice"; they are handled just below
    with np.errstate(invalid="ignore"), warnings.catch_warnings(action="ignore", category=RuntimeWarning):
        level = np.nanmean(context[:, -align_points:], axis=1)
        fallback = np.nanmean(context, axis=1)  # last points all missing: whole context
        level = np.where(np.isnan(level), fallback, level)
        std = np.nanstd(context, axis=1)
        floor = np.maximum(MIN_SCALE_REL * np.nanmean(np.abs(context), axis=1), MIN_SCALE_ABS)
    level = np.nan_to_num(level, nan=0.0)
    scale = np.fmax(np.nan_to_num(std, nan=0.0), np.nan_to_num(floor, nan=MIN_SCALE_ABS))
    return level.astype(np.float32), scale.astype(np.float32)


def weighted_quantiles(values: np.ndarray, weights: np.ndarray, levels=QUANTILES) -> np.ndarray:
    """Weighted empirical quantiles over the neighbour axis (step inverse CDF, as the reference):
    the smallest value whose cumulative weight exceeds the level.

    values [M, K, H], weights [M, K] summing to 1 (0 for unused slots, whose values are
    ignored) -> [M, H, Q]; NaN where a row has no weight at all.
    """
    levels = np.asarray(levels, dtype=np.float64)
    v = np.moveaxis(values, 1, 2).astype(np.float64)  # [M, H, K]
    w = np.broadcast_to(weights[:, None, :], v.shape).astype(np.float64)
    used = w > 0
    v = np.where(used, v, np.inf)  # unused slots sort last
    order = np.argsort(v, axis=-1, kind="stable")
    v = np.take_along_axis(v, order, -1)
    cdf = np.cumsum(np.take_along_axis(w, order, -1), -1)  # [M, H, K]
    n_used = used.sum(-1)[..., None]  # [M, H, 1]
    pos = (cdf[..., None, :] <= levels[:, None]).sum(-1)  # [M, H, Q] first cdf > level
    pos = np.minimum(pos, np.maximum(n_used - 1, 0))
    out = np.take_along_axis(v, pos, -1)
    return np.where(n_used > 0, out, np.nan).astype(np.float32)


class KnnTeacher:
    def __init__(
        self,
        keys: np.ndarray,  # [N, d] backbone embeddings of the train windows
        contexts: np.ndarray,  # [N, C] NaN-left-padded
        futures: np.ndarray,  # [N, H]
        config: TeacherConfig = TeacherConfig(),
        index=None,  # a prebuilt faiss index over ``keys`` (load); built here when None
    ):
        if not (len(keys) == len(contexts) == len(futures)) or len(keys) == 0:
            raise ValueError("keys, contexts and futures need the same non-zero length")
        self.config = config
        self.keys = np.ascontiguousarray(keys, dtype=np.float32)
        self.contexts = np.ascontiguousarray(contexts, dtype=np.float32)
        self.futures = np.ascontiguousarray(futures, dtype=np.float32)
        level, scale = window_stats(self.contexts, config.align_points)
        self._ctx_norm = (self.contexts - level[:, None]) / scale[:, None]  # [N, C]
        self._fut_norm = (self.futures - level[:, None]) / scale[:, None]  # [N, H]
        self._cpu_index = index if index is not None else _build_index(self.keys, config.index_type)
        self.index = _maybe_gpu(self._cpu_index)  # searched; the CPU one is what gets saved

    @property
    def size(self) -> int:
        return int(self.keys.shape[0])

    @property
    def horizon(self) -> int:
        return int(self.futures.shape[1])

    def query(
        self,
        keys: np.ndarray,  # [M, d]
        contexts: np.ndarray,  # [M, C] same C as the datastore, NaN-left-padded
        exclude: np.ndarray | None = None,  # [M] or [M, E]: datastore rows query i may not retrieve, -1 = none
    ) -> TeacherOutput:
        cfg = self.config
        keys = np.ascontiguousarray(keys, dtype=np.float32)
        contexts = np.asarray(contexts, dtype=np.float32)
        if contexts.shape[1] != self.contexts.shape[1]:
            raise ValueError(f"query contexts have length {contexts.shape[1]}, datastore {self.contexts.shape[1]}")
        m = keys.shape[0]
        k0 = min(cfg.top_k_candidates, self.size)
        if exclude is not None:
            exclude = np.asarray(exclude, dtype=np.int64).reshape(m, -1)  # [M, E]
        # E extra so that dropping the excluded rows still leaves k0 candidates
        n_extra = 0 if exclude is None else exclude.shape[1]
        _, cand = self.index.search(keys, min(k0 + n_extra, self.size))  # [M, K0 + E]
        if exclude is not None:
            own = (cand[:, :, None] == exclude[:, None, :]).any(axis=2)
            cand = np.where(own, -1, cand)
        cand = _first_valid(cand, k0)  # [M, K0], -1 padded, embedding order kept

        level_q, scale_q = window_stats(contexts, cfg.align_points)
        zq = (contexts - level_q[:, None]) / scale_q[:, None]  # [M, C]
        k = min(cfg.k, k0)
        nbr = np.full((m, k), -1, np.int64)
        dist = np.full((m, k), np.inf, np.float64)
        for s in range(0, m, CHUNK):
            sl = slice(s, s + CHUNK)
            nbr[sl], dist[sl] = self._rerank(zq[sl], cand[sl], k)

        valid = nbr >= 0
        logits = np.where(valid, -np.sqrt(dist) / cfg.temperature, -np.inf)
        top = np.max(logits, axis=1, keepdims=True)
        top = np.where(np.isfinite(top), top, 0.0)
        e = np.where(valid, np.exp(logits - top), 0.0)
        tot = e.sum(axis=1, keepdims=True)
        w = np.where(tot > 0, e / np.where(tot > 0, tot, 1.0), 0.0)  # [M, k]

        # retrieved futures on the query's level and scale: [M, k, H]
        fut = self._fut_norm[np.maximum(nbr, 0)] * scale_q[:, None, None] + level_q[:, None, None]
        q = weighted_quantiles(fut, w)  # [M, H, Q]
        n_valid = valid.sum(axis=1)
        with np.errstate(divide="ignore", invalid="ignore"):
            ent = -(np.where(w > 0, w * np.log(np.where(w > 0, w, 1.0)), 0.0)).sum(axis=1)
            ent = np.where(n_valid > 1, ent / np.log(np.maximum(n_valid, 2)), 0.0)
            eff_k = np.where(n_valid > 0, 1.0 / np.square(w).sum(axis=1), 0.0)
        return TeacherOutput(
            quantiles=q,
            norm_quantiles=((q - level_q[:, None, None]) / scale_q[:, None, None]).astype(np.float32),
            confidence=w.max(axis=1).astype(np.float32),
            entropy=ent.astype(np.float32),
            effective_k=eff_k.astype(np.float32),
            neighbors=nbr,
            weights=w.astype(np.float32),
        )

    def _rerank(self, zq: np.ndarray, cand: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Keep the k candidates closest in normalised context space: ([m, k] rows, [m, k] distances)."""
        zr = self._ctx_norm[np.maximum(cand, 0)]  # [m, K0, C]
        diff = np.abs(zq[:, None, :] - zr)  # NaN where either side is missing
        both = ~np.isnan(diff)
        n = both.sum(axis=2)
        d = np.where(both, diff, 0.0).sum(axis=2, dtype=np.float64) / np.maximum(n, 1)
        d = np.where((cand >= 0) & (n > 0), d, np.inf)  # [m, K0]
        order = np.argsort(d, axis=1, kind="stable")[:, :k]  # ties keep the embedding order
        d = np.take_along_axis(d, order, 1)
        rows = np.where(np.isfinite(d), np.take_along_axis(cand, order, 1), -1)
        return rows, d

    # persistence ---------------------------------------------------------------------
    def save(self, directory: str | Path) -> Path:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        faiss.write_index(self._cpu_index, str(directory / "index.faiss"))
        np.savez(directory / "datastore.npz", keys=self.keys, contexts=self.contexts, futures=self.futures)
        (directory / "teacher.json").write_text(json.dumps(asdict(self.config), indent=2))
        return directory

    @classmethod
    def load(cls, directory: str | Path) -> KnnTeacher:
        directory = Path(directory)
        config = TeacherConfig(**json.loads((directory / "teacher.json").read_text()))
        with np.load(directory / "datastore.npz") as z:
            keys, contexts, futures = z["keys"], z["contexts"], z["futures"]
        index = faiss.read_index(str(directory / "index.faiss"))
        return cls(keys, contexts, futures, config, index=index)


def _first_valid(cand: np.ndarray, k: int) -> np.ndarray:
    """Per row, the first k entries that are not -1, in order; -1 padded: [M, k]."""
    order = np.argsort(cand < 0, axis=1, kind="stable")  # valid ones first, order kept
    out = np.take_along_axis(cand, order, 1)[:, :k]
    if out.shape[1] < k:
        out = np.pad(out, ((0, 0), (0, k - out.shape[1])), constant_values=-1)
    return out


def _build_index(keys: np.ndarray, index_type: str):
    d = keys.shape[1]
    if index_type == "flat":
        index = faiss.IndexFlatL2(d)
    elif index_type == "hnsw":
        index = faiss.IndexHNSWFlat(d, 32)
    else:
        raise ValueError(f"unknown index_type {index_type!r}; use 'flat' or 'hnsw'")
    index.add(keys)
    return index


def _maybe_gpu(index):
    # GPU faiss only helps flat indexes here; HNSW has no GPU version
    if faiss.get_num_gpus() > 0 and isinstance(index, faiss.IndexFlat):
        return faiss.index_cpu_to_all_gpus(index)
    return index



