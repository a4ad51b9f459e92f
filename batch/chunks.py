"""One chunk of a batch: its series' recent history in, the champion's forecast rows out (pure pandas/numpy
around any ``models.forecasting`` forecaster)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from batch.futures import future_grid
from models.forecasting.protocol import (
    POINT_COLUMNS,
    QUANTILE_COLUMNS,
    floor_at_zero,
    point_forecasts,
    to_model_scale,
)

# a partition's columns (the partition key `origin` comes from the folder name, origin=YYYY-MM-DD)
OUTPUT_COLUMNS = [
    "unique_id",
    "ds",
    *POINT_COLUMNS,
    *QUANTILE_COLUMNS,
    "model",
    "model_version",
    "family",
    "last_ds",
    "created_at",
]


def plan_chunks(ids: np.ndarray, chunk_series: int) -> list[np.ndarray]:
    """Sorted series ids -> consecutive chunks of at most ``chunk_series`` (the same plan on any cluster)."""
    return [ids[i : i + chunk_series] for i in range(0, len(ids), chunk_series)]


def recent_history(frame: pd.DataFrame, max_history: int) -> pd.DataFrame:
    """Each series' last ``max_history`` rows, sorted by (unique_id, ds)."""
    frame = frame.sort_values(["unique_id", "ds"], kind="stable")
    return frame.groupby("unique_id", sort=False).tail(max_history).reset_index(drop=True)


def series_of(frame: pd.DataFrame) -> tuple[list[str], list[np.ndarray], list[pd.Series]]:
    """Rows sorted by (unique_id, ds) -> ids, float64 values (NaN = missing), ds per series."""
    uid = frame["unique_id"].astype(str).to_numpy()
    cut = np.flatnonzero(uid[1:] != uid[:-1]) + 1
    starts, ends = np.r_[0, cut], np.r_[cut, len(uid)]
    y = frame["y"].to_numpy(np.float64)
    ds = frame["ds"].reset_index(drop=True)
    return (
        [str(uid[s]) for s in starts],
        [y[s:e] for s, e in zip(starts, ends)],
        [ds.iloc[s:e].reset_index(drop=True) for s, e in zip(starts, ends)],
    )


def forecast_chunk(
    forecaster, frame: pd.DataFrame, horizon: int, freq: str | None, model: dict, created_at: pd.Timestamp
) -> tuple[pd.DataFrame, dict[str, str]]:
    """The chunk's forecast rows (``OUTPUT_COLUMNS``) and {series: why it has none}. ``model``: name, version
    and family of the forecaster, written on every row."""
    ids, values, stamps = series_of(frame)
    if not ids:
        return pd.DataFrame(columns=OUTPUT_COLUMNS), {}
    future, ok, skipped = future_grid(ids, stamps, horizon, freq)
    live = np.flatnonzero(ok)
    if not len(live):  # every series of the chunk lacks a future (irregular timestamps)
        return pd.DataFrame(columns=OUTPUT_COLUMNS), skipped
    scaled, factors = to_model_scale([values[i] for i in live])  # float32 models, any float64 magnitude
    q = np.asarray(forecaster.predict(scaled, horizon, ids=[ids[i] for i in live]).quantiles)[:, :horizon]
    with np.errstate(over="ignore", invalid="ignore"):
        q = q.astype(np.float64) * factors[:, None, None]  # back to the series' own scale
    finite = np.isfinite(q).reshape(len(live), -1).all(axis=1)
    for i in live[~finite]:
        skipped[ids[i]] = "its forecast is beyond float64's range (values too close to 1.8e308)"
    live, q = live[finite], q[finite]
    q = floor_at_zero(q, [values[i] for i in live])  # no negative forecast for a series never below zero
    n = len(live)
    flat = q.reshape(n * horizon, -1)
    out = pd.DataFrame(
        {
            "unique_id": np.repeat(np.asarray([ids[i] for i in live], dtype=object), horizon),
            "ds": future[np.repeat(finite, horizon)].reset_index(drop=True),
        }
    )
    out["mean"], out["median"] = point_forecasts(flat)
    for j, col in enumerate(QUANTILE_COLUMNS):
        out[col] = flat[:, j]
    out["model"], out["model_version"], out["family"] = model["name"], str(model["version"]), model["family"]
    last = pd.concat([stamps[i].iloc[-1:] for i in live], ignore_index=True) if n else stamps[0].iloc[:0]
    out["last_ds"] = last.repeat(horizon).reset_index(drop=True)
    out["created_at"] = created_at
    return out[OUTPUT_COLUMNS], skipped
