"""Long-format Parquet sources as memory-mapped arrays, cached once per file.

A source file is read once with pyarrow (three columns, never a pandas frame), sorted by
(series, time) and written as a cache directory of .npy arrays: values float32 [points]
(NaN = missing), offsets int64 [series + 1], observed int64 [series] (non-missing points),
ids str [series]. Later loads np.load(mmap_mode="r") them, so DataLoader workers and DDP
ranks on one machine share the page cache instead of each holding a copy. The cache key is
the file's resolved path, size and mtime: a changed file gets a new cache, the stale one is
removed. One process per machine builds a cache while the others wait on a file lock (the
file is then read once, not once per rank); writes go to a private temporary directory
renamed into place, so no process ever sees a partial cache.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import uuid
from pathlib import Path
from typing import Any, cast

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from models.columns import ALIASES

CACHE_VERSION = 1
ARRAYS = ("values", "offsets", "observed", "ids")


def _digest(text: str) -> str:
    return hashlib.sha1(text.encode()).hexdigest()[:12]


def default_cache_root(path: Path) -> Path:
    """``.tsfm-cache`` next to the input; the user cache when that folder is not writable."""
    root = path.parent / ".tsfm-cache"
    try:
        root.mkdir(exist_ok=True)
        if os.access(root, os.W_OK):
            return root
    except OSError:
        pass
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "tsfm" / "pretrain-data"


def cache_path(path: str | Path, cache_root: str | Path | None = None) -> Path:
    """The cache directory of ``path`` as it is now (size and mtime are part of the name)."""
    path = Path(path).resolve()
    stat = path.stat()
    root = Path(cache_root) if cache_root else default_cache_root(path)
    key = _digest(f"{stat.st_size}:{stat.st_mtime_ns}:{CACHE_VERSION}")
    return root / f"{path.stem}-{_digest(str(path))}-{key}"


def _column_names(path: Path) -> dict[str, str]:
    """canonical name -> the file's column name; raises on missing columns."""
    names: dict[str, str] = {}
    for name in pq.read_schema(path).names:
        canonical = ALIASES.get(name, name)
        if canonical not in names or name == canonical:  # unique_id wins over item_id
            names[canonical] = name
    missing = {"unique_id", "ds", "y"} - set(names)
    if missing:
        raise ValueError(f"{path}: missing columns {sorted(missing)}")
    return names


def _float32(column: pa.ChunkedArray) -> np.ndarray:
    t = column.type
    if pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_decimal(t) or pa.types.is_boolean(t):
        return pc.fill_null(column.cast(pa.float64()), float("nan")).to_numpy().astype(np.float32)
    import pandas as pd  # rare: text values, coerced like pd.to_numeric (one column only)

    return pd.to_numeric(column.to_pandas(), errors="coerce").to_numpy(np.float32)


def _decoded(column: pa.ChunkedArray) -> pa.Array:
    column = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    return column.dictionary_decode() if pa.types.is_dictionary(column.type) else column


def read_sorted(path: str | Path) -> dict[str, np.ndarray]:
    """One Parquet file -> the cache arrays (see the module docstring). Raises ValueError."""
    path = Path(path)
    names = _column_names(path)
    table = pq.read_table(path, columns=[names[c] for c in ("unique_id", "ds", "y")])
    table = pa.table({c: _decoded(table.column(names[c])) for c in ("unique_id", "ds", "y")})
    table = table.filter(pc.is_valid(table["unique_id"]))
    if table.num_rows == 0:
        raise ValueError(f"no rows in {path}")
    table = table.sort_by([("unique_id", "ascending"), ("ds", "ascending")])
    uid = table["unique_id"].combine_chunks()
    n = len(uid)
    change = pc.not_equal(uid.slice(1), uid.slice(0, n - 1)).to_numpy(zero_copy_only=False)
    starts = np.concatenate([[0], np.flatnonzero(change) + 1]).astype(np.int64)
    values = _float32(table["y"])
    return {
        "values": values,
        "offsets": np.append(starts, n).astype(np.int64),
        "observed": np.add.reduceat(~np.isnan(values), starts).astype(np.int64),
        "ids": np.asarray(uid.take(pa.array(starts)).cast(pa.string()).to_pylist(), dtype=str),
    }


