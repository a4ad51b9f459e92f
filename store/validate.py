"""Validate a long frame (unique_id, ds, y) before it enters the canonical store.

Fatal problems (nothing usable: empty file, missing columns) raise ``IngestError``.
Row problems move the row to a quarantine frame with its 1-based data row number,
the column at fault and a reason, so a bad row never sinks a whole file and every
input row is accounted for: rows_in == rows_kept + rows_quarantined.
"""
from __future__ import annotations

import re
import warnings
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

from infra.errors import InputError
from models.columns import ALIASES, COLUMNS

REQUIRED = COLUMNS
QUARANTINE_COLUMNS = ("row", "column", "reason", "unique_id", "ds", "y")
_INT_TEXT = re.compile(r"^[+-]?\d+$")


class IngestError(InputError):
    """A source that cannot be ingested at all (the message names file and column)."""


@dataclass(frozen=True)
class ValidationResult:
    good: pd.DataFrame  # unique_id str, ds datetime64[ns] or int64, y float64; sorted
    quarantine: pd.DataFrame  # QUARANTINE_COLUMNS, original values as text
    rows_in: int
    ds_kind: str  # "timestamp" or "integer"

    @property
    def rows_kept(self) -> int:
        return len(self.good)

    @property
    def rows_quarantined(self) -> int:
        return len(self.quarantine)

    @property
    def n_series(self) -> int:
        return int(self.good["unique_id"].nunique())


def map_columns(frame, columns: dict[str, str] | None, name: str):
    """The source's own column names renamed to unique_id / ds / y (``--columns date=ds,...``)."""
    if not columns:
        return frame
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise IngestError(f"{name}: --columns names {missing}, which the file does not have; "
                          f"its columns are {list(map(str, frame.columns))}")
    clash = [c for c in columns.values() if c in frame.columns and c not in columns]
    return frame.drop(columns=clash).rename(columns=columns)  # the mapped column wins over a same-named one


def canonical_columns(df: pd.DataFrame, name: str) -> pd.DataFrame:
    """Rename aliases (item_id/timestamp/target) and check the required columns exist."""
    if df is None or len(df.columns) == 0:
        raise IngestError(f"{name}: empty file (no header, no rows)")
    df = df.rename(columns={c: str(c).strip() for c in df.columns})
    renames = {a: c for a, c in ALIASES.items() if a in df.columns and c not in df.columns}
    df = df.rename(columns=renames)
    missing = [c for c in REQUIRED if c not in df.columns]
    if missing:
        aliases = ", ".join(f"{c} (or {a})" for a, c in ALIASES.items() if c in missing)
        raise IngestError(
            f"{name}: missing required column(s) {aliases}; found columns {list(map(str, df.columns))}. "
            "A file needs one row per (series, time): unique_id, ds (a date or an integer step) and y; "
            "name yours with --columns, e.g. --columns date=ds,value=y,series=unique_id"
        )
    return df


def _text(s: pd.Series) -> pd.Series:
    """Original values as text for the quarantine file (None where missing)."""
    return s.astype(object).where(s.notna(), None).map(lambda v: None if v is None else str(v))


