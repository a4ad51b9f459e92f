"""Building the kNN teacher's datastore in chunks, with bounded memory.

``build_datastore(embed_fn, window_chunks, config, directory)`` reads windows as they
come (``window_chunks`` yields ``(contexts [n, C], futures [n, H])`` float32, contexts
NaN-left-padded, futures NaN-right-padded where a series' horizon is shorter than H),
embeds at most ``chunk_size`` of them at a time with ``embed_fn`` ([n, C] -> [n, d]
float32, e.g. a ``BackboneEmbedder`` running the frozen backbone), writes keys,
contexts and futures into preallocated arrays, then builds the faiss index from
those arrays ``ROW_CHUNK`` rows at a time (IVF: k-means on a seeded sample of at most
``train_per_list * nlist`` keys first) and returns the ``KnnTeacher``.

Peak memory (N windows, context C, horizon H, key width d, all float32):
- ``directory`` given: the three arrays are ``.npy`` files memory-mapped from there
  (``N * (d + C + H) * 4`` bytes on disk). Written pages are file-backed page cache,
  which the kernel may write out and drop: they count in RSS while resident but need
  no anonymous memory. Anonymous memory is then one chunk of windows and its
  embeddings plus ``embed_fn``'s own working memory, the per-row level/scale
  (``8 N`` bytes), the IVF training sample (``<= train_per_list * nlist * d * 4``)
  and the faiss index itself, which holds its own copy of the keys: flat
  ``N * d * 4``, IVF ``N * (d * 4 + 8) + nlist * d * 4``, HNSW about
  ``N * (d * 4 + 2 * hnsw_m * 4 * 1.1)``. The finished directory is a saved teacher
  (``KnnTeacher.load(directory, mmap=True)`` maps it again without reading it).
- ``directory`` None: the arrays live in RAM (``N * (d + C + H) * 4``) next to the
  index. With ``n_windows`` given they are preallocated; without it the chunks are
  gathered and concatenated once at the end, which holds the arrays twice briefly.
With ``n_windows`` unknown and a ``directory``, the files grow by doubling (the ``.npy``
header is rewritten in place, which numpy's header padding allows) and are trimmed
to N at the end: no copy.
Queries (``KnnTeacher.query``) read only the candidate rows and run in chunks.
``directory`` should be new or empty: files of an earlier store there are overwritten in place.
"""

from __future__ import annotations

import io
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from models.forecasting.types import BackboneForecast
from models.memory.config import TeacherConfig
from models.memory.teacher import ARRAYS, KnnTeacher

DEFAULT_CHUNK = 8192  # windows per embed_fn call
MIN_CAPACITY = 65_536  # first allocation (rows) when the number of windows is not known


class BackboneEmbedder:
    """``embed_fn`` running a frozen backbone: contexts [n, C] (NaN-left-padded) -> the
    last context patch's hidden state [n, d_model], exactly as ``batch_forecast`` does.

    The other forecast outputs (quantiles, normalised quantiles, loc, scale) are kept in
    call order; ``outputs()`` returns them as one ``BackboneForecast``, so the backbone runs
    once for both the datastore keys and the adapter's training inputs.
    """

    def __init__(self, backbone: Any, horizon: int, batch_size: int = 256, device: Any = "cpu", keep: bool = False):
        self.backbone, self.horizon, self.batch_size, self.device = backbone, horizon, batch_size, device
        self.keep = ("quantiles", "norm_quantiles", "loc", "scale") if keep else ()
        self._parts: dict[str, list[np.ndarray]] = {k: [] for k in self.keep}

    def __call__(self, contexts: np.ndarray) -> np.ndarray:
        from models.forecasting.batch import batch_forecast  # torch only when a backbone is used

        contexts = np.asarray(contexts, dtype=np.float32)
        out = batch_forecast(
            self.backbone,
            list(contexts),
            self.horizon,
            contexts.shape[1],
            batch_size=self.batch_size,
            device=self.device,
        )
        for k in self.keep:
            self._parts[k].append(getattr(out, k))
        return out.embedding

    def outputs(self, embedding: np.ndarray) -> BackboneForecast:
        """The kept outputs in call order, with ``embedding`` (the datastore's keys) as the keys."""
        parts = {k: np.concatenate(v) if v else np.zeros(0, np.float32) for k, v in self._parts.items()}
        return BackboneForecast(**{**parts, "embedding": np.asarray(embedding)})


