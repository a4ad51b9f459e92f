"""How long one monitor check takes for N series: realized accuracy of a stored batch forecast of every
series once all of its steps have actuals, and the drift of the new store against the training one.

The state is what `make demo` leaves (``.tsfm``; ``--state`` for another): its MLflow database is copied
into ``--work`` and ``forecaster-bench-fused`` gets the fused candidate of ``--domain`` as champion (as in
benchmarks/batch_forecast.py). The series are M3-other's tiled to N (each copy rescaled and renamed),
the last ``--history`` points of each. The domain is ingested without its last ``--horizon`` points,
batch-forecast (2 Dask workers), re-ingested whole (the actuals arrive), then checked by the monitor
flow (timed, on a warm Prefect), unchanged and with the new points shifted by x``--shift``.

Usage: python benchmarks/monitor_scale.py [--series 10000] [--out result.json]
Run it on an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import shutil
import time
from datetime import date
from pathlib import Path

from batch_forecast import bench_state, tile
from bench_common import REPO, machine, markdown_table, use_work_dir, warn_if_busy, write_json

DOMAIN = "bench-fused"


def tiled(n: int, history: int):
    from store.sources import read_source

    return tile(read_source("builtin:m3-other").frame, n, history)


def _parts(settings, domain: str) -> dict:
    """The check's pure parts timed alone on the same data: join + scoring, features + PSI."""
    from batch.partitions import read_forecasts
    from evaluation import drift, realized
    from store.canonical import read_store
    from store.ingest import previous_version

    t0 = time.perf_counter()
    actuals, _ = read_store(settings.store_dir(domain))
    stored = read_forecasts(settings.forecast_dir(domain))
    t1 = time.perf_counter()
    due, _ = realized.due_points(stored, actuals)
    realized.summary(realized.score_points(due, actuals, 1))
    t2 = time.perf_counter()
    reference, _ = read_store(previous_version(settings.store_dir(domain))[0])
    drift.drift_table(drift.features_frame(reference, 1, 64), drift.features_frame(actuals, 1, 64), 0.25)
    t3 = time.perf_counter()
    return {"read_s": round(t1 - t0, 2), "score_s": round(t2 - t1, 2), "drift_s": round(t3 - t2, 2)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--state", default=str(REPO / ".tsfm"))
    ap.add_argument("--domain", default="m3-other", help="the onboarded domain whose fused candidate is used")
    ap.add_argument("--work", default="/tmp/tsfm-bench-monitor")
    ap.add_argument("--series", type=int, default=10000)
    ap.add_argument("--history", type=int, default=72)
    ap.add_argument("--horizon", type=int, default=8)
    ap.add_argument("--shift", type=float, default=1.6)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    work = Path(args.work)
    shutil.rmtree(work, ignore_errors=True)
    use_work_dir(work)
    bench_state(Path(args.state), work, args.domain)  # forecaster-bench-fused @champion
    import mlflow

    from flows.forecast import forecast_flow
    from flows.monitor import monitor_flow
    from infra.settings import ForecastParams, MonitorParams, load_settings
    from store.canonical import read_meta
    from store.ingest import ingest_to_store
    from tracking import registry

    settings = load_settings()
    registry.configure(settings)
    frame = tiled(args.series, args.history)
    last = frame.groupby("unique_id").cumcount(ascending=False) < args.horizon
    src = work / "source.parquet"
    frame[~last].to_parquet(src, index=False)
    store = ingest_to_store(str(src), DOMAIN, args.horizon, 8, settings.paths.data_dir)
    name = registry.forecaster_name(DOMAIN)
    champion = registry.alias_version(name, "champion")
    mlflow.MlflowClient().set_model_version_tag(name, champion, "data_version", read_meta(store)["md5"])
    registry.remember_domain(DOMAIN, {"source": str(src), "horizon": args.horizon})
    t0 = time.perf_counter()
    batch = forecast_flow(ForecastParams(domain=DOMAIN, origin=date(2026, 11, 2), horizon=args.horizon, workers=2))
    forecast_s = time.perf_counter() - t0
    warn_if_busy()
    rows = []
    for label, factor in (("unchanged", 1.0), (f"new points x{args.shift:g}", args.shift)):
        full = frame.copy()
        full.loc[last, "y"] *= factor
        full.to_parquet(src, index=False)
        ingest_to_store(str(src), DOMAIN, args.horizon, 8, settings.paths.data_dir)
        shutil.rmtree(settings.monitor_dir(DOMAIN), ignore_errors=True)  # score the same points again
        t0 = time.perf_counter()
        verdict = monitor_flow(MonitorParams(domain=DOMAIN, emit_events=False))[DOMAIN]
        wall = time.perf_counter() - t0
        run = mlflow.get_run(verdict["mlflow_run_id"])
        m = run.data.metrics
        row = {
            "case": label,
            "series": batch["series"],
            "points": verdict["points"],
            "monitor_s": round(wall, 1),
            "MASE": m.get(f"MASE_v{champion}"),
            "val_MASE": m.get(f"val_MASE_v{champion}"),
            "coverage": m.get(f"coverage_v{champion}"),
            "naive_MASE": m.get(f"naive_MASE_v{champion}"),
            **{f"psi_{f}": m.get(f"psi_store_{f}") for f in ("level", "scale", "trend_strength")},
            "degraded": verdict["degraded"],
        }
        row.update(_parts(settings, DOMAIN))
        print(row, flush=True)
        rows.append(row)
    cols = [
        ("case", "actuals", ""),
        ("series", "series", ","),
        ("points", "points scored", ","),
        ("monitor_s", "monitor run (s)", ".1f"),
        ("MASE", "realized MASE", ".3f"),
        ("val_MASE", "validation MASE", ".3f"),
        ("naive_MASE", "seasonal naive MASE", ".3f"),
        ("coverage", "10-90% coverage", ".3f"),
        ("psi_level", "PSI level", ".3f"),
        ("psi_scale", "PSI scale", ".3f"),
        ("psi_trend_strength", "PSI trend", ".3f"),
        ("degraded", "degraded", ""),
        ("read_s", "read (s)", ".2f"),
        ("score_s", "join + score (s)", ".2f"),
        ("drift_s", "features + PSI (s)", ".2f"),
    ]
    print(markdown_table(rows, cols))
    print(f"(the batch forecast of {batch['series']} series took {forecast_s:.1f} s)")
    write_json(args.out, {"machine": machine(), "rows": rows, "forecast_s": round(forecast_s, 1), "args": vars(args)})


if __name__ == "__main__":
    main()
