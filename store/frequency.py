"""A domain's frequency and season: inferred from its timestamps, or given by its source.

The season is the number of steps in the data's natural cycle: a day for sub-daily data
(hourly 24, half-hourly 48), a week for daily data (7; business days 5), a year for
weekly, monthly and quarterly data (52, 12, 4), none (1) for yearly data and integer
steps. Seasonal naive, AutoETS, Theta and the MASE scale all use it.
"""

from __future__ import annotations

import re
import warnings
from collections import Counter
from itertools import islice

import numpy as np
import pandas as pd
from pandas.tseries import offsets
from pandas.tseries.frequencies import to_offset

DAY_NS = 86_400 * 10**9
MAX_SUBDAILY_SEASON = 1440  # a minute-level day; finer data has no useful daily season here


def infer_freq(good: pd.DataFrame, max_series: int = 20) -> str | None:
    """Most common pandas frequency among the first series; None for integer steps, or for dates no
    frequency fits. A series with a missing step (a holiday, a lost hour, a DST change) has no pandas
    frequency of its own: then the frequency most stretches of consecutive stamps show is taken, where
    nearly every stamp lies on its grid and few of the grid's steps are missing (``_covers``)."""
    if not pd.api.types.is_datetime64_any_dtype(good["ds"].dtype):
        return None
    found: Counter[str] = Counter()
    series = [pd.DatetimeIndex(g["ds"]) for _, g in islice(good.groupby("unique_id", sort=False), max_series)]
    for stamps in series:
        if len(stamps) >= 3:
            f = _pandas_freq(stamps)
            if f:
                found[f] += 1
    if found:
        return found.most_common(1)[0][0]
    for stamps in series:  # every series has a gap: stretches of consecutive stamps, a few dozen per series
        width = min(STRETCH, max(3, len(stamps) // 2))
        starts = range(0, max(len(stamps) - width + 1, 0))
        for start in list(starts)[:: max(1, len(starts) // MAX_STRETCHES)]:
            f = _pandas_freq(stamps[start : start + width])
            if f:
                found[f] += 1
    candidates = [f for f, _ in found.most_common(2)]
    diffs = np.concatenate([np.diff(stamps.as_unit("ns").asi8) for stamps in series] or [np.zeros(0, np.int64)])
    positive = diffs[diffs > 0]
    if len(positive) and positive.min() <= DAY_NS:  # short sub-daily or daily series: their smallest step
        candidates.append(to_offset(pd.Timedelta(int(positive.min()), unit="ns")).freqstr)
    return next((f for f in candidates if _covers(series, f)), None)


def _pandas_freq(stamps: pd.DatetimeIndex) -> str | None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pandas 3 announces that infer_freq will return an offset
        return pd.infer_freq(stamps)


STRETCH = 8  # consecutive stamps that show a frequency (a business week's weekend included)
MAX_STRETCHES = 50  # per series
MIN_ON_GRID, MIN_PRESENT, FEW_MISSING = 0.95, 0.8, 2  # a frequency with gaps: stamps on its grid; steps present


def _covers(series: list[pd.DatetimeIndex], freq: str) -> bool:
    """Nearly every stamp on ``freq``'s grid, and most of the grid's steps between first and last present
    (or only a few missing per series)."""
    off = offset_of(freq)
    if off is None:
        return False
    on = total = expected = 0
    counted = 0
    for stamps in series:
        if len(stamps) < 3:
            continue
        grid = pd.date_range(stamps[0], stamps[-1], freq=off)
        on, total, expected, counted = (
            on + int(stamps.isin(grid).sum()),
            total + len(stamps),
            expected + len(grid),
            counted + 1,
        )
    missing = expected - on
    return (
        total > 0
        and on / total >= MIN_ON_GRID
        and (on / max(expected, 1) >= MIN_PRESENT or missing <= FEW_MISSING * counted)
    )


def offset_of(freq: str | None):
    """The pandas offset of a frequency string (older aliases such as 'M' or 'H' accepted); None if unknown."""
    if not freq:
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # deprecated aliases ("H", "T") still parse
        n, base, anchor = re.fullmatch(r"(\d*)([^-]*)(.*)", freq).groups()  # type: ignore[union-attr]  # always matches
        old = {"M": "ME", "Q": "QE", "Y": "YE", "A": "YE", "BM": "BME", "BQ": "BQE", "BA": "BYE", "BY": "BYE"}
        old |= {"H": "h", "BH": "bh", "T": "min", "S": "s", "L": "ms", "U": "us", "N": "ns"}
        for text in (freq, n + old.get(base, base) + anchor):
            try:
                return to_offset(text)
            except ValueError:
                continue
    return None


def season_from_freq(freq: str | None) -> int:
    """Steps per natural cycle of data at ``freq`` (see the module docstring); 1 when unknown."""
    off = offset_of(freq)
    if off is None:
        return 1
    n = max(int(getattr(off, "n", 1)), 1)
    if isinstance(off, offsets.Tick) and off.nanos < DAY_NS:
        per_day = round(DAY_NS / off.nanos)
        return per_day if per_day <= MAX_SUBDAILY_SEASON else 1
    if isinstance(off, offsets.BusinessDay):
        return 5 if n == 1 else 1
    if isinstance(off, offsets.Day):
        return 7 if n == 1 else (52 if n == 7 else 1)
    if isinstance(off, offsets.Week):
        return 52 if n == 1 else 1
    if isinstance(off, offsets.SemiMonthBegin | offsets.SemiMonthEnd):
        return 24 if n == 1 else 1
    if isinstance(off, offsets.MonthBegin | offsets.MonthEnd | offsets.BusinessMonthBegin | offsets.BusinessMonthEnd):
        return max(1, 12 // n)
    if isinstance(off, offsets.QuarterBegin | offsets.QuarterEnd | offsets.BQuarterBegin | offsets.BQuarterEnd):
        return max(1, 4 // n)
    return 1


def daily_or_finer(freq: str | None) -> bool:
    """Data of a day or less per step (daily, business-day, hourly, ...): what the shipped long-context
    backbone was trained for. Integer steps and unknown frequencies are not."""
    off = offset_of(freq)
    if isinstance(off, offsets.Tick):
        return off.nanos <= DAY_NS
    return isinstance(off, offsets.BusinessDay | offsets.Day) and int(getattr(off, "n", 1)) == 1


def describe_season(season: int, freq: str | None, source: str) -> str:
    """For reports: ``12 (monthly data, MS)``."""
    where = {
        "frequency": f"from the frequency {freq}",
        "source": "given by the source",
        "user": "set by the user",
        "default": "no frequency known",
    }.get(source, source)
    return f"{season} ({where})"


def off_grid(uid: pd.Series, ds: pd.Series, freq: str | None) -> pd.Series:
    """True for timestamps off the ``freq`` grid of their own series: a daily domain's series with
    hourly rows after some date, a monthly one with a mid-month row. The grid is anchored on each
    series' first timestamp (its time of day for calendar frequencies, its phase for fixed steps and
    its weekday for weekly data)."""
    off = offset_of(freq)
    bad = pd.Series(False, index=ds.index)
    if off is None or not pd.api.types.is_datetime64_any_dtype(ds.dtype) or len(ds) == 0:
        return bad
    first = ds.groupby(uid, sort=False).transform("min")
    step = off.nanos if isinstance(off, offsets.Tick) else None
    if isinstance(off, offsets.Week):  # weekly: each series on its own weekday (one on Sundays, one on Mondays)
        step = 7 * max(int(off.n), 1) * DAY_NS
    if step is not None:
        return ((ds - first).dt.total_seconds() * 1e9).round().astype("int64") % step != 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "non-vectorized DateOffset" performance notes
        try:
            rolled = (ds - off) + off
        except (TypeError, ValueError, OverflowError):
            return bad
    same_time = (ds - ds.dt.normalize()) == (first - first.dt.normalize())
    return (rolled != ds) | ~same_time
