"""The scoring protocol (the MLflow pyfunc's and tsfm's own server's): rows in, rows out.

Pure pandas/numpy (this package ships as the pyfunc's code path, so no mlflow here):
bad input raises ``ValueError`` with a message meant for the client; each server wraps
it into its own 4xx answer. Input rows ``unique_id, ds, y`` of each series' context;
output per series and future step ``unique_id, ds, mean`` and the quantile columns
``"0.1"`` .. ``"0.9"``.
"""

from __future__ import annotations

import datetime
import json
import warnings
from collections.abc import Callable
from typing import Any, cast

import numpy as np
import orjson
import pandas as pd
from pandas.tseries.frequencies import to_offset
from pandas.tseries.offsets import Day, Tick, Week

from models.columns import ALIASES
from models.forecasting.dates import AmbiguousDates, all_midnight, day_first, numeric_format, period_labels
from models.metrics import MEDIAN, QUANTILES

QUANTILE_COLUMNS = [f"{q:.1f}" for q in QUANTILES]
# point forecasts: ``mean`` estimates the expected value (the average of the nine quantiles, what
# sums over series or steps want), ``median`` is the 0.5 quantile (what a single value is most
# likely near); they differ where a forecast is skewed
POINT_COLUMNS = ["mean", "median"]
ANSWER_COLUMNS = ["unique_id", "ds", *POINT_COLUMNS, *QUANTILE_COLUMNS]