def array_chunks(
    contexts: np.ndarray, futures: np.ndarray, chunk_size: int = DEFAULT_CHUNK
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Windows already in memory (e.g. ``Windows.context/future``) as ``window_chunks``."""
    if len(contexts) != len(futures):
        raise ValueError("contexts and futures need the same length")
    for s in range(0, len(contexts), chunk_size):
        yield contexts[s : s + chunk_size], futures[s : s + chunk_size]


def build_datastore(
    embed_fn: Callable[[np.ndarray], np.ndarray],  # [n, C] float32 -> [n, d] float32
    window_chunks: Iterable[tuple[np.ndarray, np.ndarray]],  # (contexts [n, C], futures [n, H])
    config: TeacherConfig = TeacherConfig(),
    directory: str | Path | None = None,  # memory-mapped .npy arrays (and the saved teacher) here
    *,
    n_windows: int | None = None,  # total windows if known: exact preallocation
    chunk_size: int = DEFAULT_CHUNK,  # windows per embed_fn call
    timings: dict[str, float] | None = None,  # filled: embed_s, write_s, stats_s, index_train_s, index_add_s, save_s
) -> KnnTeacher:
    """Embed windows chunk by chunk into preallocated (memory-mapped) arrays, then index them.
    With ``directory`` the result is also saved there (``KnnTeacher.load(directory, mmap=True)``)."""
    if chunk_size < 1:
        raise ValueError("chunk_size must be >= 1")
    timings = {} if timings is None else timings
    timings.update(embed_s=0.0, write_s=0.0)
    store: _Store | None = None
    for contexts, futures in window_chunks:
        contexts = np.asarray(contexts, dtype=np.float32)
        futures = np.asarray(futures, dtype=np.float32)
        if contexts.ndim != 2 or futures.ndim != 2 or len(contexts) != len(futures):
            raise ValueError(f"a chunk needs contexts [n, C] and futures [n, H], got {contexts.shape}, {futures.shape}")
        for s in range(0, len(contexts), chunk_size):
            ctx, fut = contexts[s : s + chunk_size], futures[s : s + chunk_size]
            t = time.perf_counter()
            keys = np.asarray(embed_fn(ctx), dtype=np.float32)
            timings["embed_s"] += time.perf_counter() - t
            if keys.ndim != 2 or len(keys) != len(ctx):
                raise ValueError(f"embed_fn returned {keys.shape} for {len(ctx)} windows; expected [n, d]")
            t = time.perf_counter()
            if store is None:
                widths = {"keys": keys.shape[1], "contexts": ctx.shape[1], "futures": fut.shape[1]}
                store = _Store(widths, directory, n_windows)
            store.append({"keys": keys, "contexts": ctx, "futures": fut})
            timings["write_s"] += time.perf_counter() - t
    if store is None or store.n == 0:
        raise ValueError("window_chunks produced no windows")
    t = time.perf_counter()
    arrays = store.finish()
    timings["write_s"] += time.perf_counter() - t
    teacher = KnnTeacher(arrays["keys"], arrays["contexts"], arrays["futures"], config, timings=timings)
    if directory is not None:
        t = time.perf_counter()
        teacher.save(directory)  # the arrays are already there: only the index and teacher.json are written
        timings["save_s"] = time.perf_counter() - t
    return teacher


class _Store:
    """Row-appendable float32 arrays: preallocated (n_windows) or grown by doubling;
    ``.npy`` memmaps under a directory, plain arrays otherwise."""

    def __init__(self, widths: dict[str, int], directory: str | Path | None, n_windows: int | None):
        self.widths, self.n = widths, 0
        self.directory = None if directory is None else Path(directory)
        self.capacity = n_windows if n_windows else MIN_CAPACITY
        self.arrays: dict[str, Any] = {}  # ndarrays or np.memmaps (None while a file is resized)
        self.parts: dict[str, list[np.ndarray]] = {}
        if self.directory is not None:
            self.directory.mkdir(parents=True, exist_ok=True)
            for name in ARRAYS:
                self.arrays[name] = np.lib.format.open_memmap(
                    self._path(name), mode="w+", dtype=np.float32, shape=(self.capacity, widths[name])
                )
        elif n_windows:
            self.arrays = {name: np.empty((self.capacity, widths[name]), np.float32) for name in ARRAYS}
        else:
            self.parts = {name: [] for name in ARRAYS}

    def _path(self, name: str) -> Path:
        assert self.directory is not None  # only the memmapped store has files
        return self.directory / f"{name}.npy"

    def append(self, rows: dict[str, np.ndarray]) -> None:
        m = len(rows["keys"])
        for name in ARRAYS:
            if rows[name].shape[1] != self.widths[name]:
                raise ValueError(
                    f"{name} width {rows[name].shape[1]} differs from the first chunk's {self.widths[name]}"
                )
        if self.parts:
            for name in ARRAYS:
                self.parts[name].append(np.array(rows[name], dtype=np.float32, copy=True))
        else:
            if self.n + m > self.capacity:
                self._grow(max(2 * self.capacity, self.n + m))
            for name in ARRAYS:
                self.arrays[name][self.n : self.n + m] = rows[name]
        self.n += m

    def _grow(self, capacity: int) -> None:
        if self.directory is None:  # preallocated in RAM but more windows came than announced
            for name in ARRAYS:
                grown = np.empty((capacity, self.widths[name]), np.float32)
                grown[: self.n] = self.arrays[name][: self.n]
                self.arrays[name] = grown
        else:
            for name in ARRAYS:
                self.arrays[name].flush()
                self.arrays[name] = None  # unmap before resizing the file
                _resize_npy(self._path(name), capacity)
                self.arrays[name] = np.lib.format.open_memmap(self._path(name), mode="r+")
        self.capacity = capacity

    def finish(self) -> dict[str, np.ndarray]:
        if self.parts:
            return {name: np.concatenate(self.parts.pop(name)) for name in ARRAYS}
        if self.directory is None:
            return {name: a[: self.n] for name, a in self.arrays.items()}  # C-contiguous views, no copy
        out: dict[str, np.ndarray] = {}
        for name in ARRAYS:
            self.arrays[name].flush()
            self.arrays[name] = None
            if self.n != self.capacity:
                _resize_npy(self._path(name), self.n)
            out[name] = np.lib.format.open_memmap(self._path(name), mode="r+")
        return out


def _resize_npy(path: Path, n_rows: int) -> None:
    """Change the first dimension of a 2-D C-order ``.npy`` file in place (header + truncate)."""
    fmt = np.lib.format
    with open(path, "r+b") as f:
        version = fmt.read_magic(f)
        shape, fortran, dtype = _read_header(f, version)
        offset = f.tell()
        if fortran or len(shape) != 2:
            raise ValueError(f"{path}: only 2-D C-order arrays can be resized")
        header = io.BytesIO()
        d = {"descr": fmt.dtype_to_descr(dtype), "fortran_order": False, "shape": (n_rows, shape[1])}
        (fmt.write_array_header_1_0 if version == (1, 0) else fmt.write_array_header_2_0)(header, d)
        if header.tell() != offset:  # numpy pads headers so the first dimension can grow in place
            raise ValueError(f"{path}: the new header does not fit in place")
        f.seek(0)
        f.write(header.getvalue())
        f.truncate(offset + n_rows * shape[1] * dtype.itemsize)


def _read_header(f: BinaryIO, version: tuple[int, int]) -> tuple[tuple[int, ...], bool, np.dtype[Any]]:
    if version == (1, 0):
        return np.lib.format.read_array_header_1_0(f)
    return np.lib.format.read_array_header_2_0(f)
