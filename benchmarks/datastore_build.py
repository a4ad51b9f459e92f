"""kNN-teacher datastore build: time (embedding and index apart), peak memory, ANN recall, query latency.

For each size N, a fresh subprocess builds the datastore with ``models.memory.datastore.build_datastore``
into memory-mapped files under a temporary folder (the chunked, bounded-memory path) from
synthetic windows (context 64, horizon 18, stride 1) made chunk by chunk, so no figure
includes holding all windows in RAM first. Then, in the same process:
- recall@50 of the approximate index against exact search (``faiss.knn``) on 1,000 held-out
  queries: the teacher's own index when ``auto`` chose IVF (N > exact_max), otherwise an
  extra IVF built with the same rule (nlist ~ 4 sqrt(N), the default nprobe), labelled;
- search latency per 1,000 queries (top 50) of the exact index and the approximate one, and
  of the whole ``KnnTeacher.query`` (search + re-rank + weighted quantiles).

Memory: ``peak RSS`` is the process high-water mark (VmHWM) during the build minus the RSS
before it; it includes file-backed pages of the memory-mapped store while they are resident
(reclaimable page cache). ``peak anon`` (sampled every 10 ms) is the anonymous memory the
build needed on top of the start: what has to fit in RAM.

Embeddings (``--embed``):
- ``backbone``: a randomly initialised ``tiny`` backbone (d_model 64) run on each window,
  what onboarding does (its cost is the backbone's; on 2 CPU cores ~1-2k windows/s);
- ``random``: i.i.d. Gaussian keys with d = 256, for the index cost alone. Unstructured
  high-dimensional keys are the hardest case for an approximate index (every point is
  almost as far as every other): their recall is a floor, not what real embeddings get;
- ``projection``: tanh of a fixed random linear map of the window's normalised context to
  d = 64 (the tiny backbone's width): keys with neighbourhood structure, as an encoder's
  are, at almost no cost, for recall and latency at sizes the backbone is too slow for.

    .venv/bin/python benchmarks/datastore_build.py --sizes 10000,100000 --embed backbone \\
        --out .tsfm/bench/datastore_build.json
    .venv/bin/python benchmarks/datastore_build.py --sizes 1000000 --embed random
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from bench_common import REPO, machine, markdown_table, warn_if_busy, write_json

CONTEXT, HORIZON, SERIES_LENGTH, RANDOM_D, N_QUERIES, TOP = 64, 18, 1000, 256, 1000, 50


# synthetic windows ------------------------------------------------------------------------
def _series(n_series: int, rng):
    """Level + trend + a seasonal sine + a random walk + noise, magnitudes over 4 decades."""
    import numpy as np

    t = np.arange(SERIES_LENGTH)[None, :]
    period = rng.uniform(4, 60, (n_series, 1))
    x = (
        rng.uniform(-1, 1, (n_series, 1)) * t / SERIES_LENGTH * 5
        + rng.uniform(0, 3, (n_series, 1)) * np.sin(2 * np.pi * t / period + rng.uniform(0, 6, (n_series, 1)))
        + rng.normal(size=(n_series, SERIES_LENGTH)).cumsum(1) * rng.uniform(0, 0.3, (n_series, 1))
        + rng.normal(size=(n_series, SERIES_LENGTH)) * rng.uniform(0.05, 0.5, (n_series, 1))
    )
    return (
        x * 10 ** rng.uniform(0, 4, (n_series, 1))
        + rng.uniform(-1, 1, (n_series, 1)) * 10 ** rng.uniform(0, 4, (n_series, 1))
    ).astype(np.float32)


def window_chunks(n_windows: int, seed: int, series_per_chunk: int = 8):
    """(contexts [n, 64], futures [n, 18]) chunks, stride-1 windows of fresh series, n_windows in all."""
    import numpy as np

    rng = np.random.default_rng(seed)
    left = n_windows
    per_series = SERIES_LENGTH - CONTEXT - HORIZON + 1
    while left > 0:
        x = _series(series_per_chunk, rng)
        ctx = np.lib.stride_tricks.sliding_window_view(x[:, :-HORIZON], CONTEXT, axis=1)[:, :per_series]
        fut = np.lib.stride_tricks.sliding_window_view(x[:, CONTEXT:], HORIZON, axis=1)[:, :per_series]
        ctx = ctx.reshape(-1, CONTEXT)[:left]
        fut = fut.reshape(-1, HORIZON)[:left]
        left -= len(ctx)
        yield np.ascontiguousarray(ctx), np.ascontiguousarray(fut)


class RandomEmbed:
    """i.i.d. Gaussian keys [n, 256], seeded per call."""

    def __init__(self, seed: int):
        self.calls, self.seed = 0, seed

    def __call__(self, contexts):
        import numpy as np

        self.calls += 1
        return np.random.default_rng((self.seed, self.calls)).standard_normal((len(contexts), RANDOM_D), np.float32)


class ProjectionEmbed:
    """tanh(normalised context @ W), W [64, 64] fixed: structured keys without a model."""

    def __init__(self, seed: int):
        import numpy as np

        self.w = np.random.default_rng(seed).standard_normal((CONTEXT, 64)).astype(np.float32) / np.sqrt(CONTEXT)

    def __call__(self, contexts):
        import numpy as np

        from models.memory.teacher import window_stats

        level, scale = window_stats(contexts, 16)
        z = np.nan_to_num((contexts - level[:, None]) / scale[:, None])
        return np.tanh(z @ self.w).astype(np.float32)


def make_embed(kind: str, seed: int):
    if kind == "random":
        return RandomEmbed(seed)
    if kind == "projection":
        return ProjectionEmbed(seed)
    import torch

    from models.backbone.network import PatchBackbone
    from models.backbone.presets import get_preset
    from models.memory.datastore import BackboneEmbedder

    torch.manual_seed(0)
    return BackboneEmbedder(PatchBackbone(get_preset("tiny")).eval(), HORIZON, batch_size=4096)


# memory -----------------------------------------------------------------------------------
def _status() -> dict[str, int]:
    out = {}
    with open("/proc/self/status") as f:
        for line in f:
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "VmHWM", "RssAnon", "RssFile"):
                out[key] = int(rest.split()[0]) * 1024
    return out


class AnonSampler(threading.Thread):
    def __init__(self):
        super().__init__(daemon=True)
        self.peak, self.stop = 0, threading.Event()

    def run(self):
        while not self.stop.is_set():
            self.peak = max(self.peak, _status().get("RssAnon", 0))
            time.sleep(0.01)


def _reset_hwm() -> bool:
    """Reset VmHWM (Linux: write 5 to clear_refs) so the high-water mark covers the build only."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