def ensure_cache(path: str | Path, cache_root: str | Path | None = None) -> Path:
    """Build the cache of ``path`` unless it exists; returns its directory."""
    target = cache_path(path, cache_root)
    if (target / "meta.json").is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    lock_path = target.with_name(target.name + ".lock")
    with open(lock_path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        try:
            if not (target / "meta.json").is_file():  # else built while this process waited
                _build(path, target)
        finally:
            lock_path.unlink(missing_ok=True)  # safe: waiters re-check for the cache under their lock
    return target


def _build(path: str | Path, target: Path) -> None:
    arrays = read_sorted(path)
    tmp = target.with_name(f"{target.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    tmp.mkdir()
    for name in ARRAYS:
        np.save(tmp / f"{name}.npy", arrays[name])
    meta = {
        "source": str(Path(path).resolve()),
        "series": len(arrays["ids"]),
        "points": len(arrays["values"]),
        "version": CACHE_VERSION,
    }
    (tmp / "meta.json").write_text(json.dumps(meta))
    try:
        os.rename(tmp, target)
    except OSError:  # another process renamed its (identical) cache first
        shutil.rmtree(tmp, ignore_errors=True)
    # caches of earlier versions of this file (same path digest, other size/mtime)
    prefix = target.name.rsplit("-", 1)[0] + "-"
    for old in target.parent.glob(prefix + "*"):
        if old.name != target.name and ".tmp-" not in old.name and not old.name.endswith(".lock"):
            shutil.rmtree(old, ignore_errors=True)


class SourceArrays:
    """One cached source file. The memory maps open lazily in each process and are not
    pickled: a DataLoader worker or a spawned rank reopens them instead of copying the data."""

    def __init__(self, path: str | Path, cache_root: str | Path | None = None):
        self.path = str(path)
        self.dir = ensure_cache(path, cache_root)
        self._arrays: dict[str, np.ndarray] | None = None

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_arrays": None}

    def __getattr__(self, name: str) -> np.ndarray:
        if name not in ARRAYS:
            raise AttributeError(name)
        if self.__dict__.get("_arrays") is None:
            self._arrays = {a: np.load(self.dir / f"{a}.npy", mmap_mode="r") for a in ARRAYS}
        return cast(dict[str, np.ndarray], self._arrays)[name]

    def __len__(self) -> int:
        return len(self.offsets) - 1


class SeriesStore:
    """A selection of series from one or more sources: (source, row) pairs, no copied values."""

    def __init__(self, sources: list[SourceArrays], source: np.ndarray, row: np.ndarray):
        self.sources = sources
        self.source = np.asarray(source, dtype=np.int64)  # [n] index into sources
        self.row = np.asarray(row, dtype=np.int64)  # [n] series number inside its source

    def __len__(self) -> int:
        return len(self.row)

    def series(self, i: int) -> np.ndarray:
        """[length] float32, NaN = missing (a read-only view of the memory map)."""
        src, r = self.sources[self.source[i]], self.row[i]
        return src.values[src.offsets[r] : src.offsets[r + 1]]

    def lengths(self) -> np.ndarray:
        out = np.empty(len(self), dtype=np.int64)
        for s, src in enumerate(self.sources):
            mask = self.source == s
            out[mask] = np.diff(src.offsets)[self.row[mask]]
        return out

    def keys(self) -> set[tuple[int, int]]:
        return set(zip(self.source.tolist(), self.row.tolist()))

    @property
    def ids(self) -> list[str]:
        """``path::unique_id``: the same id in two files is two series."""
        return [f"{self.sources[s].path}::{self.sources[s].ids[r]}" for s, r in zip(self.source, self.row)]

    def subset(self, index: np.ndarray) -> "SeriesStore":
        return SeriesStore(self.sources, self.source[index], self.row[index])


def load_sources(
    paths: list[str | Path], min_length: int = 1, cache_root: str | Path | None = None
) -> list[SeriesStore]:
    """Per file, its series with at least ``min_length`` points of which one is observed.
    Raises ValueError for a file without rows, columns or usable series."""
    if not paths:
        raise ValueError("no data files")
    sources = [SourceArrays(p, cache_root) for p in paths]
    stores = []
    for s, src in enumerate(sources):
        keep = np.flatnonzero((np.diff(src.offsets) >= min_length) & (np.asarray(src.observed) > 0))
        if len(keep) == 0:
            raise ValueError(f"{src.path}: no series with at least {min_length} points and one observed value")
        stores.append(SeriesStore(sources, np.full(len(keep), s), keep))
    return stores
