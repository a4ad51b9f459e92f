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

import pandas as pd
from pandas.tseries import offsets
from pandas.tseries.frequencies import to_offset

DAY_NS = 86_400 * 10**9
MAX_SUBDAILY_SEASON = 1440  # a minute-level day; finer data has no useful daily season here


def infer_freq(good: pd.DataFrame, max_series: int = 20) -> str | None:
    """Most common pandas frequency among the first series; None for integer steps."""
    if not pd.api.types.is_datetime64_any_dtype(good["ds"].dtype):
        return None
    found: Counter[str] = Counter()
    for _, g in islice(good.groupby("unique_id", sort=False), max_series):
        if len(g) >= 3:
            f = pd.infer_freq(pd.DatetimeIndex(g["ds"]))
            if f:
                found[f] += 1
    return found.most_common(1)[0][0] if found else None


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
    series' first timestamp (its time of day for calendar frequencies, its phase for fixed steps)."""
    off = offset_of(freq)
    bad = pd.Series(False, index=ds.index)
    if off is None or not pd.api.types.is_datetime64_any_dtype(ds.dtype) or len(ds) == 0:
        return bad
    first = ds.groupby(uid, sort=False).transform("min")
    if isinstance(off, offsets.Tick):
        return ((ds - first).dt.total_seconds() * 1e9).round().astype("int64") % off.nanos != 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "non-vectorized DateOffset" performance notes
        try:
            rolled = (ds - off) + off
        except (TypeError, ValueError, OverflowError):
            return bad
    same_time = (ds - ds.dt.normalize()) == (first - first.dt.normalize())
    return (rolled != ds) | ~same_time
