"""Offline kNN teacher (TS-Memory stage 1): retrieved futures -> quantile targets + confidence.

Datastore: backbone embeddings of train windows (keys) with the windows' contexts
and futures. A query takes the top ``top_k_candidates`` rows by embedding (faiss),
re-ranks them by mean L1 distance between contexts in a per-window normalised
space (level = mean of the last ``align_points`` points, scale = context std),
keeps ``k``, weights them with softmax(-sqrt(d) / temperature), maps the retrieved
futures onto the query's level and scale, and takes weighted empirical quantiles.
Normalising per window makes series of different magnitudes comparable, and the
level alignment is the shift by the last-points level difference of the reference.

The index over the keys (exact, IVF or HNSW; GPU when present) is ``models.memory.faiss_index``.

Memory: the datastore arrays may be ``np.memmap`` s (see ``models.memory.datastore``); they
are never copied wholesale. Only the per-row level and scale ([N] float32 each) are
kept; normalised contexts/futures are computed for the candidate rows of each query
chunk, with exactly the float32 operations a precomputed copy would use. Queries run
in chunks, so their working memory does not grow with the number of queries.
"""

from __future__ import annotations

import json
import os
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from jaxtyping import Float, Int

from models.memory import faiss_index
from models.memory.config import TeacherConfig
from models.metrics import QUANTILES

MIN_SCALE_REL = 1e-3  # scale floor relative to the context's mean |x| (flat series)
MIN_SCALE_ABS = 1e-6
CHUNK = 1024  # queries re-ranked at once: bounds the [chunk, K0, C] work arrays
SEARCH_CHUNK = 16 * CHUNK  # queries per faiss search call
ROW_CHUNK = 65_536  # datastore rows per step when computing row statistics
ARRAYS = ("keys", "contexts", "futures")
SEARCH_TIME_SETTINGS = ("nprobe", "ef_search", "use_gpu")  # what may change when a saved teacher is loaded


@dataclass(frozen=True)
class TeacherOutput:
    # raw space, sorted; NaN where nothing was retrievable (row) or no neighbour's future reaches the step
    quantiles: Float[np.ndarray, "m horizon quantile"]
    norm_quantiles: Float[np.ndarray, "m horizon quantile"]  # in the query window's own normalised space
    confidence: Float[np.ndarray, " m"]  # max weight (0 when nothing was retrievable)
    neighbors: Int[np.ndarray, "m k"]  # datastore rows kept after re-ranking, -1 = none
    weights: Float[np.ndarray, "m k"]  # their weights (sum to 1 per row with any neighbour)


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


def window_stats_chunked(
    context: np.ndarray, align_points: int, chunk: int = ROW_CHUNK
) -> tuple[np.ndarray, np.ndarray]:
    """``window_stats`` a block of rows at a time (row-wise, so the same values): bounded
    temporaries for large (memmapped) stores."""
    n = context.shape[0]
    level, scale = np.empty(n, np.float32), np.empty(n, np.float32)
    for s in range(0, n, chunk):
        level[s : s + chunk], scale[s : s + chunk] = window_stats(np.asarray(context[s : s + chunk]), align_points)
    return level, scale


def weighted_quantiles(values: np.ndarray, weights: np.ndarray, levels: Any = QUANTILES) -> np.ndarray:
    """Weighted empirical quantiles over the neighbour axis (step inverse CDF, as the reference):
    the smallest value whose cumulative weight exceeds the level.

    values [M, K, H], weights [M, K] summing to 1 (0 for unused slots, whose values are
    ignored) -> [M, H, Q]. A NaN value (a neighbour's future shorter than H, NaN-padded
    on the right) is left out at that step and the other weights are renormalised there;
    NaN where a (row, step) has no weighted value at all.
    """
    levels = np.asarray(levels, dtype=np.float64)
    v = np.moveaxis(values, 1, 2).astype(np.float64)  # [M, H, K]
    w = np.broadcast_to(weights[:, None, :], v.shape).astype(np.float64)
    missing = np.isnan(v)
    used = (w > 0) & ~missing
    dropped = ((w > 0) & missing).any(-1)  # [M, H] steps that lose a weighted neighbour
    w = np.where(used, w, 0.0)
    v = np.where(used, v, np.inf)  # unused slots sort last
    order = np.argsort(v, axis=-1, kind="stable")
    v = np.take_along_axis(v, order, -1)
    cdf = np.cumsum(np.take_along_axis(w, order, -1), -1)  # [M, H, K]
    # renormalise only where a neighbour was dropped: the others keep their exact thresholds
    total = np.where(dropped, cdf[..., -1], 1.0)[..., None, None]  # [M, H, 1, 1]
    n_used = used.sum(-1)[..., None]  # [M, H, 1]
    pos = (cdf[..., None, :] <= levels[:, None] * total).sum(-1)  # [M, H, Q] first cdf > level
    pos = np.minimum(pos, np.maximum(n_used - 1, 0))
    out = np.take_along_axis(v, pos, -1)
    return np.where(n_used > 0, out, np.nan).astype(np.float32)


