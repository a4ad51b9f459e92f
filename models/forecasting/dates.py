"""Numeric dates as written (01/02/2019): which order, day or month first, a column uses. One rule for
ingest (``store.validate``) and the server (``models.forecasting.protocol``), pure pandas.

The values decide: a first number above 12 is a day, a second one above 12 is a day. Where every
value fits both orders, the order whose dates fall on a regular calendar wins; a column regular both
ways (or neither), or one mixing the orders, is ``AmbiguousDates``."""

from __future__ import annotations

import re
import warnings

import pandas as pd

NUMERIC_DATE = re.compile(r"^(\d{1,2})([/.\-])(\d{1,2})\2(\d{4}|\d{2})(?:[ T].*)?$")


class AmbiguousDates(ValueError):
    """Numeric dates whose order cannot be told: ``mixed`` when some values need each order."""

    def __init__(self, example: str, sep: str, mixed: bool) -> None:
        super().__init__(f"{'mixed' if mixed else 'ambiguous'} day and month order, e.g. {example!r}")
        self.example, self.sep, self.mixed = example, sep, mixed


def day_first(text: pd.Series) -> bool | None:
    """Whether the column's numeric dates put the day first; None where fewer than half its values
    are numeric dates (ISO dates, month names, ...)."""
    parts = text.str.extract(NUMERIC_DATE)
    found = parts[0].notna()
    if found.sum() < max(1, 0.5 * len(text)):
        return None
    a, b = parts.loc[found, 0].astype(int), parts.loc[found, 2].astype(int)
    day_first_ok, month_first_ok = bool((b <= 12).all() and (a <= 31).all()), bool((a <= 12).all() and (b <= 31).all())
    example, sep = str(text[found].iloc[0]), str(parts.loc[found, 1].iloc[0])
    if day_first_ok != month_first_ok:
        return day_first_ok
    if not day_first_ok:
        raise AmbiguousDates(example, sep, mixed=True)
    regular = {order: _regular(_read(text[found], order)) for order in (True, False)}
    if regular[True] != regular[False]:
        return regular[True]
    raise AmbiguousDates(example, sep, mixed=False)


def numeric_format(text: pd.Series, dayfirst: bool) -> str:
    """The strftime format of a column of numeric dates (``NUMERIC_DATE``), from its first value:
    separator and year width; values with a time of day (or written otherwise) are left to the
    caller's mixed-format retry."""
    first = text.str.extract(NUMERIC_DATE).dropna().iloc[0]
    sep, year = first[1], "%Y" if len(first[3]) == 4 else "%y"
    return f"%d{sep}%m{sep}{year}" if dayfirst else f"%m{sep}%d{sep}{year}"


def _read(text: pd.Series, dayfirst: bool) -> pd.Series:
    """Numeric dates in one order; with their time of day where they have one (01-02-2024 13:00), so that
    hourly data spanning a few days are judged by their hours."""
    stamps = pd.to_datetime(text, errors="coerce", format=numeric_format(text, dayfirst))
    if stamps.isna().any():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "parsing dates in %d/%m/%Y format when dayfirst=False" chatter
            stamps = stamps.fillna(pd.to_datetime(text, errors="coerce", format="mixed", dayfirst=dayfirst))
    return stamps


def _regular(stamps: pd.Series) -> bool:
    """The distinct stamps lie on one pandas frequency (gaps allowed: most steps are that frequency)."""
    unique = pd.DatetimeIndex(stamps.dropna().unique()).sort_values()
    if len(unique) < 3:
        return False
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pandas 3 announces that infer_freq will return an offset
        if pd.infer_freq(unique) is not None:
            return True
    steps = pd.Series(unique[1:] - unique[:-1])
    step = steps.mode().iloc[0]
    if step <= pd.Timedelta(days=1):  # daily and sub-daily: one step size most of the time, few slots empty
        slots = (unique[-1] - unique[0]) / step + 1  # a month-first reading of hourly day-first data leaves a
        return bool((steps == step).mean() >= 0.8 and len(unique) >= 0.8 * slots)  # month of empty hours
    # monthly and longer: the same day of the month on (nearly) every stamp
    return bool((unique.day == pd.Series(unique.day).mode().iloc[0]).mean() >= 0.9)


def all_midnight(stamps: pd.Series) -> bool:
    """Whether every (non-missing) stamp is 00:00:00 on the clock it was written on: calendar dates, kept
    as their day wherever an offset came with them (2024-01-01T00:00+02:00 is 1 January, not the evening
    before in UTC); at ingest (``store.validate``) and in a request alike."""
    stamps = stamps.dropna()
    return bool(len(stamps)) and bool((stamps == stamps.dt.normalize()).all())


_QUARTER_YEAR_FIRST = re.compile(r"^(\d{4})\s*[-_/ ]?\s*[Qq]([1-4])$")  # 2010 Q1 (tsibble's yearquarter), 2010-Q1
_QUARTER_FIRST = re.compile(r"^[Qq]([1-4])\s*[-_/ ]?\s*(\d{4})$")  # Q1 2010, Q1-2010
_YEAR_M_MONTH = re.compile(r"^(\d{4})\s*[Mm](\d{1,2})$")  # 2020M01 (statistics offices' monthly periods)
_ISO_WEEK = re.compile(r"^(\d{4})\s*-?\s*W(\d{1,2})$", re.IGNORECASE)  # 2024-W01, 2024 W01 (tsibble's yearweek)


def period_labels(text: pd.Series) -> pd.Series | None:
    """A column written as period labels that pandas does not read: quarters as ``2010 Q1`` or ``Q1 2010``
    (quarter starts), months as ``2020M01`` (month starts), ISO weeks as ``2024-W01`` (their Mondays);
    None where any value is not one kind of label. Naive timestamps (no offset)."""
    text = text.astype(str).str.strip()
    patterns = (_QUARTER_YEAR_FIRST, _QUARTER_FIRST, _YEAR_M_MONTH, _ISO_WEEK)
    if not len(text) or not any(p.match(text.iloc[0]) for p in patterns):  # the usual case, at the cost of one value
        return None
    # (pattern, group of the year, group of the period, months per period)
    for pattern, year, period, months in (
        (_QUARTER_YEAR_FIRST, 0, 1, 3),
        (_QUARTER_FIRST, 1, 0, 3),
        (_YEAR_M_MONTH, 0, 1, 1),
    ):
        found = text.str.extract(pattern)
        if found.notna().all(axis=None):
            month = (months * found[period].astype(int) - months + 1).astype(str)
            parsed = pd.to_datetime(found[year] + "-" + month + "-01", errors="coerce", format="%Y-%m-%d")
            return parsed if parsed.notna().all() else None
    found = text.str.extract(_ISO_WEEK)
    if found.notna().all(axis=None):
        parsed = pd.to_datetime(found[0] + "-W" + found[1].str.zfill(2) + "-1", errors="coerce", format="%G-W%V-%u")
        return parsed if parsed.notna().all() else None
    return None
