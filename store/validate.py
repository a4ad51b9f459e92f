"""Validate a long frame (unique_id, ds, y) before it enters the canonical store.

Fatal problems (nothing usable: empty file, missing columns) raise ``IngestError``.
Row problems move the row to a quarantine frame with its file, its 1-based data row number
in that file, the column at fault and a reason, so a bad row never sinks a whole file and
every input row is accounted for: rows_in == rows_kept + rows_quarantined.

Timestamps: one kind per store. Integer steps or timestamps, the majority wins; among
timestamps, with a UTC offset or without, the majority wins too (the others are quarantined,
never shifted silently). Timestamps that all carry one offset keep their local wall-clock
time (the offset is recorded); several offsets (a daylight-saving zone) are converted to UTC.
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
from models.forecasting.dates import AmbiguousDates, all_midnight, day_first, numeric_format, period_labels
from models.forecasting.outliers import EXTREME, extreme, typical_size
from store.frequency import infer_freq, off_grid

REQUIRED = COLUMNS
QUARANTINE_COLUMNS = ("file", "row", "column", "reason", "unique_id", "ds", "y")
SOURCE_FILE = "__tsfm_source_file__"  # a folder/prefix source's per-row file name (store.sources.concat_tables)
_OFFSET = re.compile(r"(?:Z|[+-]\d{2}:?\d{2})$", re.IGNORECASE)
_INT_TEXT = re.compile(r"^[+-]?\d+$")
# a date written with numbers only, day and month in either order: 01/02/2019, 1.2.19, 01-02-2019 10:00
MIN_CHANGED_SHARE = 0.5  # off-grid share of a series from its first off-grid stamp on: its spacing changed
MAX_ABS = 1e30  # |y| beyond this: a series is set aside (float32 models overflow near 3.4e38)
COMPACT_DATE = "%Y%m%d"  # 20240131 as an integer or text: a date, not a step
# --date-format for numbers that count time from an epoch: (epoch, seconds per unit, the values read).
# Excel on Windows (and most exports) counts 1 as 1900-01-01, with a 29 February 1900 that never was, so
# from March 1900 on serial n is 1899-12-30 + n days; its 1904 system (old Mac workbooks) counts from
# 1904-01-01. Serial days are read to the year 9999, Unix time over every instant pandas holds.
COUNTED = {
    "excel": ("1899-12-30", 86400.0, (61, 2_958_466)),
    "excel1904": ("1904-01-01", 86400.0, (0, 2_957_003)),
    "unix": ("1970-01-01", 1.0, (-9.2e9, 9.2e9)),
    "unix_ms": ("1970-01-01", 0.001, (-9.2e12, 9.2e12)),
}
# integer steps all in one of these ranges look like dates written as numbers: (low, high, the format, what)
LOOKS_COUNTED = (
    (25_569, 73_050, "excel", "spreadsheet serial days"),  # 1970-01-01 .. 2099-12-31 in Excel's 1900 system
    (946_684_800, 4_102_444_800, "unix", "Unix time in seconds"),  # 2000-01-01 .. 2100-01-01
    (946_684_800_000, 4_102_444_800_000, "unix_ms", "Unix time in milliseconds"),
)


class IngestError(InputError):
    """A source that cannot be ingested at all (the message names file and column)."""


@dataclass(frozen=True)
class ValidationResult:
    good: pd.DataFrame  # unique_id str, ds datetime64[ns] or int64, y float64; sorted
    quarantine: pd.DataFrame  # QUARANTINE_COLUMNS, original values as text
    rows_in: int
    ds_kind: str  # "timestamp" or "integer"
    timezone: str | None = None  # how offsets were handled: None (none given), "converted to UTC from offset +02:00"
    freq: str | None = None  # the frequency rows were checked against (given or inferred); None: integer steps
    off_grid: int = 0  # rows quarantined for lying off that frequency's grid
    notes: tuple[str, ...] = ()  # warnings for the ingest summary: kept rows that are likely not what was meant

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
        raise IngestError(
            f"{name}: --columns names {missing}, which the file does not have; "
            f"its columns are {list(map(str, frame.columns))}"
        )
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


class _RowText:
    """``_text`` of the rows asked for only (an index array or a mask): messages and the quarantine
    are about bad rows, and converting every row of a large source took most of its validation."""

    def __init__(self, s: pd.Series):
        self.s = s

    def __getitem__(self, rows) -> np.ndarray:
        return _text(self.s.iloc[rows]).to_numpy()


def _parse_ds(
    s: pd.Series, name: str = "source", date_format: str | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, str | None]:
    """-> (kind per row: 'int' / 'ts' / 'tz' (a timestamp with a UTC offset) / '' unparsable, int64 steps,
    datetime64[ns] stamps, each row's offset text ('' for none), how offsets were handled).

    Stamps with an offset (or a Parquet time zone) are converted to UTC, except where every one of
    them is midnight on its own clock: those are calendar dates (daily or coarser data), and a date
    is kept as written, not moved to the evening before (2024-01-01T00:00+02:00 is 1 January, not
    2023-12-31 22:00). Naive ones are kept as written. A series mixing the two is refused by
    ``validate_frame``. ``date_format`` (strftime codes, or a ``COUNTED`` epoch format) reads every
    value with it; without it, numeric dates take the order of day and month that their values allow
    (``_day_first``), 8-digit integers that are all valid dates (20240131) are dates, and so are
    period labels (``period_labels``: 2010 Q1, 2024-W01)."""
    if date_format in COUNTED:
        return _parse_counted(s, *COUNTED[date_format])
    if date_format:
        return _parse_with_format(s, name, date_format)
    n = len(s)
    kind = np.full(n, "", dtype=object)
    steps = np.zeros(n, dtype=np.int64)
    stamps = np.full(n, np.datetime64("NaT"), dtype="datetime64[ns]")
    offsets = np.full(n, "", dtype=object)
    if isinstance(s.dtype, pd.DatetimeTZDtype):  # Parquet with a time zone: UTC, like offsets in text
        ok = s.notna().to_numpy()
        kind[ok] = "tz"
        wall = s.dt.tz_localize(None)  # the time on the zone's own clock
        if all_midnight(wall[ok]):
            stamps[ok] = wall[ok].to_numpy(dtype="datetime64[ns]")
            offsets[ok] = str(s.dt.tz)
            return kind, steps, stamps, offsets, f"{LOCAL_DATES} in time zone {s.dt.tz}"
        stamps[ok] = s.dt.tz_convert("UTC").dt.tz_localize(None)[ok].to_numpy(dtype="datetime64[ns]")
        offsets[ok] = str(s.dt.tz)
        return kind, steps, stamps, offsets, f"converted to UTC from time zone {s.dt.tz}"
    if pd.api.types.is_datetime64_any_dtype(s.dtype):
        ok = s.notna().to_numpy()
        kind[ok] = "ts"
        stamps[ok] = s[ok].to_numpy(dtype="datetime64[ns]")
        return kind, steps, stamps, offsets, None
    if pd.api.types.is_bool_dtype(s.dtype):
        return kind, steps, stamps, offsets, None
    if pd.api.types.is_numeric_dtype(s.dtype):
        num = pd.to_numeric(s, errors="coerce").astype("float64").to_numpy()
        ok = np.isfinite(num) & (np.floor(num) == num)
        if _compact_dates(num[ok]):
            digits = pd.Series([f"{v:.0f}" if good else None for v, good in zip(num, ok)], index=s.index)
            return _parse_with_format(digits, name, COMPACT_DATE)
        kind[ok] = "int"
        steps[ok] = num[ok].astype(np.int64)
        return kind, steps, stamps, offsets, None
    text = s.astype(object).where(s.notna(), None).map(lambda v: None if v is None else str(v).strip())
    present = text.notna() & (text != "")
    # Integer-like text is a step; other numeric text (1.5) is neither; the rest may be a date.
    num = pd.to_numeric(text.where(present), errors="coerce").to_numpy(dtype="float64")
    is_num = np.isfinite(num)
    int_like = is_num & (np.floor(num) == num)
    kind[int_like] = "int"
    steps[int_like] = num[int_like].astype(np.int64)
    if int_like.any() and int_like.sum() >= 0.5 * present.sum() and _compact_dates(num[int_like]):
        return _parse_with_format(s, name, COMPACT_DATE)
    exact = present.to_numpy() & text.fillna("").str.match(_INT_TEXT).to_numpy()
    if exact.any():  # beyond float precision: take the integer text itself
        steps[exact] = pd.to_numeric(text[exact], errors="coerce").astype("int64").to_numpy()
    cand = present.to_numpy() & ~is_num
    dayfirst = _day_first(text[cand], name) if cand.any() else None
    how = None
    if cand.any():
        found = text[cand].str.extract(f"({_OFFSET.pattern})", flags=re.IGNORECASE)[0].fillna("")
        offsets[cand] = (
            found.str.upper()
            .str.replace("Z", "+00:00")
            .str.replace(r"^([+-]\d{2})(\d{2})$", r"\1:\2", regex=True)
            .to_numpy()
        )
        aware = offsets != ""
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "could not infer format" chatter
            month_year = _month_year(text[cand])
            labels = period_labels(text[cand]) if month_year is None else None
            if month_year is not None:
                parsed = month_year
            elif labels is not None:  # 2010 Q1, 2020M01, 2024-W01
                parsed = labels.dt.tz_localize("UTC")
            elif dayfirst is None:
                parsed = pd.to_datetime(text[cand], errors="coerce", utc=True)
            else:  # numeric dates in the order their values allow: one format for the whole column (fast)
                parsed = pd.to_datetime(
                    text[cand], errors="coerce", utc=True, format=numeric_format(text[cand], dayfirst)
                )
            retry = parsed.isna()
            if retry.any():  # several formats in one column
                parsed[retry] = pd.to_datetime(
                    text[cand][retry], errors="coerce", utc=True, format="mixed", dayfirst=bool(dayfirst)
                )
        parsed = parsed.dt.tz_localize(None)  # UTC wall clock; naive text is read as is
        distinct = sorted(set(offsets[aware]))
        if distinct:  # parsed with utc=True: offset rows are now UTC, naive rows as written
            how = f"converted to UTC from offset{'s' if len(distinct) > 1 else ''} {', '.join(distinct)}"
            rows = aware[cand]  # the offset rows among the parsed ones
            local = parsed[rows] + pd.to_timedelta(_offset_minutes(offsets[cand][rows]), unit="min")
            if all_midnight(local):  # calendar dates: kept on their own calendar, not moved to UTC
                parsed[rows] = local
                how = f"{LOCAL_DATES} with offset{'s' if len(distinct) > 1 else ''} {', '.join(distinct)}"
        got = parsed.notna().to_numpy()
        idx = np.flatnonzero(cand)[got]
        kind[idx] = np.where(aware[idx], "tz", "ts")
        stamps[idx] = parsed[got].to_numpy(dtype="datetime64[ns]")
    return kind, steps, stamps, offsets, how


LOCAL_DATES = "midnight on its own clock everywhere, kept as calendar dates"


def _offset_minutes(offsets: np.ndarray) -> np.ndarray:
    """'+05:30', '-08:00', '+00:00' -> minutes east of UTC (330, -480, 0)."""
    text = pd.Series(offsets, dtype=object).astype(str)
    parts = text.str.extract(r"^([+-])(\d{2}):?(\d{2})$")
    sign = np.where(parts[0] == "-", -1, 1)
    return sign * (parts[1].astype(float).fillna(0).to_numpy() * 60 + parts[2].astype(float).fillna(0).to_numpy())


def _irregular_steps(uid: pd.Series, steps: pd.Series) -> dict[str, str]:
    """Series whose integer steps are not evenly spaced -> their first steps as text. A series is
    regular when most of its gaps are one step size and the others whole multiples of it (a few
    missing steps); 0, 1, 4, 9, 16 is not."""
    frame = pd.DataFrame({"uid": uid.to_numpy(), "ds": steps.to_numpy()}).sort_values(["uid", "ds"], kind="stable")
    frame["gap"] = frame.groupby("uid")["ds"].diff()
    gaps = frame.dropna(subset=["gap"])
    if gaps.empty:
        return {}
    counts = gaps.groupby(["uid", "gap"]).size().rename("n").reset_index()
    # each series' step: its most common gap (the smallest of a tie)
    step = counts.sort_values(["uid", "n", "gap"], ascending=[True, False, True]).drop_duplicates("uid")
    step = step.set_index("uid")["gap"]
    g = gaps.assign(step=gaps["uid"].map(step))
    bad = (
        g.assign(on=g["gap"] == g["step"], off=(g["step"] <= 0) | (g["gap"] % g["step"] != 0))
        .groupby("uid")
        .agg(on=("on", "mean"), off=("off", "any"))
    )
    bad = bad[(bad["on"] < 0.5) | bad["off"]].index
    first = frame[frame["uid"].isin(bad)].groupby("uid")["ds"].apply(lambda d: ", ".join(map(str, d.head(5))) + ", ...")
    return first.to_dict()


def _compact_dates(values: np.ndarray) -> bool:
    """Integers that are all 8-digit dates (YYYYMMDD, years 1800-2199) and at least two days."""
    if values.size < 2 or not ((values >= 18000101) & (values <= 21991231)).all():
        return False
    parsed = pd.to_datetime(pd.Series(values.astype(np.int64)).astype(str), format=COMPACT_DATE, errors="coerce")
    return bool(parsed.notna().all())


def _day_first(text: pd.Series, name: str) -> bool | None:
    """Whether numeric dates (01/02/2019) put the day first (``models.forecasting.dates.day_first``, the
    rule the server uses too); a column it cannot decide is refused with the fix."""
    try:
        return day_first(text)
    except AmbiguousDates as e:
        fix = f"pass --date-format with the order, e.g. --date-format '%d{e.sep}%m{e.sep}%Y' for day first"
        if e.mixed:
            raise IngestError(f"{name}: ds mixes day-first and month-first dates (e.g. {e.example!r}); {fix}") from None
        raise IngestError(
            f"{name}: ds values such as {e.example!r} read as day-first or month-first dates alike, and "
            f"neither order is clearly right; {fix}, or '%m/%d/%Y' for month first"
        ) from None


_MONTH_YY = re.compile(r"^([A-Za-z]{3,9})[-\s/.']?(\d{2})$")  # Jan-15, Jan 15: a spreadsheet's mmm-yy
_YY_MONTH = re.compile(r"^(\d{2})[-\s/.]?([A-Za-z]{3,9})$")  # 15-Jan: its yy-mmm


def _month_year(text: pd.Series) -> pd.Series | None:
    """A column written as month name and two-digit year (``Jan-15``: January 2015, as spreadsheets show
    it), read as month starts (UTC-aware, as the other parses); None where any value is not so written.
    pandas read ``Jan-15`` as 15 January of year 1, which then overflowed to dates in 1754."""
    for pattern, order in ((_MONTH_YY, (1, 2)), (_YY_MONTH, (2, 1))):
        found = text.str.extract(pattern)
        if len(text) and found.notna().all(axis=None):
            month, year = found[order[0] - 1].str.title(), found[order[1] - 1]
            for fmt in ("%b %y", "%B %y"):
                parsed = pd.to_datetime(month + " " + year, format=fmt, errors="coerce", utc=True)
                if parsed.notna().all():
                    return parsed
    return None


def _parse_with_format(
    s: pd.Series, name: str, date_format: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, str | None]:
    """Every value read with ``date_format``; a value it does not fit is unparsable (quarantined)."""
    n = len(s)
    kind = np.full(n, "", dtype=object)
    stamps = np.full(n, np.datetime64("NaT"), dtype="datetime64[ns]")
    text = s.astype(object).where(s.notna(), None).map(lambda v: None if v is None else str(v).strip())
    try:
        parsed = pd.to_datetime(text, errors="coerce", format=date_format)
    except (ValueError, TypeError) as e:
        raise IngestError(f"{name}: --date-format {date_format!r} is not a strftime format: {e}") from None
    if getattr(parsed.dt, "tz", None) is not None:
        parsed = parsed.dt.tz_convert("UTC").dt.tz_localize(None)
    got = parsed.notna().to_numpy()
    kind[got] = "ts"
    stamps[got] = parsed[got].to_numpy(dtype="datetime64[ns]")
    return kind, np.zeros(n, dtype=np.int64), stamps, np.full(n, "", dtype=object), None


def _parse_counted(
    s: pd.Series, epoch: str, unit_s: float, valid: tuple[float, float]
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, str | None]:
    """Numbers counting ``unit_s`` seconds from ``epoch`` (serial days: a fraction is the time of day);
    anything else, or outside ``valid``, is unparsable (quarantined)."""
    n = len(s)
    units = pd.to_numeric(s, errors="coerce").astype("float64").to_numpy()
    ok = np.isfinite(units) & (units >= valid[0]) & (units < valid[1])
    kind = np.where(ok, "ts", "").astype(object)
    stamps = np.full(n, np.datetime64("NaT"), dtype="datetime64[ns]")
    # whole seconds (milliseconds for Unix time in ms): 0.1 days is not exact in binary, and a serial day
    # written with 6 decimals is 30 ms off the hour; a stamp 1 ns off a grid lies off it
    tick = 1.0 if unit_s >= 1 else 0.001
    ticks = np.round(units[ok] * unit_s / tick).astype(np.int64)
    stamps[ok] = (pd.Timestamp(epoch) + pd.to_timedelta(ticks, unit="s" if tick == 1.0 else "ms")).to_numpy(
        dtype="datetime64[ns]"
    )
    return kind, np.zeros(n, dtype=np.int64), stamps, np.full(n, "", dtype=object), None


def counted_dates_note(steps: pd.Series) -> str | None:
    """A warning where integer steps all lie where dates written as numbers do (spreadsheet serial days of
    1970-2099, Unix time of 2000-2099): most likely dates an export wrote as numbers, stored as steps."""
    if len(steps) < 2:
        return None
    for low, high, fmt, what in LOOKS_COUNTED:
        if steps.between(low, high).all():
            first = int(steps.min())
            epoch, unit_s, _ = COUNTED[fmt]
            as_date = pd.Timestamp(epoch) + pd.Timedelta(seconds=first * unit_s)
            shown = as_date.date() if fmt == "excel" else as_date.isoformat(sep=" ") + " UTC"
            extra = " (or excel1904 for a workbook in the 1904 system)" if fmt == "excel" else ""
            system = " in Excel's usual 1900 system" if fmt == "excel" else ""
            return (
                f"ds holds integers from {first} to {int(steps.max())}, stored as integer steps; if they are "
                f"{what} ({first} is {shown}{system}), ingest again with --date-format {fmt}{extra}"
            )
    return None


def extreme_values_note(good: pd.DataFrame) -> str | None:
    """A warning naming series with a value over EXTREME times both their typical size and spread
    (``models.forecasting.outliers``, the rule the neural models read such an isolated value as missing
    by): kept as written, but a unit slip or a typo is what it usually is."""
    mag = good["y"].abs().where(good["y"] != 0)
    span = mag.groupby(good["unique_id"], sort=False).agg(["max", "min"])
    maybe = span.index[span["max"] > EXTREME * span["min"]]  # the others have no candidate (as in ``extreme``)
    hits = []
    for uid, part in good[good["unique_id"].isin(maybe)].groupby("unique_id", sort=False):
        y = part["y"].to_numpy(np.float64)
        far = extreme(y[None, :])[0]
        if far.any():
            i = int(np.argmax(far))
            hits.append((str(uid), y[i], part["ds"].iloc[i], float(typical_size(y[None, :])[0, 0])))
    if not hits:
        return None
    uid, value, ds, typical = hits[0]
    names = [h[0] for h in hits]
    return (
        f"{len(names)} series hold values over {EXTREME:.0f}x their typical size ({', '.join(names[:5])}"
        f"{' ...' if len(names) > 5 else ''}; e.g. {value:.6g} at {ds} in {uid!r}, typically {typical:.6g}): "
        "a unit slip or a typo? They are kept as written; the neural models read such a value as missing "
        "where it stands alone, the statistical ones do not: fix the source and ingest again"
    )


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
    if bad.any() and not pd.api.types.is_numeric_dtype(s.dtype):  # a locale's number tsfm could not read
        grouped = bad & text.str.match(r"^-?[\d.,' ]*\d$").fillna(False).to_numpy()
        problem[grouped] = (
            "not numeric (digits with separators: tsfm reads 1.234,5 in ';' files and "
            "1,234.5 in ',' files; write plain numbers such as 1234.5 otherwise)"
        )
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
    reasons = np.array(
        [
            f"row has {text.split(':', 2)[1]} fields, the header has {width}: {text.split(':', 2)[2]!r}"
            for text in first[mask].astype(str)
        ],
        dtype=object,
    )
    df = df.copy()
    df.loc[mask, :] = None
    return df, mask, reasons


def validate_frame(
    df: pd.DataFrame,
    name: str,
    horizon: int,
    min_train: int,
    series_horizons: Mapping[str, int] | None = None,
    freq: str | None = None,
    check_grid: bool = True,
    date_format: str | None = None,
) -> ValidationResult:
    """Split ``df`` into good rows and quarantined rows (see module docstring).

    ``series_horizons``: a series' own horizon where the source knows it (M3), used
    instead of ``horizon`` in the length rule for that series. ``freq``: the source's own
    frequency; else it is inferred from the good rows. With ``check_grid`` (a source with
    one frequency), timestamps off that frequency's grid are quarantined: a series that turns
    from daily to hourly is told, not stored as daily."""
    df = canonical_columns(df, name)
    if len(df) == 0:
        raise IngestError(f"{name}: no data rows (columns {list(map(str, df.columns))} but nothing below them)")
    n = len(df)
    rows = _row_numbers(df)
    files = df[SOURCE_FILE].astype(str).to_numpy() if SOURCE_FILE in df.columns else np.full(n, name, dtype=object)
    df, bad_fields, field_reasons = _field_count_problems(df)
    uid_raw, ds_raw, y_raw = (df[c].reset_index(drop=True) for c in REQUIRED)

    uid = uid_raw.astype(object).where(uid_raw.notna(), None).map(lambda v: None if v is None else str(v).strip())
    uid_bad = (uid.isna() | (uid == "")).to_numpy()
    kind, steps, stamps, offsets, timezone = _parse_ds(ds_raw, name, date_format)
    y, y_problem = _parse_y(y_raw)

    column = np.full(n, "", dtype=object)
    reason = np.full(n, "", dtype=object)

    def flag(mask: np.ndarray, col: str, why) -> None:
        mask = mask & (reason == "")  # first problem of a row wins
        if mask.any():
            column[mask] = col
            reason[mask] = why(np.flatnonzero(mask)) if callable(why) else why

    ds_txt, y_txt = _RowText(ds_raw), _RowText(y_raw)
    flag(bad_fields, "row", field_reasons)  # before anything else: its cells mean nothing
    flag(uid_bad, "unique_id", "unique_id is missing")
    flag(kind == "", "ds", lambda i: [f"ds is not a timestamp or integer step: {t!r}" for t in ds_txt[i]])
    for problem in sorted(set(y_problem) - {""}):
        flag(y_problem == problem, "y", lambda i, p=problem: [f"y is {p}: {t!r}" for t in y_txt[i]])

    # One kind of ds per store (the column gets one dtype): the majority kind wins. A series whose
    # timestamps mix a UTC offset with none is refused whole: its rows cannot be put on one clock.
    def count(*kinds: str) -> int:
        return int((np.isin(kind, kinds) & (reason == "")).sum())

    ds_kind = "integer" if count("int") > count("ts", "tz") else "timestamp"
    if ds_kind == "integer":
        flag(np.isin(kind, ("ts", "tz")), "ds", f"ds is a timestamp but {name} uses integer steps")
        timezone = None
    else:
        flag(kind == "int", "ds", f"ds is an integer step but {name} uses timestamps")
        live = pd.DataFrame({"uid": uid, "tz": kind == "tz"})[(reason == "") & np.isin(kind, ("ts", "tz"))]
        mixed = live.groupby("uid")["tz"].nunique()
        mixed = set(mixed[mixed > 1].index)
        if mixed:
            example = {u: offsets[i] for i, u in zip(live.index, live["uid"]) if u in mixed and offsets[i]}
            flag(
                uid.isin(mixed).to_numpy(),
                "ds",
                lambda i: [
                    f"series {uid[j]!r} mixes timestamps with a UTC offset ({example[uid[j]]}) and without one: "
                    "refused (write every timestamp of a series one way)"
                    for j in i
                ],
            )

    ds = pd.Series(stamps if ds_kind == "timestamp" else steps)
    ok = reason == ""
    keyed = pd.DataFrame({"uid": uid, "ds": ds, "pos": np.arange(n)})[ok]
    dup = keyed.duplicated(["uid", "ds"], keep="first").to_numpy()
    if dup.any():  # "first at row 3" (or "at <file> row 3" in a folder source); text only for these rows
        first = keyed.groupby(["uid", "ds"], sort=False)["pos"].transform("first").to_numpy()
        idx = np.flatnonzero(ok)[dup]
        column[idx] = "ds"
        reason[idx] = [
            f"duplicate (unique_id, ds) = ({uid[j]}, {t}); first at "
            + (f"row {rows[p]}" if files[p] == name else f"{files[p]} row {rows[p]}")
            for j, t, p in zip(idx, ds_txt[idx], first[dup])
        ]

    ok = reason == ""
    n_off = 0
    if ds_kind == "timestamp":
        # every readable stamp of a named series, its value good or not: a quarantined value is no missing date
        read = np.isin(kind, ["ts", "tz"]) & ~uid_bad
        good_stamps = pd.DataFrame({"unique_id": uid[read], "ds": ds[read]}).drop_duplicates()
        freq = freq or infer_freq(good_stamps.sort_values(["unique_id", "ds"], kind="stable"))
        if check_grid and freq is None and (good_stamps.groupby("unique_id").size() >= 3).any():
            # dates that no frequency fits were stored as "integer steps": onboarding then served a champion
            # that no forecast could use (its next dates unknown). Refused here, with what would fit.
            raise IngestError(
                f"{name}: no frequency fits the dates in ds (first {pd.Timestamp(good_stamps['ds'].min())}): "
                "the steps of a series must be one pandas frequency (hourly, daily, business days, weekly on "
                "one weekday, month or quarter starts or ends, ...), a few missing steps at most. Monthly dates "
                "on another day than the first or last of the month: write them as month starts or ends"
                + (
                    "; daily dates with UTC offsets that change with daylight saving move off midnight in UTC: "
                    "write them without offsets"
                    if timezone
                    else ""
                )
            )
        if check_grid and freq:
            # a series whose spacing changes (daily, then hourly) is quarantined from the first
            # timestamp off the domain's grid on: what follows is no longer the series ingested. Where
            # most of what follows is back on the grid, only the stray stamps are set aside
            live = pd.DataFrame({"uid": uid[ok], "ds": ds[ok]})
            live["off"] = off_grid(live["uid"], live["ds"], freq).to_numpy()
            change = live[live["off"]].groupby("uid")["ds"].min()
            past = np.zeros(n, dtype=bool)
            stray = np.zeros(n, dtype=bool)
            if len(change):
                since = live["uid"].map(change)
                after = (since.notna() & (live["ds"] >= since.fillna(live["ds"].max()))).to_numpy(dtype=bool)
                share = live[after].groupby("uid")["off"].mean()  # off-grid share of each series from its change on
                changed = live["uid"].map(share).fillna(0).to_numpy() >= MIN_CHANGED_SHARE
                past[ok] = after & changed
                stray[ok] = live["off"].to_numpy(dtype=bool) & ~changed
            n_off = int(past.sum() + stray.sum())
            flag(
                past,
                "ds",
                lambda i: [
                    f"series {uid[j]!r} leaves the {freq} grid at {change[uid[j]]} (its spacing "
                    "changes): quarantined from there on"
                    for j in i
                ],
            )
            flag(
                stray,
                "ds",
                lambda i: [f"{t} is off the {freq} grid of series {uid[j]!r}" for j, t in zip(i, ds_txt[i])],
            )
    else:
        freq = None
        irregular = _irregular_steps(uid[ok], ds[ok])
        if irregular:
            flag(
                ok & uid.isin(irregular).to_numpy(),
                "ds",
                lambda i: [
                    f"series {uid[j]!r} has unevenly spaced integer steps ({irregular[uid[j]]}): steps must be "
                    "evenly spaced (renumber them 0, 1, 2, ... or give dates)"
                    for j in i
                ],
            )

    # magnitudes the float32 models cannot hold: the series is set aside whole, not clipped
    ok = reason == ""
    huge = ok & (np.abs(np.nan_to_num(y)) > MAX_ABS)
    if huge.any():
        peak = pd.Series(np.abs(y[huge]), index=uid[huge].to_numpy()).groupby(level=0).max()
        flag(
            ok & uid.isin(peak.index).to_numpy(),
            "y",
            lambda i: [
                f"series {uid[j]!r} reaches {peak[uid[j]]:.3g}, beyond the {MAX_ABS:.0e} tsfm's models take: set aside "
                "(rescale it, e.g. to millions)"
                for j in i
            ],
        )

    ok = reason == ""
    counts = pd.Series(uid[ok]).value_counts()
    h = counts.index.map(lambda u: (series_horizons or {}).get(u, horizon)).to_numpy(dtype=np.int64)
    need = pd.Series(2 * h + min_train, index=counts.index)
    short = counts[counts < need]
    if len(short):
        mask = ok & uid.isin(short.index).to_numpy()
        flag(
            mask,
            "unique_id",
            lambda i: [
                f"series {uid[j]!r} has {short[uid[j]]} good points, needs >= {need[uid[j]]} (2*horizon + min_train)"
                for j in i
            ],
        )

    ok = reason == ""
    good = pd.DataFrame({"unique_id": uid[ok].astype(str), "ds": ds[ok], "y": y[ok]})
    good = good.sort_values(["unique_id", "ds"], kind="stable").reset_index(drop=True)
    bad = ~ok
    quarantine = pd.DataFrame(
        {
            "file": files[bad].astype(str),
            "row": rows[bad],
            "column": column[bad].astype(str),
            "reason": reason[bad].astype(str),
            "unique_id": _RowText(uid_raw)[bad],
            "ds": ds_txt[bad],
            "y": y_txt[bad],
        },
        columns=list(QUARANTINE_COLUMNS),
    )
    quarantine = quarantine.astype({"row": "int64"}).sort_values(["file", "row"], kind="stable").reset_index(drop=True)
    notes = tuple(
        n for n in (counted_dates_note(good["ds"]) if ds_kind == "integer" else None, extreme_values_note(good)) if n
    )
    return ValidationResult(
        good=good,
        quarantine=quarantine,
        rows_in=n,
        ds_kind=ds_kind,
        timezone=timezone,
        freq=freq,
        off_grid=n_off,
        notes=notes,
    )