def _f32(x: np.ndarray) -> np.ndarray:
    """float32 C-contiguous without a copy when it already is (np.memmap kept as such)."""
    if isinstance(x, np.ndarray) and x.dtype == np.float32 and x.flags.c_contiguous:
        return x
    return np.ascontiguousarray(x, dtype=np.float32)


class KnnTeacher:
    def __init__(
        self,
        keys: np.ndarray,  # [N, d] backbone embeddings of the train windows
        contexts: np.ndarray,  # [N, C] NaN-left-padded
        futures: np.ndarray,  # [N, H] NaN-right-padded where a window's future runs past its series
        config: TeacherConfig = TeacherConfig(),
        index: Any = None,  # a prebuilt faiss index over ``keys`` (load); built here when None
        timings: dict[str, float] | None = None,  # filled with the build's stats/index seconds
    ):
        if not (len(keys) == len(contexts) == len(futures)) or len(keys) == 0:
            raise ValueError("keys, contexts and futures need the same non-zero length")
        self.config = config
        # float32 C-contiguous arrays (memmaps included) are used as given, not copied
        self.keys = _f32(keys)
        self.contexts = _f32(contexts)
        self.futures = _f32(futures)
        t = time.perf_counter()
        self._level, self._scale = window_stats_chunked(self.contexts, config.align_points)  # [N], [N]
        if timings is not None:
            timings["stats_s"] = time.perf_counter() - t
        self._gpu_res = None
        search = None
        if index is None:
            index, search, self._gpu_res = faiss_index.build_index(self.keys, config, timings)
        elif index.ntotal != self.size or index.d != self.keys.shape[1]:
            raise ValueError(f"index holds {index.ntotal} x {index.d}, keys are {self.keys.shape}")
        self._cpu_index = index  # the one that gets saved
        faiss_index.set_search_params(self._cpu_index, config)
        if search is None:
            search, self._gpu_res = faiss_index.search_copy(self._cpu_index, config)
        self.index = search  # searched: the CPU index or its GPU copy

    @property
    def size(self) -> int:
        return int(self.keys.shape[0])

    @property
    def horizon(self) -> int:
        return int(self.futures.shape[1])

    @property
    def index_type(self) -> str:
        """The kind of index actually held: "flat", "ivf" or "hnsw"."""
        return faiss_index.index_kind(self._cpu_index)

    @property
    def on_gpu(self) -> bool:
        return self.index is not self._cpu_index

    def index_info(self) -> dict[str, Any]:
        return faiss_index.index_info(self._cpu_index, self.config, self.on_gpu)

    def query(
        self,
        keys: Float[np.ndarray, "m d_model"],
        contexts: Float[np.ndarray, "m context"],  # same length as the datastore's, NaN-left-padded
        exclude: Int[np.ndarray, "m ..."] | None = None,  # datastore rows query i may not retrieve, -1 = none
    ) -> TeacherOutput:
        cfg = self.config
        keys = np.ascontiguousarray(keys, dtype=np.float32)
        contexts = np.asarray(contexts, dtype=np.float32)
        if contexts.shape[1] != self.contexts.shape[1]:
            raise ValueError(f"query contexts have length {contexts.shape[1]}, datastore {self.contexts.shape[1]}")
        m = keys.shape[0]
        if contexts.shape[0] != m:
            raise ValueError(f"{m} query keys but {contexts.shape[0]} contexts")
        if exclude is not None:
            exclude = np.asarray(exclude, dtype=np.int64).reshape(m, -1)  # [M, E]
        k0 = min(cfg.top_k_candidates, self.size)
        k = min(cfg.k, k0)
        h, nq = self.horizon, len(QUANTILES)
        out: dict[str, np.ndarray] = {
            "quantiles": np.empty((m, h, nq), np.float32),
            "norm_quantiles": np.empty((m, h, nq), np.float32),
            "confidence": np.empty(m, np.float32),
            "neighbors": np.empty((m, k), np.int64),
            "weights": np.empty((m, k), np.float32),
        }
        for s in range(0, m, SEARCH_CHUNK):
            e = min(s + SEARCH_CHUNK, m)
            cand = self._candidates(keys[s:e], None if exclude is None else exclude[s:e], k0)
            for t in range(s, e, CHUNK):
                u = min(t + CHUNK, e)
                part = self._score(contexts[t:u], cand[t - s : u - s], k)
                for name, value in part.items():
                    out[name][t:u] = value
        return TeacherOutput(**out)

    def _candidates(self, keys: np.ndarray, exclude: np.ndarray | None, k0: int) -> np.ndarray:
        """Top k0 rows by embedding, the excluded rows dropped: [m, K0], -1 padded, embedding order kept."""
        # E extra so that dropping the excluded rows still leaves k0 candidates
        n_extra = 0 if exclude is None else exclude.shape[1]
        _, cand = self.index.search(keys, min(k0 + n_extra, self.size))  # [m, K0 + E]
        if exclude is not None:
            own = (cand[:, :, None] == exclude[:, None, :]).any(axis=2)
            cand = np.where(own, -1, cand)
        return _first_valid(cand, k0)

    def _score(self, contexts: np.ndarray, cand: np.ndarray, k: int) -> dict[str, np.ndarray]:
        """Re-rank, weight and take quantiles for one chunk of queries."""
        cfg = self.config
        level_q, scale_q = window_stats(contexts, cfg.align_points)
        zq = (contexts - level_q[:, None]) / scale_q[:, None]  # [m, C]
        nbr, dist = self._rerank(zq, cand, k)

        valid = nbr >= 0
        logits = np.where(valid, -np.sqrt(dist) / cfg.temperature, -np.inf)
        top = np.max(logits, axis=1, keepdims=True)
        top = np.where(np.isfinite(top), top, 0.0)
        e = np.where(valid, np.exp(logits - top), 0.0)
        tot = e.sum(axis=1, keepdims=True)
        w = np.where(tot > 0, e / np.where(tot > 0, tot, 1.0), 0.0)  # [m, k]

        # retrieved futures on the query's level and scale: [m, k, H]
        fut = self._norm_rows(self.futures, np.maximum(nbr, 0)) * scale_q[:, None, None] + level_q[:, None, None]
        q = weighted_quantiles(fut, w)  # [m, H, Q]
        return {
            "quantiles": q,
            "norm_quantiles": (q - level_q[:, None, None]) / scale_q[:, None, None],
            "confidence": w.max(axis=1),
            "neighbors": nbr,
            "weights": w,
        }

    def _norm_rows(self, array: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """Rows of contexts/futures in their own window's normalised space: [..., L] float32.
        Only the rows asked for are read (a memmapped store stays on disk)."""
        return (array[rows] - self._level[rows][..., None]) / self._scale[rows][..., None]

    def _rerank(self, zq: np.ndarray, cand: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Keep the k candidates closest in normalised context space: ([m, k] rows, [m, k] distances)."""
        zr = self._norm_rows(self.contexts, np.maximum(cand, 0))  # [m, K0, C]
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
        """``keys.npy``, ``contexts.npy``, ``futures.npy`` (loadable memory-mapped),
        ``index.faiss`` (the CPU index) and ``teacher.json`` (config + index facts).
        Arrays already memory-mapped from these very files are flushed, not rewritten."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        for name in ARRAYS:
            _save_array(getattr(self, name), directory / f"{name}.npy")
        faiss_index.write_index(self._cpu_index, str(directory / "index.faiss"))
        meta = {**self.config.model_dump(), "index": self.index_info()}
        (directory / "teacher.json").write_text(json.dumps(meta, indent=2))
        return directory

    @classmethod
    def load(
        cls,
        directory: str | Path,
        mmap: bool = False,  # memory-map the arrays (read-only) instead of reading them into RAM
        **overrides: Any,  # search-time settings to change: nprobe, ef_search, use_gpu
    ) -> KnnTeacher:
        directory = Path(directory)
        meta = json.loads((directory / "teacher.json").read_text())
        bad = set(overrides) - set(SEARCH_TIME_SETTINGS)
        if bad:
            raise ValueError(f"only {', '.join(SEARCH_TIME_SETTINGS)} can be changed at load, got {sorted(bad)}")
        config = TeacherConfig(**{**{k: v for k, v in meta.items() if k in TeacherConfig.model_fields}, **overrides})
        keys, contexts, futures = (np.load(directory / f"{n}.npy", mmap_mode="r" if mmap else None) for n in ARRAYS)
        index = faiss_index.read_index(str(directory / "index.faiss"))
        return cls(keys, contexts, futures, config, index=index)


def _save_array(array: np.ndarray, path: Path) -> None:
    if isinstance(array, np.memmap) and array.filename and Path(array.filename).resolve() == path.resolve():
        header = np.lib.format.open_memmap(path, mode="r")  # the file's own shape: is it the whole array?
        same = header.shape == array.shape and header.offset == array.offset
        del header
        if same:
            if array.flags.writeable:
                array.flush()
            return
    # a new file renamed into place: an array mapped from ``path`` keeps reading the old inode
    tmp = path.with_name(path.stem + ".tmp.npy")
    np.save(tmp, array)  # written in blocks, a memmap is not read into RAM at once
    os.replace(tmp, path)


def _first_valid(cand: np.ndarray, k: int) -> np.ndarray:
    """Per row, the first k entries that are not -1, in order; -1 padded: [M, k]."""
    order = np.argsort(cand < 0, axis=1, kind="stable")  # valid ones first, order kept
    out = np.take_along_axis(cand, order, 1)[:, :k]
    if out.shape[1] < k:
        out = np.pad(out, ((0, 0), (0, k - out.shape[1])), constant_values=-1)
    return out