def _parse_ds(s: pd.Series) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """-> (kind per row: 'int' / 'ts' / '' unparsable, int64 steps, datetime64[ns] stamps)."""
    n = len(s)
    kind = np.full(n, "", dtype=object)
    steps = np.zeros(n, dtype=np.int64)
    stamps = np.full(n, np.datetime64("NaT"), dtype="datetime64[ns]")
    if isinstance(s.dtype, pd.DatetimeTZDtype):
        s = s.dt.tz_convert("UTC").dt.tz_localize(None)
    if pd.api.types.is_datetime64_any_dtype(s.dtype):
        ok = s.notna().to_numpy()
        kind[ok] = "ts"
        stamps[ok] = s[ok].to_numpy(dtype="datetime64[ns]")
        return kind, steps, stamps
    if pd.api.types.is_bool_dtype(s.dtype):
        return kind, steps, stamps
    if pd.api.types.is_numeric_dtype(s.dtype):
        num = pd.to_numeric(s, errors="coerce").astype("float64").to_numpy()
        ok = np.isfinite(num) & (np.floor(num) == num)
        kind[ok] = "int"
        steps[ok] = num[ok].astype(np.int64)
        return kind, steps, stamps
    text = s.astype(object).where(s.notna(), None).map(lambda v: None if v is None else str(v).strip())
    present = text.notna() & (text != "")
    # Integer-like text is a step; other numeric text (1.5) is neither; the rest may be a date.
    num = pd.to_numeric(text.where(present), errors="coerce").to_numpy(dtype="float64")
    is_num = np.isfinite(num)
    int_like = is_num & (np.floor(num) == num)
    kind[int_like] = "int"
    steps[int_like] = num[int_like].astype(np.int64)
    exact = present.to_numpy() & text.fillna("").str.match(_INT_TEXT).to_numpy()
    if exact.any():  # beyond float precision: take the integer text itself
        steps[exact] = pd.to_numeric(text[exact], errors="coerce").astype("int64").to_numpy()
    cand = present.to_numpy() & ~is_num
    if cand.any():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "could not infer format" chatter
            parsed = pd.to_datetime(text[cand], errors="coerce", utc=True)
            retry = parsed.isna()
            if retry.any():  # several formats in one column
                parsed[retry] = pd.to_datetime(text[cand][retry], errors="coerce", utc=True, format="mixed")
        parsed = parsed.dt.tz_localize(None)
        got = parsed.notna().to_numpy()
        idx = np.flatnonzero(cand)[got]
        kind[idx] = "ts"
        stamps[idx] = parsed[got].to_numpy(dtype="datetime64[ns]")
    return kind, steps, stamps


