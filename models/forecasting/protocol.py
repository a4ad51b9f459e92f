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
from pandas.tseries.frequencies import to_offset

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


LONGEST_HORIZON = 1000  # any model without a trained limit (statistical, the backbone): a bound on the work


def parse_horizon(value: object, max_horizon: int | None) -> int:
    """``params.horizon`` as a checked integer in 1..max_horizon (None: up to ``LONGEST_HORIZON``)."""
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
    if horizon > LONGEST_HORIZON:
        raise ValueError(f"params.horizon={horizon} exceeds the longest forecast served, {LONGEST_HORIZON} steps")
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


def _offset(freq: str | None):
    """A pandas offset for a frequency string; None when there is none or pandas cannot read it."""
    if not freq:
        return None
    try:
        return to_offset(freq)
    except ValueError:
        return None


def future_index(uid: str, ds: pd.Series, horizon: int, freq: str | None = None) -> list:
    """The ``horizon`` steps after one series' context, continuing its own timestamps.

    The frequency and its anchor come from the series itself (month ends stay month ends,
    weekly Mondays stay Mondays); ``freq`` (the domain's) serves a series too short to tell.
    Integer steps continue as integers. Raises ValueError (a 400) for irregular timestamps."""
    last = ds.iloc[-1]
    if pd.api.types.is_integer_dtype(ds):
        steps = np.unique(np.diff(ds.to_numpy()))
        step = int(steps[0]) if len(steps) == 1 else 1
        return list(range(int(last) + step, int(last) + step * (horizon + 1), step))
    index = pd.DatetimeIndex(ds)
    off = _offset(pd.infer_freq(index)) if len(ds) >= 3 else None
    if off is None and len(ds) >= 3:
        raise ValueError(f"series {uid!r}: timestamps are irregular (no constant frequency); send every "
                         "step of the context, a missing value as a null y")
    if off is None and len(ds) == 1:  # one point: the domain's frequency
        off = _offset(freq)
        if off is None:
            raise ValueError(f"series {uid!r}: a single timestamp and no known frequency; send at least 3 points")
    elif off is None:  # two points: the domain's frequency if they agree with it, else a calendar step that fits
        weekly = f"W-{index[1].day_name()[:3].upper()}"
        fits = [o for o in map(_offset, (freq, "MS", "ME", "QS", "QE", "YS", "YE", weekly)) if o is not None
                and index[0] + o == index[1]]
        off = fits[0] if fits else to_offset(index[1] - index[0])
    return list(pd.date_range(start=last + off, periods=horizon, freq=off))


def future_timestamps(ids: list[str], stamps: list[pd.Series], horizon: int, freq: str | None = None) -> list[list]:
    """``future_index`` of every series (checked before any forecast is made)."""
    return [future_index(uid, ds, horizon, freq) for uid, ds in zip(ids, stamps)]


def forecast_frame(ids: list[str], futures: list[list], quantiles: np.ndarray) -> pd.DataFrame:
    """quantiles [N, H, 9] and each series' future timestamps -> the long answer frame."""
    n, h, _ = quantiles.shape
    out = pd.DataFrame({"unique_id": np.repeat(np.asarray(ids, dtype=object), h),
                        "ds": [ts for future in futures for ts in future[:h]]})
    flat = quantiles.reshape(n * h, -1)
    out["mean"] = flat[:, MEDIAN]  # median knot: the point forecast of a quantile model
    for j, col in enumerate(QUANTILE_COLUMNS):
        out[col] = flat[:, j]
    if pd.api.types.is_datetime64_any_dtype(out["ds"]):
        out["ds"] = out["ds"].dt.strftime("%Y-%m-%dT%H:%M:%S")
    return out
