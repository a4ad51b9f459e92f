"""The scoring protocol (the MLflow pyfunc's and tsfm's own server's): rows in, rows out.

Pure pandas/numpy (this package ships as the pyfunc's code path, so no mlflow here):
bad input raises ``ValueError`` with a message meant for the client; each server wraps
it into its own 4xx answer. Input rows ``unique_id, ds, y`` of each series' context;
output per series and future step ``unique_id, ds, mean`` and the quantile columns
``"0.1"`` .. ``"0.9"``.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from models.columns import ALIASES
from models.metrics import MEDIAN, QUANTILES

QUANTILE_COLUMNS = [f"{q:.1f}" for q in QUANTILES]
ANSWER_COLUMNS = ["unique_id", "ds", "mean", *QUANTILE_COLUMNS]


def request_frame(body: object) -> tuple[pd.DataFrame, dict]:
    """A decoded JSON request body -> (context rows, params).

    Accepts MLflow's ``dataframe_split`` ({"columns": [...], "data": [[...], ...]}) and
    ``dataframe_records`` ([{"unique_id": ..., "ds": ..., "y": ...}, ...]) inputs."""
    if not isinstance(body, dict):
        raise ValueError("the request body must be a JSON object with 'dataframe_split' or 'dataframe_records'")
    params = body.get("params") or {}
    if not isinstance(params, dict):
        raise ValueError("'params' must be a JSON object")
    given = [k for k in ("dataframe_split", "dataframe_records") if k in body]
    if len(given) != 1:
        raise ValueError("the request body needs exactly one of 'dataframe_split' or 'dataframe_records'; "
                         f"got keys {sorted(body)}")
    if given[0] == "dataframe_split":
        split = body["dataframe_split"]
        if not isinstance(split, dict) or not isinstance(split.get("data"), list):
            raise ValueError("'dataframe_split' must be an object with 'columns' and 'data' (a list of rows)")
        columns, data = split.get("columns"), split["data"]
        if not isinstance(columns, list) or not all(isinstance(c, str) for c in columns):
            raise ValueError("'dataframe_split.columns' must be a list of column names")
        if any(not isinstance(row, list) or len(row) != len(columns) for row in data):
            raise ValueError(f"every row of 'dataframe_split.data' must be a list of {len(columns)} values")
        frame = pd.DataFrame(data, columns=columns)
    else:
        records = body["dataframe_records"]
        if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
            raise ValueError("'dataframe_records' must be a list of objects")
        frame = pd.DataFrame.from_records(records)
    return frame, params


def parse_horizon(value: object, max_horizon: int | None) -> int:
    """``params.horizon`` as a checked integer in 1..max_horizon (None: no upper bound)."""
    if isinstance(value, bool):
        value = None  # JSON true/false is not a horizon
    try:
        horizon = int(value)
        if horizon != value and not (isinstance(value, str) and value.strip().lstrip("+").isdigit()):
            raise ValueError
    except (TypeError, ValueError):
        raise ValueError(f"params.horizon must be an integer, got {value!r}") from None
    if horizon < 1:
        raise ValueError("params.horizon must be >= 1")
    if max_horizon is not None and horizon > max_horizon:
        raise ValueError(f"params.horizon={horizon} exceeds this model's trained horizon {max_horizon}")
    return horizon


def parse_context(frame: pd.DataFrame) -> tuple[list[str], list[np.ndarray], list[pd.Series]]:
    """Validate the request rows; return ids, value arrays and ds columns per series."""
    frame = frame.rename(columns={k: v for k, v in ALIASES.items() if k in frame.columns})
    missing = [c for c in ("unique_id", "ds", "y") if c not in frame.columns]
    if missing:
        raise ValueError(f"missing column(s) {missing}; got {list(frame.columns)}")
    if frame.empty:
        raise ValueError("no context rows given")
    y = pd.to_numeric(frame["y"], errors="coerce")
    bad = frame.index[y.isna() & frame["y"].notna()]
    if len(bad):
        raise ValueError(f"column 'y' is not numeric in row(s) {list(bad[:5])}")
    if not np.isfinite(y.dropna().to_numpy(dtype=float)).all():
        raise ValueError("column 'y' holds infinite values")
    if frame["unique_id"].isna().any():
        raise ValueError("column 'unique_id' has empty values")
    frame = frame.assign(y=y, unique_id=frame["unique_id"].astype(str))
    if pd.api.types.is_numeric_dtype(frame["ds"]) and not pd.api.types.is_bool_dtype(frame["ds"]):
        if frame["ds"].isna().any() or (frame["ds"] % 1 != 0).any():
            raise ValueError("column 'ds' has numbers that are not integer steps")
        ds = frame["ds"].astype("int64")
    else:
        ds = pd.to_datetime(frame["ds"], errors="coerce", utc=False)
        if ds.isna().any():
            raise ValueError("column 'ds' has values that are neither timestamps nor integers")
    frame = frame.assign(ds=ds).sort_values(["unique_id", "ds"], kind="stable")
    if frame.duplicated(["unique_id", "ds"]).any():
        raise ValueError("duplicate (unique_id, ds) rows in the context")
    ids, values, stamps = [], [], []
    for uid, g in frame.groupby("unique_id", sort=False):
        ids.append(uid)
        values.append(g["y"].to_numpy(np.float32))
        stamps.append(g["ds"])
    return ids, values, stamps


def future_stamps(ds: pd.Series, horizon: int, freq: str | None) -> list:
    """The next ``horizon`` time stamps after a series' context."""
    last = ds.iloc[-1]
    if pd.api.types.is_integer_dtype(ds):
        return list(range(int(last) + 1, int(last) + 1 + horizon))
    step = freq or (pd.infer_freq(ds) if len(ds) >= 3 else None)
    if step is not None:
        return list(pd.date_range(last, periods=horizon + 1, freq=step)[1:])
    delta = ds.iloc[-1] - ds.iloc[-2] if len(ds) >= 2 else pd.Timedelta(1, "D")
    return [last + delta * (i + 1) for i in range(horizon)]


def forecast_frame(ids, stamps, quantiles: np.ndarray, freq: str | None) -> pd.DataFrame:
    """quantiles [N, H, 9] -> long answer frame."""
    n, h, _ = quantiles.shape
    rows = []
    for i in range(n):
        for ts in future_stamps(stamps[i], h, freq):
            rows.append((ids[i], ts))
    out = pd.DataFrame(rows, columns=["unique_id", "ds"])
    flat = quantiles.reshape(n * h, -1)
    out["mean"] = flat[:, MEDIAN]  # median knot: the point forecast of a quantile model
    for j, col in enumerate(QUANTILE_COLUMNS):
        out[col] = flat[:, j]
    if pd.api.types.is_datetime64_any_dtype(out["ds"]):
        out["ds"] = out["ds"].dt.strftime("%Y-%m-%dT%H:%M:%S")
    return out