def point_forecasts(quantiles: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """[..., Q] quantiles -> (mean, median), each [...]."""
    return quantiles.mean(axis=-1), quantiles[..., MEDIAN]


_OFFSET = r"(?:Z|[+-]\d\d:?\d\d)$"  # a timestamp's UTC offset, at its end
MAX_DEPTH = 64  # JSON nesting a request may have; deeper ones are refused before any work


def _depth_ok(raw: bytes | str, limit: int = MAX_DEPTH) -> bool:
    """Whether bracket nesting stays within ``limit`` (brackets inside strings counted too: a
    conservative bound), in numpy over the bracket positions only: fast on a 32 MB body."""
    data = np.frombuffer(raw.encode("utf-8", "replace") if isinstance(raw, str) else raw, dtype=np.uint8)
    opens = (data == ord("[")) | (data == ord("{"))
    if int(opens.sum()) <= limit:
        return True
    at = np.flatnonzero(opens | (data == ord("]")) | (data == ord("}")))
    return int(np.cumsum(np.where(opens[at], 1, -1)).max()) <= limit


def parse_json(raw: bytes | str) -> object:
    """A request body as strict JSON: no NaN/Infinity literals, at most ``MAX_DEPTH`` levels."""
    if not _depth_ok(raw):
        raise ValueError(f"JSON nested more than {MAX_DEPTH} levels deep")
    if isinstance(raw, bytes) and (encoding := json.detect_encoding(raw)) != "utf-8":  # UTF-16/32, a BOM
        raw = raw.decode(encoding)  # read as json.loads read them; a UnicodeDecodeError is a ValueError
    try:
        # orjson, not json: a 16 MB body held the interpreter lock for ~1 s in json.loads (~5x less
        # here), and every small request beside it waited that long. Strict already: NaN/Infinity
        # literals, integers beyond 64 bits and invalid UTF-8 are errors
        return orjson.loads(raw)
    except orjson.JSONDecodeError as e:
        text = raw.encode("utf-8", "replace") if isinstance(raw, str) else raw
        at = text[max(e.pos - 1, 0) : e.pos + 8]  # where it stopped ("-Infinity" stops after the sign)
        constant = next((c for c in ("NaN", "Infinity") if c.encode() in at), None)
        if constant:
            raise ValueError(f"{constant} is not JSON (RFC 8259); send null for a missing value") from None
        raise ValueError(str(e)) from None


def request_frame(body: object) -> tuple[pd.DataFrame, dict[str, Any]]:
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
        raise ValueError(
            "the request body needs exactly one of 'dataframe_split' or 'dataframe_records'; "
            f"got keys {sorted(body)[:10]}"
        )
    if given[0] == "dataframe_split":
        split = body["dataframe_split"]
        if not isinstance(split, dict) or not isinstance(split.get("data"), list):
            raise ValueError("'dataframe_split' must be an object with 'columns' and 'data' (a list of rows)")
        columns, data = split.get("columns"), split["data"]
        if not isinstance(columns, list) or not all(isinstance(c, str) for c in columns):
            raise ValueError("'dataframe_split.columns' must be a list of column names")
        twice = sorted({c for c in columns if columns.count(c) > 1})
        if twice:
            raise ValueError(f"'dataframe_split.columns' names {twice} more than once")
        if any(not isinstance(row, list) or len(row) != len(columns) for row in data):
            raise ValueError(f"every row of 'dataframe_split.data' must be a list of {len(columns)} values")
        frame = pd.DataFrame(data, columns=columns, dtype=object)
    else:
        records = body["dataframe_records"]
        if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
            raise ValueError("'dataframe_records' must be a list of objects")
        frame = pd.DataFrame.from_records(records)
    return frame, params


LONGEST_HORIZON = 1000  # any model without a trained limit (statistical, the backbone): a bound on the work


def parse_horizon(value: object, max_horizon: int | None) -> int:
    """``params.horizon`` as a checked integer in 1..max_horizon (None: up to ``LONGEST_HORIZON``)."""
    if isinstance(value, bool):  # JSON true/false is not a horizon (int(True) would be 1)
        raise ValueError(f"params.horizon must be an integer, got {json.dumps(value)}")
    try:
        horizon = int(cast(Any, value))  # a str or a number; anything else raises TypeError below
        if horizon != value and not (isinstance(value, str) and value.strip().lstrip("+").isdigit()):
            raise ValueError
    except (TypeError, ValueError):
        raise ValueError(f"params.horizon must be an integer, got {_shown(value)}") from None
    if horizon < 1:
        raise ValueError("params.horizon must be >= 1")
    if max_horizon is not None and horizon > max_horizon:
        raise ValueError(f"params.horizon={horizon} exceeds this model's trained horizon {max_horizon}")
    if horizon > LONGEST_HORIZON:
        raise ValueError(f"params.horizon={horizon} exceeds the longest forecast served, {LONGEST_HORIZON} steps")
    return horizon


def _shown(value: object, width: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= width else text[:width] + "..."


def _is_number(v: object) -> bool:
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, (bool, np.bool_))


def _first_bad(column: pd.Series, ok: Callable[[Any], bool]) -> tuple[int, object] | None:
    """(row, value) of the first value ``ok`` refuses, or None."""
    for row, v in zip(column.index, column.to_numpy(dtype=object)):
        if not ok(v):
            return row, v
    return None


def _values(frame: pd.DataFrame) -> pd.Series:
    """Column y as float64: numbers, numeric strings or null; never true/false (ingest quarantines them)."""
    y = frame["y"]
    bad = _first_bad(y, lambda v: v is None or v is pd.NA or _is_number(v) or isinstance(v, str))
    if bad:
        raise ValueError(f"column 'y' is not numeric in row {bad[0]}: {_shown(bad[1])}")
    text = y.map(lambda v: v.strip() if isinstance(v, str) else v)
    numbers = pd.to_numeric(text, errors="coerce").astype("float64")
    blank = text.map(lambda v: isinstance(v, str) and v.lower() in ("", "nan", "null", "na"))
    wrong = frame.index[numbers.isna() & text.notna() & ~blank]
    if len(wrong):
        raise ValueError(f"column 'y' is not numeric in row(s) {list(wrong[:5])}")
    if not np.isfinite(numbers.dropna().to_numpy()).all():
        raise ValueError("column 'y' holds infinite values (or numbers beyond float64's range)")
    return numbers


MAX_STEP = 2**53  # integer steps beyond this are not exact in float64 (JSON numbers)


def _stamps(frame: pd.DataFrame) -> pd.Series:
    """Column ds as int64 steps or timestamps (one time zone at most), never a mix."""
    ds = frame["ds"]
    if pd.api.types.is_datetime64_any_dtype(ds):  # a DataFrame given to the pyfunc directly
        if ds.isna().any():
            raise ValueError("column 'ds' has empty values")
        return ds
    if len(ds) and all(isinstance(v, (pd.Timestamp, datetime.datetime)) for v in ds.to_numpy(dtype=object)):
        ds = ds.map(lambda t: t.isoformat())
    kinds = {("int" if _is_number(v) else "str" if isinstance(v, str) else "other") for v in ds.to_numpy(dtype=object)}
    if "other" in kinds:
        bad = cast("tuple[int, object]", _first_bad(ds, lambda v: _is_number(v) or isinstance(v, str)))
        raise ValueError(
            f"column 'ds' must hold timestamps (strings) or integer steps; row {bad[0]} has {_shown(bad[1])}"
        )
    if kinds == {"int", "str"}:
        raise ValueError("column 'ds' mixes integer steps and timestamps; send one kind")
    if kinds == {"int"}:
        steps = ds.astype("float64")
        if (steps % 1 != 0).any() or (steps.abs() > MAX_STEP).any():
            raise ValueError(f"column 'ds' has numbers that are not integer steps (whole numbers up to {MAX_STEP})")
        return ds.astype("int64")
    text = ds.astype(str).str.strip()
    aware = text.str.contains(_OFFSET, regex=True)
    if aware.any() and not aware.all():
        raise ValueError("column 'ds' mixes timestamps with and without a UTC offset; send one kind")
    labels = None if aware.any() else period_labels(text)  # 2010 Q1, 2020M01, 2024-W01, as ingest reads them
    if labels is not None:
        return labels
    try:
        order = None if aware.all() else day_first(text)  # 01/02/2020: the order ingest reads it in
    except AmbiguousDates as e:
        raise ValueError(
            f"column 'ds' has dates such as {e.example!r} that read as day-first or month-first alike"
            + (" (the request mixes both)" if e.mixed else "")
            + "; send ISO 8601 dates (2020-02-01)"
        ) from None
    try:
        with warnings.catch_warnings(action="ignore", category=UserWarning):  # "could not infer format"
            if aware.all():
                stamps = pd.to_datetime(text, errors="coerce", format="ISO8601")
            elif order is not None:
                stamps = pd.to_datetime(text, errors="coerce", format=numeric_format(text, order))
                retry = stamps.isna()  # a time of day, or another separator: read in the same order
                if retry.any():
                    stamps[retry] = pd.to_datetime(text[retry], errors="coerce", format="mixed", dayfirst=order)
            else:
                stamps = pd.to_datetime(text, errors="coerce")
    except (ValueError, TypeError, OverflowError):
        stamps = None
    if (stamps is None or not pd.api.types.is_datetime64_any_dtype(stamps)) and aware.all():
        # offsets that change (a daylight-saving change) on midnights: dates, read on their own calendar
        wall = pd.to_datetime(text.str.replace(_OFFSET, "", regex=True), errors="coerce", format="ISO8601")
        if wall.notna().all() and all_midnight(wall):
            return wall
    if stamps is None or not pd.api.types.is_datetime64_any_dtype(stamps):
        raise ValueError("column 'ds' mixes time zones (UTC offsets); send one offset per request")
    if stamps.isna().any():
        raise ValueError(
            "column 'ds' has values that are neither timestamps nor integers, e.g. "
            f"{_shown(text[stamps.isna()].iloc[0])}"
        )
    return stamps


def parse_context(frame: pd.DataFrame) -> tuple[list[str], list[np.ndarray], list[pd.Series]]:
    """Validate the request rows; return ids, value arrays (float64, NaN = missing) and ds columns
    per series. Every refusal is a ``ValueError`` whose message names the column and row."""
    frame = frame.rename(columns={k: v for k, v in ALIASES.items() if k in frame.columns})
    if frame.columns.duplicated().any():
        raise ValueError(
            f"column(s) {sorted(set(frame.columns[frame.columns.duplicated()]))} given more than "
            "once (an alias counts as its column: item_id, timestamp, target)"
        )
    missing = [c for c in ("unique_id", "ds", "y") if c not in frame.columns]
    if missing:
        raise ValueError(f"missing column(s) {missing}; got {[str(c) for c in frame.columns][:10]}")
    if frame.empty:
        raise ValueError("no context rows given")
    bad = _first_bad(frame["unique_id"], lambda v: isinstance(v, str) or _is_number(v))
    if bad:
        raise ValueError(f"column 'unique_id' must hold strings or numbers; row {bad[0]} has {_shown(bad[1])}")
    frame = frame.assign(y=_values(frame), unique_id=frame["unique_id"].astype(str), ds=_stamps(frame))
    frame = frame.sort_values(["unique_id", "ds"], kind="stable")
    if frame.duplicated(["unique_id", "ds"]).any():
        raise ValueError("duplicate (unique_id, ds) rows in the context")
    ids, values, stamps = [], [], []
    for uid, g in frame.groupby("unique_id", sort=False):
        v = g["y"].to_numpy(np.float64)
        if np.isnan(v).all():
            raise ValueError(f"series {uid!r} has no observed value (every y is null): nothing to forecast from")
        ids.append(uid)
        values.append(v)
        stamps.append(g["ds"])
    return ids, values, stamps


def request_rows(body: object) -> tuple[list[str], list[list[Any]]] | None:
    """(columns, rows) of a well-formed body for ``parse_rows``, None when it is anything else (then
    ``request_frame`` explains)."""
    if not isinstance(body, dict) or set(body) - {"dataframe_split", "dataframe_records", "params"}:
        return None
    split = body.get("dataframe_split")
    if isinstance(split, dict) and "dataframe_records" not in body:
        columns, data = split.get("columns"), split.get("data")
        if isinstance(columns, list) and isinstance(data, list) and len(set(map(str, columns))) == len(columns):
            return columns, data
    return None


def parse_rows(columns: list[Any], rows: list[Any]) -> tuple[list[str], list[np.ndarray], list[pd.Series]] | None:
    """``parse_context`` without pandas for the common body: string ids, number-or-null values, and
    integer steps or plain ISO dates without an offset. Returns what ``parse_context`` would, raises
    the ``ValueError`` it would, or returns None for anything else (``parse_context`` then decides)."""
    names = [ALIASES.get(c, c) for c in columns]
    try:
        iu, it, iy = names.index("unique_id"), names.index("ds"), names.index("y")
    except ValueError:
        return None
    if not rows or len(set(names)) != len(names):
        return None
    width = len(columns)
    series: dict[str, tuple[list[Any], list[Any]]] = {}
    ints = strs = 0
    for row in rows:
        if type(row) is not list or len(row) != width:
            return None
        uid, ds, y = row[iu], row[it], row[iy]
        if type(uid) is not str or (y is not None and type(y) not in (float, int)):
            return None
        if type(ds) is int:
            ints += 1
        elif type(ds) is str:
            strs += 1
        else:
            return None
        stamps, values = series.setdefault(uid, ([], []))
        stamps.append(ds)
        values.append(np.nan if y is None else y)
    if ints and strs:
        return None
    # the checks in parse_context's order: values, then duplicates in any series, then empty series
    if any(np.isinf(np.asarray(v, dtype=np.float64)).any() for _, v in series.values()):
        raise ValueError("column 'y' holds infinite values (or numbers beyond float64's range)")
    ids, values, stamps = [], [], []
    for uid in sorted(series):
        raw_ds, raw_y = series[uid]
        if ints:
            ds = np.asarray(raw_ds, dtype=np.int64) if max(map(abs, raw_ds)) <= MAX_STEP else None
        else:
            if any(not (10 <= len(d) <= 19) or d[-1] in "zZ" or "+" in d[10:] or "-" in d[10:] for d in raw_ds):
                return None  # offsets, odd formats: pandas decides
            try:
                ds = np.asarray(raw_ds, dtype="datetime64[ns]")
            except ValueError:
                return None
        if ds is None:
            return None
        order = np.argsort(ds, kind="stable")
        ids.append(uid)
        values.append(np.asarray(raw_y, dtype=np.float64)[order])
        stamps.append(ds[order])
    if any(len(ds) > 1 and (ds[1:] == ds[:-1]).any() for ds in stamps):
        raise ValueError("duplicate (unique_id, ds) rows in the context")
    for uid, y in zip(ids, values):
        if np.isnan(y).all():
            raise ValueError(f"series {uid!r} has no observed value (every y is null): nothing to forecast from")
    return ids, values, [pd.Series(ds) for ds in stamps]


def answer_json(ids: list[str], futures: list[list[Any]], quantiles: np.ndarray, chunk: int = 256) -> bytes | None:
    """``{"predictions": [...]}`` as ``forecast_frame``'s records, built without pandas (the hot path);
    None for time-zone-aware timestamps (``forecast_frame`` keeps their offsets). Built ``chunk`` series
    at a time: converting a 5,000-series answer to Python objects in one call held the interpreter
    lock (and the garbage collector's passes) for a third of a second, with small requests waiting."""
    if not np.isfinite(quantiles).all():  # strict JSON (orjson would write null)
        raise ValueError("a forecast is not finite")
    n, h, _ = quantiles.shape
    parts = []
    for start in range(0, n, chunk):
        rows = []
        q = quantiles[start : start + chunk].tolist()
        means = point_forecasts(quantiles[start : start + chunk])[0].tolist()  # numpy's sum, as forecast_frame's
        for k, uid in enumerate(ids[start : start + chunk]):
            future = futures[start + k][:h]
            if future and isinstance(future[0], pd.Timestamp):
                if future[0].tzinfo is not None:
                    return None
                future = np.datetime_as_string(np.asarray(future, dtype="datetime64[s]"), unit="s").tolist()
            for step, ds in enumerate(future):
                knots = q[k][step]
                row = {"unique_id": uid, "ds": ds, "mean": means[k][step], "median": knots[MEDIAN]}
                row.update(zip(QUANTILE_COLUMNS, knots))
                rows.append(row)
        if rows:
            parts.append(orjson.dumps(rows)[1:-1])  # the records without the list's brackets
    return b'{"predictions":[' + b",".join(parts) + b"]}"


# Models compute in float32. A series whose values come near its limits (3.4e38; squares overflow
# from 1.8e19) is divided by a power of two before the model and its forecast multiplied back in
# float64: exact scaling, and every model here is scale-equivariant.
SAFE_MAX = 2.0**40
SAFE_MIN = 2.0**-40


def to_model_scale(values: list[np.ndarray]) -> tuple[list[np.ndarray], np.ndarray]:
    """float64 contexts -> (float32 contexts, factors [N]); factor 1 for ordinary magnitudes."""
    out, factors = [], np.ones(len(values))
    for i, v in enumerate(values):
        peak = float(np.nanmax(np.abs(v))) if np.isfinite(v).any() else 0.0
        if peak > SAFE_MAX or 0.0 < peak < SAFE_MIN:
            factors[i] = 2.0 ** np.ceil(np.log2(peak))
        out.append((v / factors[i]).astype(np.float32))
    return out, factors


def from_model_scale(quantiles: np.ndarray, factors: np.ndarray, ids: list[str]) -> np.ndarray:
    """[N, H, Q] in model scale -> float64 in the caller's; ValueError naming a series whose forecast is
    not finite (beyond float64 even after scaling back)."""
    with np.errstate(over="ignore", invalid="ignore"):
        q = np.asarray(quantiles, np.float64) * factors[:, None, None]
    bad = ~np.isfinite(q).reshape(len(q), -1).all(axis=1)
    if bad.any():
        raise ValueError(
            f"the forecast of series {ids[int(np.argmax(bad))]!r} is beyond float64's range "
            "(values too close to 1.8e308); rescale the series"
        )
    return q


def floor_at_zero(quantiles: np.ndarray, values: list[np.ndarray]) -> np.ndarray:
    """[N, H, Q] quantiles in the caller's scale, with none below zero for a series whose context has
    observed values and none of them negative (counts, sales, loads): normal intervals and a backbone's
    spread crossed zero there, and a planner read negative demand. For non-negative truth the pinball
    loss of every quantile can only fall; order across levels is kept (max is monotone)."""
    lengths = np.fromiter((len(v) for v in values), np.int64, len(values))
    flat = np.concatenate([np.asarray(v, np.float64).ravel() for v in values]) if len(values) else np.zeros(0)
    ends = np.cumsum(lengths)

    def per_series(mask: np.ndarray) -> np.ndarray:  # count of True per series, one pass for a 5,000-series request
        total = np.concatenate([[0], np.cumsum(mask)])
        return total[ends] - total[ends - lengths]

    with np.errstate(invalid="ignore"):
        floor = (per_series(np.isfinite(flat)) > 0) & (per_series(flat < 0) == 0)
    if not floor.any():
        return quantiles
    out = np.array(quantiles, copy=True)
    out[floor] = np.maximum(out[floor], 0.0)
    return out


def _offset(freq: str | None) -> Any:
    """A pandas offset for a frequency string; None when there is none or pandas cannot read it."""
    if not freq:
        return None
    try:
        return to_offset(freq)
    except ValueError:
        return None


def future_index(uid: str, ds: pd.Series, horizon: int, freq: str | None = None) -> list[Any]:
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
        raise ValueError(
            f"series {uid!r}: timestamps are irregular (no constant frequency); send every "
            "step of the context, a missing value as a null y"
        )
    if off is None and len(ds) == 1:  # one point: the domain's frequency
        off = _offset(freq)
        if off is None:
            raise ValueError(f"series {uid!r}: a single timestamp and no known frequency; send at least 3 points")
    elif off is None:  # two points: the domain's frequency if they agree with it, else a calendar step that fits
        weekly = f"W-{index[1].day_name()[:3].upper()}"
        fits = [
            o
            for o in map(_offset, (freq, "MS", "ME", "QS", "QE", "YS", "YE", weekly))
            if o is not None and index[0] + o == index[1]
        ]
        off = fits[0] if fits else to_offset(index[1] - index[0])
    return list(pd.date_range(start=last + off, periods=horizon, freq=off))


MAX_FILLED = 0.2  # share of a context's steps that may be missing and filled with null values (at least 2)


def fill_gaps(
    values: list[np.ndarray], stamps: list[pd.Series], freq: str | None
) -> tuple[list[np.ndarray], list[pd.Series]]:
    """Contexts with a few missing steps of the domain's fixed-step frequency (a lost hour, a skipped day)
    put back on its grid, the missing steps as null values, as ingest keeps them; any other context is
    returned as it is (``future_index`` then tells an irregular one). Frequencies whose steps differ in
    length (months, business days) are left alone."""
    off = _offset(freq)
    day = 86_400 * 10**9
    step = (
        int(off.nanos)
        if isinstance(off, Tick)
        else off.n * day
        if isinstance(off, Day)
        else off.n * 7 * day
        if isinstance(off, Week)
        else 0
    )
    if step <= 0:
        return values, stamps
    out_values, out_stamps = list(values), list(stamps)
    for i, ds in enumerate(stamps):
        if len(ds) < 3 or not pd.api.types.is_datetime64_any_dtype(ds) or getattr(ds.dt, "tz", None) is not None:
            continue
        ns = ds.to_numpy(dtype="datetime64[ns]").astype(np.int64)
        gaps = np.diff(ns)
        if (gaps == step).all() or (gaps % step != 0).any():
            continue
        n = int((ns[-1] - ns[0]) // step) + 1
        if n - len(ns) > max(2, MAX_FILLED * n):
            continue
        filled = np.full(n, np.nan)
        filled[(ns - ns[0]) // step] = values[i]
        out_values[i] = filled
        out_stamps[i] = pd.Series(pd.to_datetime(ns[0] + step * np.arange(n)))
    return out_values, out_stamps


def future_timestamps(
    ids: list[str], stamps: list[pd.Series], horizon: int, freq: str | None = None
) -> list[list[Any]]:
    """``future_index`` of every series (checked before any forecast is made)."""
    return [future_index(uid, ds, horizon, freq) for uid, ds in zip(ids, stamps)]


def on_grid_with_futures(
    ids: list[str], values: list[np.ndarray], stamps: list[pd.Series], horizon: int, freq: str | None
) -> tuple[list[np.ndarray], list[list[Any]]]:
    """What a request's contexts become before forecasting (tsfm's server and the pyfunc alike): a few
    missing steps filled with nulls (``fill_gaps``), and every series' future (``future_timestamps``)."""
    values, stamps = fill_gaps(values, stamps, freq)
    return values, future_timestamps(ids, stamps, horizon, freq)


def forecast_frame(ids: list[str], futures: list[list[Any]], quantiles: np.ndarray) -> pd.DataFrame:
    """quantiles [N, H, 9] and each series' future timestamps -> the long answer frame."""
    n, h, _ = quantiles.shape
    out = pd.DataFrame(
        {
            "unique_id": np.repeat(np.asarray(ids, dtype=object), h),
            "ds": [ts for future in futures for ts in future[:h]],
        }
    )
    flat = quantiles.reshape(n * h, -1)
    out["mean"], out["median"] = point_forecasts(flat)
    for j, col in enumerate(QUANTILE_COLUMNS):
        out[col] = flat[:, j]
    if pd.api.types.is_datetime64_any_dtype(out["ds"]):
        if getattr(out["ds"].dt, "tz", None) is not None:  # keep the caller's UTC offset: 2024-01-01T00:00:00+02:00
            out["ds"] = [t.isoformat(timespec="seconds") for t in out["ds"]]
        else:
            out["ds"] = out["ds"].dt.strftime("%Y-%m-%dT%H:%M:%S")
    return out
