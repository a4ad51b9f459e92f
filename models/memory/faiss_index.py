"""The datastore's faiss index: exact (flat), IVF or HNSW, on the GPU where faiss-gpu sees one.

``"flat"`` is exact (``IndexFlatL2``, the reference); ``"ivf"`` (``IndexIVFFlat``, nlist ~
4 sqrt(N), k-means on a seeded sample, ``nprobe`` lists searched) and ``"hnsw"``
(``IndexHNSWFlat``, ``ef_search``) are approximate; ``"auto"`` is flat up to ``exact_max``
rows and IVF past it. Flat and IVF indexes are searched on the GPU when wanted and possible
(IVF is also trained and filled there); HNSW stays on the CPU. The CPU index is the one saved.
"""

from __future__ import annotations

import time
import warnings
from typing import Any, cast

import faiss
import numpy as np

from models.memory.config import TeacherConfig

ROW_CHUNK = 65_536  # keys added to the index per call


def as_ivf(index: Any) -> Any:
    index = faiss.downcast_index(index)
    return index if isinstance(index, faiss.IndexIVF) else None


def as_hnsw(index: Any) -> Any:
    index = faiss.downcast_index(index)
    return index if isinstance(index, faiss.IndexHNSW) else None


def index_kind(index: Any) -> str:
    """ "flat", "ivf" or "hnsw" for a CPU faiss index (its class name otherwise)."""
    index = faiss.downcast_index(index)
    if isinstance(index, faiss.IndexHNSW):
        return "hnsw"
    if isinstance(index, faiss.IndexIVF):
        return "ivf"
    if isinstance(index, faiss.IndexFlat):
        return "flat"
    return type(index).__name__


def set_search_params(index: Any, config: TeacherConfig) -> None:
    """nprobe / efSearch from the config (after a build and after a load)."""
    ivf = as_ivf(index)
    if ivf is not None:
        ivf.nprobe = int(min(config.nprobe, ivf.nlist))
    hnsw = as_hnsw(index)
    if hnsw is not None:
        hnsw.hnsw.efSearch = int(config.ef_search)


def _gpu_available() -> bool:
    return hasattr(faiss, "StandardGpuResources") and faiss.get_num_gpus() > 0


def _want_gpu(config: TeacherConfig, kind: str) -> bool:
    if config.use_gpu is False or kind not in ("flat", "ivf"):  # HNSW has no GPU version
        return False
    if _gpu_available():
        return True
    if config.use_gpu:
        warnings.warn(
            "use_gpu=True but faiss sees no GPU (faiss-cpu or no CUDA device): searching on the CPU",
            RuntimeWarning,
            stacklevel=3,
        )
    return False


def _to_gpu(index: Any, nprobe: int | None = None) -> tuple[Any, Any]:
    res = faiss.StandardGpuResources()
    gpu = faiss.index_cpu_to_gpu(res, 0, index)
    if nprobe is not None:
        faiss.GpuParameterSpace().set_index_parameter(gpu, "nprobe", int(nprobe))
    return gpu, res


def search_copy(index: Any, config: TeacherConfig) -> tuple[Any, Any]:
    """(index to search, GPU resources or None): a GPU copy of a flat/IVF index when wanted and possible."""
    if not _want_gpu(config, index_kind(index)):
        return index, None
    ivf = as_ivf(index)
    return _to_gpu(index, None if ivf is None else ivf.nprobe)


def build_index(keys: np.ndarray, config: TeacherConfig, timings: dict[str, Any] | None = None) -> tuple[Any, Any, Any]:
    """keys [N, d] -> (CPU index, index to search, GPU resources or None), added ROW_CHUNK rows at a time."""
    n, d = keys.shape
    kind = config.resolve_index_type(n)
    t = time.perf_counter()
    index: Any  # the faiss index classes share no typed base with .cp / .nprobe
    if kind == "flat":
        index = faiss.IndexFlatL2(d)
    elif kind == "hnsw":
        index = faiss.IndexHNSWFlat(d, config.hnsw_m)
    else:  # ivf
        nlist = config.resolve_nlist(n)
        index = faiss.IndexIVFFlat(faiss.IndexFlatL2(d), d, nlist)
        index.cp.seed = config.seed
        index.cp.min_points_per_centroid = 1  # small stores: no "please provide more points" warning
        index.cp.max_points_per_centroid = config.train_per_list  # no second subsampling inside faiss
        n_train = min(n, config.train_per_list * nlist)
        rows = np.sort(np.random.default_rng(config.seed).choice(n, n_train, replace=False))
        sample = np.ascontiguousarray(keys[rows], dtype=np.float32)
    gpu = _want_gpu(config, kind)
    res = None
    target = index
    if gpu and kind == "ivf":  # train and fill on the GPU, copy back for saving
        target, res = _to_gpu(index)
    if kind == "ivf":
        target.train(sample)
        del sample
    if timings is not None:
        timings["index_train_s"] = time.perf_counter() - t
    t = time.perf_counter()
    for s in range(0, n, ROW_CHUNK):
        target.add(np.ascontiguousarray(keys[s : s + ROW_CHUNK], dtype=np.float32))
    if timings is not None:
        timings["index_add_s"] = time.perf_counter() - t
    if target is not index:
        index = faiss.index_gpu_to_cpu(target)
        set_search_params(index, config)
        faiss.GpuParameterSpace().set_index_parameter(
            target, "nprobe", int(cast(Any, faiss.downcast_index(index)).nprobe)
        )
        return index, target, res
    set_search_params(index, config)
    if gpu:
        search, res = search_copy(index, config)
        return index, search, res
    return index, index, None


def index_info(index: Any, config: TeacherConfig, on_gpu: bool) -> dict[str, Any]:
    info = {"type": index_kind(index), "ntotal": int(index.ntotal), "d": int(index.d), "gpu": on_gpu}
    ivf = as_ivf(index)
    if ivf is not None:
        info.update(nlist=int(ivf.nlist), nprobe=int(ivf.nprobe))
    hnsw = as_hnsw(index)
    if hnsw is not None:
        info.update(m=int(config.hnsw_m), ef_search=int(hnsw.hnsw.efSearch))
    return info


def write_index(index: Any, path: str) -> None:
    faiss.write_index(index, path)


def read_index(path: str) -> Any:
    return faiss.read_index(path)