def _parse_y(s: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """-> (float64 values, problem per row: '' ok, 'missing', 'not numeric', 'infinite')."""
    if pd.api.types.is_numeric_dtype(s.dtype) and not pd.api.types.is_bool_dtype(s.dtype):
        values = pd.to_numeric(s, errors="coerce").astype("float64").to_numpy()
        missing = np.isnan(values)
        bad = np.zeros(len(s), dtype=bool)
    else:
        text = s.astype(object).where(s.notna(), None).map(lambda v: None if v is None else str(v).strip())
        missing = (text.isna() | text.str.lower().isin(["", "nan", "na", "null", "none"])).to_numpy()
        values = pd.to_numeric(text.where(~missing), errors="coerce").to_numpy(dtype="float64")
        bad = np.isnan(values) & ~missing
    problem = np.full(len(s), "", dtype=object)
    problem[missing] = "missing"
    problem[bad] = "not numeric"
    problem[np.isinf(values)] = "infinite"
    return values, problem


def _row_numbers(df: pd.DataFrame) -> np.ndarray:
    """1-based data row numbers: the frame's integer index + 1 (readers keep the file's
    numbering there even when they drop blank lines), else position + 1."""
    if pd.api.types.is_integer_dtype(df.index.dtype):
        return df.index.to_numpy(dtype=np.int64) + 1
    return np.arange(1, len(df) + 1, dtype=np.int64)


BAD_FIELDS = "\x00tsfm-bad-fields:"  # store.sources marks a row with too many fields so (kept in place)


def _field_count_problems(df: pd.DataFrame) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """(df with the marked rows' cells emptied, mask of marked rows, their reasons)."""
    first = df.iloc[:, 0] if len(df.columns) else pd.Series([], dtype=object)
    if not pd.api.types.is_object_dtype(first.dtype) and not pd.api.types.is_string_dtype(first.dtype):
        return df, np.zeros(len(df), dtype=bool), np.array([], dtype=object)
    mask = first.astype(str).str.startswith(BAD_FIELDS).to_numpy()
    if not mask.any():
        return df, mask, np.array([], dtype=object)
    width = len(df.columns)
    reasons = np.array([f"row has {text.split(':', 2)[1]} fields, the header has {width}: "
                        f"{text.split(':', 2)[2]!r}" for text in first[mask].astype(str)], dtype=object)
    df = df.copy()
    df.loc[mask, :] = None
    return df, mask, reasons


def validate_frame(df: pd.DataFrame, name: str, horizon: int, min_train: int,
                   series_horizons: Mapping[str, int] | None = None) -> ValidationResult:
    """Split ``df`` into good rows and quarantined rows (see module docstring).

    ``series_horizons``: a series' own horizon where the source knows it (M3), used
    instead of ``horizon`` in the length rule for that series."""
    df = canonical_columns(df, name)
    if len(df) == 0:
        raise IngestError(f"{name}: no data rows (columns {list(map(str, df.columns))} but nothing below them)")
    n = len(df)
    rows = _row_numbers(df)
    df, bad_fields, field_reasons = _field_count_problems(df)
    uid_raw, ds_raw, y_raw = (df[c].reset_index(drop=True) for c in REQUIRED)

    uid = uid_raw.astype(object).where(uid_raw.notna(), None).map(lambda v: None if v is None else str(v).strip())
    uid_bad = (uid.isna() | (uid == "")).to_numpy()
    kind, steps, stamps = _parse_ds(ds_raw)
    y, y_problem = _parse_y(y_raw)

    column = np.full(n, "", dtype=object)
    reason = np.full(n, "", dtype=object)

    def flag(mask: np.ndarray, col: str, why) -> None:
        mask = mask & (reason == "")  # first problem of a row wins
        if mask.any():
            column[mask] = col
            reason[mask] = why(np.flatnonzero(mask)) if callable(why) else why

    ds_txt = _text(ds_raw).to_numpy()
    y_txt = _text(y_raw).to_numpy()
    flag(bad_fields, "row", field_reasons)  # before anything else: its cells mean nothing
    flag(uid_bad, "unique_id", "unique_id is missing")
    flag(kind == "", "ds", lambda i: [f"ds is not a timestamp or integer step: {ds_txt[j]!r}" for j in i])
    for problem in ("missing", "not numeric", "infinite"):
        flag(y_problem == problem, "y", lambda i, p=problem: [f"y is {p}: {y_txt[j]!r}" for j in i])

    # One kind of ds per store (the column gets one dtype): the majority kind wins.
    n_ts, n_int = int(((kind == "ts") & (reason == "")).sum()), int(((kind == "int") & (reason == "")).sum())
    ds_kind = "integer" if n_int > n_ts else "timestamp"
    other = "int" if ds_kind == "timestamp" else "ts"
    flag(kind == other, "ds", f"ds is {'an integer step' if other == 'int' else 'a timestamp'} "
         f"but {name} uses {ds_kind}s")

    ds = pd.Series(stamps if ds_kind == "timestamp" else steps)
    ok = reason == ""
    keyed = pd.DataFrame({"uid": uid, "ds": ds, "row": rows})[ok]
    dup = keyed.duplicated(["uid", "ds"], keep="first").to_numpy()
    if dup.any():
        first = keyed.groupby(["uid", "ds"], sort=False)["row"].transform("first").to_numpy()
        idx = np.flatnonzero(ok)[dup]
        column[idx] = "ds"
        reason[idx] = [f"duplicate (unique_id, ds) = ({uid[j]}, {ds_txt[j]}); first at row {r}"
                       for j, r in zip(idx, first[dup])]

    ok = reason == ""
    counts = pd.Series(uid[ok]).value_counts()
    h = counts.index.map(lambda u: (series_horizons or {}).get(u, horizon)).to_numpy(dtype=np.int64)
    need = pd.Series(2 * h + min_train, index=counts.index)
    short = counts[counts < need]
    if len(short):
        mask = ok & uid.isin(short.index).to_numpy()
        flag(mask, "unique_id", lambda i: [
            f"series {uid[j]!r} has {short[uid[j]]} good points, needs >= {need[uid[j]]} (2*horizon + min_train)"
            for j in i])

    ok = reason == ""
    good = pd.DataFrame({"unique_id": uid[ok].astype(str), "ds": ds[ok], "y": y[ok]})
    good = good.sort_values(["unique_id", "ds"], kind="stable").reset_index(drop=True)
    bad = ~ok
    quarantine = pd.DataFrame({
        "row": rows[bad], "column": column[bad].astype(str), "reason": reason[bad].astype(str),
        "unique_id": _text(uid_raw).to_numpy()[bad], "ds": ds_txt[bad], "y": y_txt[bad],
    }, columns=list(QUARANTINE_COLUMNS))
    quarantine = quarantine.astype({"row": "int64"}).sort_values("row", kind="stable").reset_index(drop=True)
    return ValidationResult(good=good, quarantine=quarantine, rows_in=n, ds_kind=ds_kind)
