"""Batch forecasts: series per second of `tsfm forecast --source` for a fused champion and an AutoETS one,
on a local Dask cluster of 1 and 2 single-threaded workers (scaling efficiency), with each worker's peak
memory and the time to the written partition.

The state is what `make demo` leaves (``.tsfm``; ``--state`` for another). Its MLflow database is copied
into ``--work``, where ``forecaster-bench-fused`` gets the demo's fused candidate as champion and
``forecaster-bench-ets`` its AutoETS candidate. The sources are the demo domain's series tiled to N
series (each copy rescaled and renamed), the last ``--history`` points of each.

Usage: python benchmarks/batch_forecast.py [--state .tsfm --data data] [--sizes 10000,100000]
       [--families fused,auto_ets] [--workers 1,2] [--out result.json]
Run it on an otherwise idle machine: it times every core.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import threading
import time
from pathlib import Path

from bench_common import REPO, machine, markdown_table, use_work_dir, warn_if_busy, write_json

FAMILIES = {"fused": "fused", "auto_ets": "auto_ets"}


def bench_state(state: Path, work: Path, domain: str) -> dict[str, str]:
    """forecaster-bench-<family> with the demo domain's candidate of that family as champion."""
    import mlflow
    from mlflow import MlflowClient

    work.mkdir(parents=True, exist_ok=True)
    shutil.copy(state / "mlflow.db", work / "mlflow.db")
    uri = f"sqlite:///{(work / 'mlflow.db').resolve()}"
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    found = {}
    for mv in client.search_model_versions(f"name='forecaster-{domain}'"):
        family = mv.tags.get("family")
        if family in FAMILIES and int(mv.version) > int(found.get(family, (None, "0"))[1]):
            found[family] = (mv, mv.version)
    out = {}
    for family, (mv, _) in found.items():
        name = f"forecaster-bench-{family.replace('_', '-')}"
        client.create_registered_model(name)
        new = client.create_model_version(name, mv.source, tags={**mv.tags, "domain": name[11:]})
        client.set_registered_model_alias(name, "champion", new.version)
        out[family] = name.removeprefix("forecaster-")
    return out


def tile(frame, n: int, history: int):
    """``n`` series from ``frame``'s (its last ``history`` points each): repeated, each copy scaled by a
    random factor and renamed."""
    import numpy as np
    import pandas as pd

    frame = frame.sort_values(["unique_id", "ds"]).groupby("unique_id").tail(history)
    ids = frame["unique_id"].unique()
    rng = np.random.default_rng(0)
    parts, made, copy = [], 0, 0
    while made < n:
        take = ids[: min(len(ids), n - made)]
        g = frame[frame["unique_id"].isin(take)]
        scale = pd.Series(rng.uniform(0.5, 2.0, len(take)), index=take)
        parts.append(
            g.assign(
                unique_id=f"c{copy:04d}-" + g["unique_id"].astype(str), y=g["y"] * g["unique_id"].map(scale).to_numpy()
            )
        )
        made, copy = made + len(take), copy + 1
    return pd.concat(parts, ignore_index=True)


def tiled_source(data: Path, domain: str, n: int, history: int, path: Path) -> Path:
    """The domain's store tiled to ``n`` series (``tile``), written once to ``path``."""
    import pandas as pd

    if not path.exists():
        tile(pd.read_parquet(data / "store" / domain / "series.parquet"), n, history).to_parquet(path, index=False)
    return path


class PeakRss(threading.Thread):
    """Samples the RSS of every Dask worker process (children of this one but the Prefect server)."""

    def __init__(self, interval: float = 0.2):
        super().__init__(daemon=True)
        self.interval, self.peaks, self.stop_flag = interval, {}, threading.Event()

    def run(self) -> None:
        import psutil

        me = psutil.Process()
        while not self.stop_flag.is_set():
            for p in me.children(recursive=True):
                try:
                    cmd = " ".join(p.cmdline())
                    if "multiprocessing" in cmd or "spawn_main" in cmd:
                        self.peaks[p.pid] = max(self.peaks.get(p.pid, 0), p.memory_info().rss)
                except psutil.Error:
                    pass
            time.sleep(self.interval)


def run_one(domain: str, source: Path, out: Path, workers: int, chunk: int) -> dict:
    from flows.forecast import forecast_flow
    from infra.settings import ForecastParams

    shutil.rmtree(out, ignore_errors=True)
    watch = PeakRss()
    watch.start()
    t0 = time.perf_counter()
    summary = forecast_flow(
        ForecastParams(
            domain=domain,
            source=str(source),
            output=str(out),
            executor="dask",
            workers=workers,
            threads_per_worker=1,
            chunk_series=chunk,
        )
    )
    wall = time.perf_counter() - t0
    watch.stop_flag.set()
    watch.join()
    peaks = sorted(watch.peaks.values())[-workers:]  # the workers (nannies are small)
    return {
        "series": summary["series"],
        "wall_s": round(wall, 1),
        "to_partition_s": summary["seconds"],
        "plan_s": summary["plan_seconds"],
        "series_per_s": round(summary["series"] / summary["seconds"], 1),
        "peak_worker_mib": round(max(peaks) / 2**20) if peaks else None,
        "chunks": summary["chunks"],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--state", default=str(REPO / ".tsfm"))
    ap.add_argument("--data", default=str(REPO / "data"))
    ap.add_argument("--domain", default="m3-other")
    ap.add_argument("--work", default="/tmp/tsfm-bench-batch")
    ap.add_argument("--sizes", default="10000,100000")
    ap.add_argument("--families", default="fused,auto_ets")
    ap.add_argument("--workers", default="1,2")
    ap.add_argument("--history", type=int, default=64, help="points per series in the source")
    ap.add_argument("--chunk", type=int, default=2000, help="series per chunk")
    ap.add_argument("--out", default=None, help="write the results as JSON")
    args = ap.parse_args()
    work = Path(args.work)
    use_work_dir(work)
    domains = bench_state(Path(args.state), work, args.domain)
    warn_if_busy()
    rows = []
    for family in args.families.split(","):
        if family not in domains:
            print(f"the demo state has no {family} candidate of {args.domain}; skipped", file=sys.stderr)
            continue
        for n in map(int, args.sizes.split(",")):
            source = tiled_source(Path(args.data), args.domain, n, args.history, work / f"source-{n}.parquet")
            base = None
            for w in map(int, args.workers.split(",")):
                r = run_one(domains[family], source, work / "out", w, args.chunk)
                base = base or r["series_per_s"] / w
                row = {
                    "family": family,
                    "series": n,
                    "workers": w,
                    **r,
                    "efficiency": round(r["series_per_s"] / (w * base), 2),
                }
                print(row, flush=True)
                rows.append(row)
    cols = [
        ("family", "family", ""),
        ("series", "series", ","),
        ("workers", "workers", ""),
        ("series_per_s", "series/s", ",.1f"),
        ("efficiency", "scaling eff.", ".2f"),
        ("to_partition_s", "to partition (s)", ".1f"),
        ("plan_s", "of it planning (s)", ".1f"),
        ("peak_worker_mib", "peak RSS/worker (MiB)", ","),
    ]
    print(markdown_table(rows, cols))
    write_json(args.out, {"machine": machine(), "rows": rows, "args": vars(args)})


if __name__ == "__main__":
    main()
