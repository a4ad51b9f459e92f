"""A batch forecast of one domain, step by step (Prefect's tasks in ``tasks/forecast.py`` wrap these):

plan (the champion of forecaster-<domain>, the series to forecast, the origin, one input file per
chunk in the run's staging area) -> forecast one chunk (on a Dask worker, the model loaded once per
worker process) -> commit (the partition of the origin appears whole, replacing an earlier run's).
A failed run leaves nothing a reader sees (``discard_forecast``). The MLflow run is
``tracking.forecast_runs``.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
import uuid
from datetime import date, datetime, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import pandas as pd

from batch import partitions
from batch.chunks import plan_chunks, recent_history
from infra.errors import InputError, NotFoundError
from infra.logs import run_logger
from infra.settings import ForecastParams, Settings
from tracking import registry

FAULTS_ENV = "TSFM_FORECAST_FAULTS_DIR"  # tests: a file chunk-<i> there makes chunk i fail once (then removed)


def settled(params: ForecastParams, settings: Settings) -> ForecastParams:
    """``params`` with the settings' value where it leaves one unset: a deployment lists only what it
    fixes (the domain), while the scheduler address and the output belong to the machine it runs on
    (the cluster profile's ``forecast`` section)."""
    own = settings.forecast
    return params.model_copy(
        update={
            k: getattr(own, k)
            for k in ("dask_address", "output")
            if getattr(params, k) is None and getattr(own, k) is not None
        }
    )


def as_of_date(params: ForecastParams, settings: Settings, scheduled: datetime | None = None) -> date:
    """The batch's origin: given, else the flow run's scheduled date (``scheduled``; now outside a
    scheduled run) in the schedules' time zone."""
    if params.origin is not None:
        return params.origin
    when = scheduled or datetime.now(timezone.utc)
    return when.astimezone(ZoneInfo(settings.schedules.timezone)).date()


def check_origin(params: ForecastParams, origin: date, frame: pd.DataFrame) -> None:
    """A given origin must not lie before the data's last timestamp: the batch forecasts from the
    latest point, and an earlier origin would label those forecasts as made back then (the monitor
    would score points the model had seen)."""
    if params.origin is None or not pd.api.types.is_datetime64_any_dtype(frame["ds"].dtype) or frame.empty:
        return
    last = pd.Timestamp(frame["ds"].max())
    if pd.Timestamp(origin) < last.normalize():
        raise InputError(
            f"--origin {origin} is before the data's last point ({last.date()}): a batch forecasts from "
            f"the latest data; pass an origin on or after {last.date()}, or leave it out (today)"
        )


def check_frequency(data_freq: str | None, model_freq: str | None, model: dict) -> None:
    """Data re-ingested at another frequency (monthly, then weekly) must not be forecast by a model
    fitted on the old one: its seasons and its dates would be the old frequency's."""
    from store.frequency import offset_of

    if data_freq and model_freq and offset_of(data_freq) != offset_of(model_freq):
        raise InputError(
            f"the data's frequency is {data_freq}, but {model['name']} v{model['version']} was fitted on "
            f"{model_freq} data: onboard the domain again on this data (tsfm onboard --domain "
            f"{model['name'].removeprefix('forecaster-')})"
        )


def champion(params: ForecastParams, settings: Settings) -> dict:
    registry.configure(settings)
    name = registry.forecaster_name(params.domain)
    version = registry.alias_version(name, params.alias)
    if version is None:
        known = sorted(registry.remembered_domains())
        raise NotFoundError(
            f"{name} has no version with alias {params.alias!r}: onboard {params.domain} first "
            f"(tsfm onboard --domain {params.domain}); onboarded domains: {', '.join(known) or 'none'}"
        )
    tags = registry.version_tags(name, version)
    return {
        "name": name,
        "version": version,
        "family": tags.get("family", "fused"),
        "backbone_version": tags.get("backbone_version"),
    }


def series_to_forecast(params: ForecastParams, settings: Settings) -> tuple[pd.DataFrame, dict]:
    """The rows to forecast from (unique_id, ds, y) and where they came from."""
    if params.source is None:
        from store.canonical import read_store

        frame, meta = read_store(settings.store_dir(params.domain))
        return frame, {
            "source": str(settings.store_dir(params.domain)),
            "data_version": meta.get("md5"),
            "freq": meta.get("freq"),
            "rows_quarantined": 0,
        }
    from store.sources import read_source
    from store.validate import map_columns, validate_frame

    src = read_source(params.source)
    frame = map_columns(src.frame, params.columns, src.name)
    # any series with one good point can be forecast: no held-out parts here (horizon 0, 1 point)
    result = validate_frame(
        frame,
        src.name,
        horizon=0,
        min_train=1,
        freq=src.freq,
        check_grid=src.series_meta is None,
        date_format=params.date_format,
    )
    if result.rows_kept == 0:
        raise InputError(
            f"{params.source}: no valid row to forecast from ({result.rows_quarantined} rows "
            f"quarantined; first reason: {result.quarantine['reason'].iloc[0]})"
        )
    return result.good, {
        "source": params.source,
        "data_version": None,
        "freq": src.freq or result.freq,
        "rows_quarantined": result.rows_quarantined,
    }


def plan_forecast(params: ForecastParams, settings: Settings, scheduled: datetime | None = None) -> dict:
    """Resolve the champion, read the series, write each chunk's input; returns the plan (JSON-able).
    ``scheduled``: the flow run's scheduled start (the origin when ``params`` gives none)."""
    log, started = run_logger(), time.time()
    # an ad-hoc source never lands in the domain's own dataset, where it would replace the scheduled batch
    root = params.output or (
        settings.adhoc_forecast_dir(params.domain, params.source)
        if params.source
        else settings.forecast_dir(params.domain)
    )
    partitions.check_output(str(root))  # before the model is downloaded
    model = champion(params, settings)
    model_dir = Path(tempfile.mkdtemp(prefix=f"tsfm-forecast-{params.domain}-"))
    kind, folder, meta = registry.download_forecaster(model["name"], model["version"], model_dir)
    max_h = int(meta.get("max_horizon") or 0) or None
    horizon = params.horizon or int(meta.get("default_horizon") or max_h or 1)
    if max_h and horizon > max_h:
        raise InputError(
            f"horizon {horizon} is longer than {model['name']} v{model['version']} ({model['family']}) "
            f"forecasts: at most {max_h}"
        )
    frame, origin_of = series_to_forecast(params, settings)
    check_frequency(origin_of["freq"], meta.get("freq"), model)
    freq = origin_of["freq"] or meta.get("freq")
    frame = recent_history(frame, params.max_history)
    ids = frame["unique_id"].astype(str).unique()  # sorted: recent_history sorts
    origin = as_of_date(params, settings, scheduled)
    check_origin(params, origin, frame)
    run_id = uuid.uuid4().hex[:12]
    stage = partitions.staging(root, run_id)
    chunks = []
    uid = frame["unique_id"].astype(str).to_numpy()
    starts = pd.Series(range(len(uid))).groupby(uid, sort=False).first()
    ends = pd.Series(range(len(uid))).groupby(uid, sort=False).last() + 1
    for i, part in enumerate(plan_chunks(ids, params.chunk_series)):
        rows = frame.iloc[int(starts[part[0]]) : int(ends[part[-1]])]
        chunks.append(partitions.write_parquet(rows, partitions.join(stage, "inputs", f"chunk-{i:05d}.parquet")))
    log.info(
        "forecast %s: %s v%s (%s), %d series in %d chunk(s), horizon %d, origin %s -> %s",
        params.domain,
        model["name"],
        model["version"],
        model["family"],
        len(ids),
        len(chunks),
        horizon,
        origin,
        root,
    )
    return {
        "domain": params.domain,
        "model": model,
        "kind": kind,
        "model_dir": str(folder),
        "horizon": horizon,
        "freq": freq,
        "origin": origin.isoformat(),
        "root": root,
        "run_id": run_id,
        "stage": stage,
        "chunks": chunks,
        "n_series": int(len(ids)),
        "rows_in": int(len(frame)),
        **origin_of,
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "model_tmp": str(model_dir),
        "threads": params.threads_per_worker,
        "tracking_uri": settings.tracking_uri,
        "started": started,
        "plan_seconds": round(time.time() - started, 3),
    }


_LOADED: dict[tuple, object] = {}  # per worker process: (tracking uri, name, version) -> forecaster


def _forecaster(plan: dict):
    """The champion, loaded once per process: from the plan's folder where this worker shares the
    planner's disk, else downloaded from the registry (a remote Dask worker)."""
    from models.forecasting.kinds import load_forecaster

    key = (plan["tracking_uri"], plan["model"]["name"], plan["model"]["version"])
    if key not in _LOADED:
        folder = Path(plan["model_dir"])
        if not folder.is_dir():
            registry.use_tracking_uri(plan["tracking_uri"])
            _, folder, _ = registry.download_forecaster(key[1], key[2], tempfile.mkdtemp(prefix="tsfm-forecast-"))
        _LOADED.clear()  # one champion per worker at a time
        _LOADED[key] = load_forecaster(plan["kind"], folder)
    return _LOADED[key]


def _fault(index: int) -> None:
    where = os.environ.get(FAULTS_ENV)
    marker = Path(where, f"chunk-{index}") if where else None
    if marker is not None and marker.is_file():
        marker.unlink()
        raise RuntimeError(f"injected fault in chunk {index} ({FAULTS_ENV})")


def forecast_chunk(plan: dict, index: int, attempt: int = 1) -> dict:
    """Forecast chunk ``index`` of the plan into the staging area; returns its part's URI and counts
    (``attempt``: the how-manieth try of this chunk, for the summary's retried chunks)."""
    import torch

    from batch.chunks import forecast_chunk as forecast_rows

    t0, threads = time.time(), torch.get_num_threads()
    torch.set_num_threads(plan["threads"])  # the same arithmetic on every worker and inline
    try:
        _fault(index)
        forecaster = _forecaster(plan)
        frame = partitions.read_parquet(plan["chunks"][index])
        rows, skipped = forecast_rows(
            forecaster, frame, plan["horizon"], plan["freq"], plan["model"], pd.Timestamp(plan["created_at"])
        )
    finally:
        torch.set_num_threads(threads)
    part = (
        partitions.write_parquet(rows, partitions.join(plan["stage"], "parts", f"part-{index:05d}.parquet"))
        if len(rows)
        else None
    )  # no empty file: its untyped columns would not merge with the others
    return {
        "index": index,
        "part": part,
        "series": int(rows["unique_id"].nunique()),
        "rows": int(len(rows)),
        "skipped": skipped,
        "seconds": round(time.time() - t0, 3),
        "attempt": attempt,
        "pid": os.getpid(),
    }


def commit_forecast(plan: dict, chunks: list[dict]) -> dict:
    """Publish the chunks as the origin's partition; returns the batch's summary."""
    chunks = sorted(chunks, key=lambda c: c["index"])
    skipped = pd.DataFrame(
        [{"unique_id": u, "reason": r} for c in chunks for u, r in c["skipped"].items()],
        columns=["unique_id", "reason"],
    )
    summary = {
        "domain": plan["domain"],
        "origin": plan["origin"],
        "model": plan["model"]["name"],
        "model_version": plan["model"]["version"],
        "family": plan["model"]["family"],
        "horizon": plan["horizon"],
        "series": sum(c["series"] for c in chunks),
        "rows": sum(c["rows"] for c in chunks),
        "skipped": int(len(skipped)),
        "chunks": len(chunks),
        "retried_chunks": sum(c["attempt"] > 1 for c in chunks),
        "source": plan["source"],
        "worker_pids": sorted({c["pid"] for c in chunks}),
        "data_version": plan["data_version"],
        "rows_quarantined": plan["rows_quarantined"],
        "run_id": plan["run_id"],
        "created_at": plan["created_at"],
    }
    if summary["series"] == 0:  # nothing to publish: an empty partition would replace a good one
        partitions.discard(plan["root"], plan["run_id"])
        shutil.rmtree(plan["model_tmp"], ignore_errors=True)
        why = (
            f"{len(skipped)} series without a forecast, e.g. {skipped['reason'].iloc[0]}"
            if len(skipped)
            else "no series in the input"
        )
        raise InputError(
            f"forecast {plan['domain']}: no series could be forecast ({why}); nothing was written to {plan['root']}"
        )
    uri = partitions.commit(
        plan["root"],
        date.fromisoformat(plan["origin"]),
        plan["run_id"],
        [c["part"] for c in chunks if c["part"]],
        summary,
        skipped,
    )
    shutil.rmtree(plan["model_tmp"], ignore_errors=True)  # the planner's copy of the champion
    summary.update(
        output_uri=uri,
        seconds=round(time.time() - plan["started"], 3),
        plan_seconds=plan["plan_seconds"],
        chunk_seconds=round(sum(c["seconds"] for c in chunks), 3),
        workers=len(summary["worker_pids"]),
    )
    summary["series_per_s"] = round(summary["series"] / max(summary["seconds"], 1e-9), 1)
    if skipped.shape[0]:
        run_logger().warning(
            "forecast %s: %d series without a forecast (see _skipped in %s), e.g. %s: %s",
            plan["domain"],
            len(skipped),
            uri,
            skipped["unique_id"].iloc[0],
            skipped["reason"].iloc[0],
        )
    return summary


def discard_forecast(plan: dict) -> None:
    partitions.discard(plan["root"], plan["run_id"])
    shutil.rmtree(plan["model_tmp"], ignore_errors=True)
