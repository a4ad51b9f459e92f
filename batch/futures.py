"""The future timestamps of many series at once.

The same rule as the server's (``models.forecasting.protocol.future_index``: each series
continues its own timestamps), vectorised for the common case of a batch: a store's series share
one frequency, so the next steps are ``last + k * offset`` for the whole chunk in H numpy
operations. A series whose last step does not match that frequency takes the per-series rule.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from models.forecasting.protocol import _offset, future_index


def future_grid(
    ids: list[str], stamps: list[pd.Series], horizon: int, freq: str | None
) -> tuple[pd.Series, np.ndarray, dict[str, str]]:
    """-> (futures, N*H values in series-major order, of the stamps' dtype; ok [N]: the series that
    have them; {series: why not}). A series without a future (irregular timestamps, one point and
    no frequency) has no rows in ``futures``."""
    n = len(ids)
    ok = np.ones(n, dtype=bool)
    if n == 0:
        return pd.Series([], dtype="datetime64[ns]"), ok, {}
    steps = np.arange(1, horizon + 1)
    if pd.api.types.is_integer_dtype(stamps[0]):  # integer steps: the series' own last step (1 for one point)
        last_i = np.array([int(s.iloc[-1]) for s in stamps], dtype=np.int64)
        step = np.array([int(s.iloc[-1] - s.iloc[-2]) if len(s) > 1 else 1 for s in stamps], dtype=np.int64)
        step = np.where(step > 0, step, 1)
        return pd.Series((last_i[:, None] + step[:, None] * steps[None, :]).ravel()), ok, {}
    last = pd.Series([s.iloc[-1] for s in stamps], dtype=stamps[0].dtype)
    prev = pd.Series([s.iloc[-2] if len(s) > 1 else pd.NaT for s in stamps], dtype=stamps[0].dtype)
    last_t, prev_t = pd.DatetimeIndex(last), pd.DatetimeIndex(prev)
    tz = last_t.tz
    if tz is not None:  # calendar steps on the series' own wall clock, then back to its zone
        last_t, prev_t = last_t.tz_localize(None), prev_t.tz_localize(None)
    grid = np.empty((n, horizon), dtype=last_t.dtype)
    off = _offset(freq)
    fits = np.zeros(n, dtype=bool)
    if off is not None:
        fits = np.asarray(prev_t.isna() | (prev_t + off == last_t))
        base = last_t[fits]
        for k in steps:  # calendar offsets (month ends, quarters) are vectorised by pandas
            grid[fits, k - 1] = (base + k * off).to_numpy()
    skipped: dict[str, str] = {}
    for i in np.flatnonzero(~fits):
        try:
            future = pd.DatetimeIndex(future_index(ids[i], stamps[i], horizon, freq))
            grid[i] = (future.tz_localize(None) if future.tz is not None else future).to_numpy()
        except ValueError as e:
            ok[i] = False
            skipped[ids[i]] = str(e)
    values = pd.Series(grid[ok].ravel())
    return (values.dt.tz_localize(tz) if tz is not None else values), ok, skipped