# one size, in its own process ------------------------------------------------------------
def run_one(n: int, embed_kind: str, workdir: Path, seed: int, hnsw: bool) -> dict:
    import faiss
    import numpy as np

    from models.memory.config import TeacherConfig
    from models.memory.datastore import build_datastore
    from models.memory.faiss_index import build_index, index_kind
    from models.memory.teacher import KnnTeacher

    cfg = TeacherConfig(exact_max=100_000)  # exact search up to 100k, as the figures in docs/benchmarks.md
    embed = make_embed(embed_kind, seed)
    queries = next(window_chunks(N_QUERIES, seed + 1, series_per_chunk=N_QUERIES // 900 + 2))
    q_ctx = queries[0]
    q_keys = np.asarray(embed(q_ctx), np.float32)  # also warms the backbone up
    if isinstance(embed, RandomEmbed):
        embed.calls = 0

    store = workdir / f"store-{n}"
    _reset_hwm()
    before = _status()
    sampler = AnonSampler()
    sampler.start()
    timings: dict[str, float] = {}
    t = time.perf_counter()
    teacher = build_datastore(embed, window_chunks(n, seed), cfg, store, n_windows=n, timings=timings)
    build_s = time.perf_counter() - t
    sampler.stop.set()
    sampler.join()
    after = _status()
    row = {
        "n": n,
        "embed": embed_kind,
        "d": int(teacher.keys.shape[1]),
        "index": teacher.index_type,
        **{k: v for k, v in teacher.index_info().items() if k in ("nlist", "nprobe")},
        "build_s": build_s,
        **timings,
        "index_s": timings.get("index_train_s", 0.0) + timings.get("index_add_s", 0.0),
        "embed_per_s": n / timings["embed_s"] if timings["embed_s"] > 0 else None,
        "peak_rss_delta_mib": (after["VmHWM"] - before["VmRSS"]) / 2**20,
        "peak_anon_delta_mib": (max(sampler.peak, after["RssAnon"]) - before["RssAnon"]) / 2**20,
        "rss_after_mib": after["VmRSS"] / 2**20,
        "store_on_disk_mib": sum(p.stat().st_size for p in store.iterdir()) / 2**20,
    }

    # exact neighbours of the queries (brute force, no index copy)
    t = time.perf_counter()
    _, exact = faiss.knn(q_keys, np.asarray(teacher.keys), TOP)
    row["exact_knn_per_1k_ms"] = (time.perf_counter() - t) * 1e3 * 1000 / N_QUERIES

    def search_ms(index) -> tuple[float, np.ndarray]:
        index.search(q_keys[:10], TOP)  # warm-up
        t0 = time.perf_counter()
        _, ids = index.search(q_keys, TOP)
        return (time.perf_counter() - t0) * 1e3 * 1000 / N_QUERIES, ids

    def recall(ids) -> float:
        return float(np.mean([len(set(a) & set(b)) / TOP for a, b in zip(ids, exact)]))

    main_ms, main_ids = search_ms(teacher.index)
    row[f"{teacher.index_type}_search_per_1k_ms"] = main_ms
    approx = {}
    if teacher.index_type == "ivf":
        approx["ivf"] = (main_ms, recall(main_ids), None)
    else:
        t = time.perf_counter()
        ivf, _, _ = build_index(teacher.keys, TeacherConfig(index_type="ivf"))
        build = time.perf_counter() - t
        row["extra_ivf_nlist"] = int(faiss.downcast_index(ivf).nlist)
        ms, ids = search_ms(ivf)
        approx["ivf"] = (ms, recall(ids), build)
        del ivf
    if hnsw:
        t = time.perf_counter()
        h, _, _ = build_index(teacher.keys, TeacherConfig(index_type="hnsw"))
        build = time.perf_counter() - t
        ms, ids = search_ms(h)
        approx["hnsw"] = (ms, recall(ids), build)
        del h
    for kind, (ms, rec, build) in approx.items():
        row[f"{kind}_recall@{TOP}"] = rec
        row[f"{kind}_search_per_1k_ms"] = ms
        if build is not None:
            row[f"{kind}_extra_build_s"] = build

    teacher.query(q_keys[:10], q_ctx[:10])
    t = time.perf_counter()
    teacher.query(q_keys, q_ctx)
    row["teacher_query_per_1k_ms"] = (time.perf_counter() - t) * 1e3 * 1000 / N_QUERIES
    # the saved store maps back without reading it
    t = time.perf_counter()
    loaded = KnnTeacher.load(store, mmap=True)
    row["load_mmap_s"] = time.perf_counter() - t
    assert index_kind(loaded._cpu_index) == teacher.index_type
    return row


COLUMNS = [
    ("n", "windows", ",d"),
    ("embed", "embed", ""),
    ("d", "d", "d"),
    ("index", "index", ""),
    ("embed_s", "embed s", ".1f"),
    ("embed_per_s", "windows/s", ",.0f"),
    ("write_s", "write s", ".2f"),
    ("stats_s", "row stats s", ".2f"),
    ("index_train_s", "index train s", ".2f"),
    ("index_add_s", "index add s", ".2f"),
    ("save_s", "save s", ".2f"),
    ("build_s", "build s", ".1f"),
    ("peak_rss_delta_mib", "peak RSS Δ MiB", ",.0f"),
    ("peak_anon_delta_mib", "peak anon Δ MiB", ",.0f"),
    ("store_on_disk_mib", "store MiB", ",.0f"),
]
QUERY_COLUMNS = [
    ("n", "windows", ",d"),
    ("index", "index", ""),
    ("exact_knn_per_1k_ms", "exact (brute) ms", ",.1f"),
    ("flat_search_per_1k_ms", "flat index ms", ",.1f"),
    ("ivf_search_per_1k_ms", "IVF ms", ",.1f"),
    ("ivf_recall@50", "IVF recall@50", ".4f"),
    ("ivf_extra_build_s", "extra IVF build s", ".1f"),
    ("hnsw_search_per_1k_ms", "HNSW ms", ",.1f"),
    ("hnsw_recall@50", "HNSW recall@50", ".4f"),
    ("hnsw_extra_build_s", "HNSW build s", ".1f"),
    ("teacher_query_per_1k_ms", "teacher.query ms", ",.1f"),
    ("nlist", "nlist", ""),
    ("extra_ivf_nlist", "extra nlist", ""),
    ("nprobe", "nprobe", ""),
]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", default="10000,100000,1000000")
    ap.add_argument("--embed", choices=("backbone", "random", "projection"), default="backbone")
    ap.add_argument("--hnsw", action="store_true", help="also build an HNSW index (slow past 100k on 2 cores)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workdir", default=None, help="where the memory-mapped stores go (default: a temp folder)")
    ap.add_argument("--out", default=None, help="JSON file for the figures")
    ap.add_argument("--one", type=int, default=None, help=argparse.SUPPRESS)  # internal: one size, JSON to stdout
    args = ap.parse_args()

    if args.one is not None:
        row = run_one(args.one, args.embed, Path(args.workdir), args.seed, args.hnsw)
        print("RESULT " + json.dumps(row), flush=True)
        return 0

    warn_if_busy()
    sizes = [int(s) for s in args.sizes.split(",") if s]
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="tsfm-datastore-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    info = machine()
    print(f"machine: {info}", flush=True)
    rows = []
    try:
        for n in sizes:
            print(f"-- {n:,} windows, embed={args.embed}", flush=True)
            cmd = [
                sys.executable,
                __file__,
                "--one",
                str(n),
                "--embed",
                args.embed,
                "--seed",
                str(args.seed),
                "--workdir",
                str(workdir),
            ] + (["--hnsw"] if args.hnsw else [])
            env = {**os.environ, "PYTHONPATH": str(REPO)}
            proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
            result = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
            if proc.returncode or not result:
                print(proc.stdout[-3000:], proc.stderr[-3000:], file=sys.stderr)
                print(f"error: size {n} failed (exit {proc.returncode})", flush=True)
                continue
            row = json.loads(result[-1][len("RESULT ") :])
            rows.append(row)
            print(
                f"   build {row['build_s']:.1f}s (embed {row['embed_s']:.1f}s, index {row['index_s']:.1f}s), "
                f"peak RSS Δ {row['peak_rss_delta_mib']:,.0f} MiB, anon Δ {row['peak_anon_delta_mib']:,.0f} MiB",
                flush=True,
            )
            shutil.rmtree(workdir / f"store-{n}", ignore_errors=True)
    finally:
        if args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)
    print("\nBuild (chunked, memory-mapped store; context 64, horizon 18):")
    print(markdown_table(rows, COLUMNS))
    print(
        f"\nQueries: {N_QUERIES} held-out windows, top {TOP}; latency per 1,000 queries; "
        "recall@50 vs exact search (IVF at N <= exact_max is an extra index, not the one auto uses):"
    )
    print(markdown_table(rows, QUERY_COLUMNS))
    write_json(args.out, {"machine": info, "embed": args.embed, "context": CONTEXT, "horizon": HORIZON, "rows": rows})
    return 0 if len(rows) == len(sizes) else 1


if __name__ == "__main__":
    raise SystemExit(main())
