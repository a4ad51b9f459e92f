"""Sliding (context, future) windows over per-series arrays.

Callers pass train parts only: a window is produced only when its context and
its future both lie inside the array given, which is the TS-Memory leakage rule
for datastores.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from jaxtyping import Float, Int


@dataclass(frozen=True)
class Windows:
    context: Float[np.ndarray, "n context"]  # NaN-left-padded when the series starts inside it
    future: Float[np.ndarray, "n horizon"]  # NaN-right-padded past a shorter own horizon
    series_index: Int[np.ndarray, " n"]  # position of the series in the list given
    end: Int[np.ndarray, " n"]  # index (in its series) of the first future point

    def __len__(self) -> int:
        return int(self.context.shape[0])


def sliding_windows(
    series: list[np.ndarray],
    context_length: int,
    horizon: int,
    stride: int = 1,
    min_context: int | None = None,
    min_future: list[int] | np.ndarray | None = None,
) -> Windows:
    """All windows with at least ``min_context`` real context points (default: a full context).

    Windows are anchored at the end of each series (the most recent window is always
    kept, then every ``stride``-th one going back). A window whose future has a
    missing value, or whose context is all missing, is skipped: it could not be a
    retrieval target.

    ``min_future`` (one per series, <= horizon): series whose own horizon is shorter
    than ``horizon`` (M3 yearly 6 in a domain forecasting 18) also give windows whose
    future holds only the ``min_future[i]`` .. ``horizon`` points left in the array,
    NaN-padded on the right. Every value still lies inside the array given.
    """
    min_context = context_length if min_context is None else min_context
    if not 1 <= min_context <= context_length:
        raise ValueError(f"min_context must be in [1, context_length={context_length}], got {min_context}")
    if horizon < 1 or stride < 1:
        raise ValueError("horizon and stride must be >= 1")

    if min_future is not None:
        min_future = np.asarray(min_future, dtype=np.int64)
        if len(min_future) != len(series) or (min_future < 1).any() or (min_future > horizon).any():
            raise ValueError(f"min_future needs one value in [1, horizon={horizon}] per series")
    ctx, fut, sidx, ends = [], [], [], []
    for i, x in enumerate(series):
        x = np.asarray(x, dtype=np.float32)
        need = horizon if min_future is None else int(min_future[i])
        last_end = x.size - need
        if last_end < min_context:
            continue
        e = np.arange(last_end, min_context - 1, -stride)[::-1]  # [n] first future index
        # padded[j + context_length] == x[j]; the context of end e is padded[e : e + C]
        padded = np.concatenate([np.full(context_length, np.nan, np.float32), x])
        c = np.lib.stride_tricks.sliding_window_view(padded, context_length)[e]  # [n, C]
        right = np.concatenate([x, np.full(horizon - need, np.nan, np.float32)])  # NaN past the end
        f = np.lib.stride_tricks.sliding_window_view(right, horizon)[e]  # [n, H]
        # the first ``need`` future points must all be known; later ones may run past the end
        inside = np.arange(horizon)[None, :] < np.minimum(x.size - e, horizon)[:, None]
        keep = np.isfinite(f[:, :need]).all(axis=1) & ~(inside & ~np.isfinite(f)).any(axis=1)
        keep &= ~np.isnan(c).all(axis=1)
        ctx.append(c[keep])
        fut.append(f[keep])
        sidx.append(np.full(int(keep.sum()), i, np.int64))
        ends.append(e[keep].astype(np.int64))

    if not ctx:
        return Windows(
            np.zeros((0, context_length), np.float32),
            np.zeros((0, horizon), np.float32),
            np.zeros(0, np.int64),
            np.zeros(0, np.int64),
        )
    return Windows(
        np.ascontiguousarray(np.concatenate(ctx), dtype=np.float32),
        np.ascontiguousarray(np.concatenate(fut), dtype=np.float32),
        np.concatenate(sidx),
        np.concatenate(ends),
    )


def overlapping_rows(win: Windows, horizon: int) -> Int[np.ndarray, "n e"]:
    """Datastore rows a training query may not retrieve: its own window and every window of
    the same series whose future overlaps its future (-1 padded).

    Dropping only the own row (the reference) lets a window shifted by one step hand
    back almost the query's own future, so the teacher looks far better on training
    queries than it can on validation and the adapter learns to over-trust it.
    """
    n = len(win)
    rows = np.arange(n)
    out = [rows]
    for shift in range(1, horizon):
        for sign in (-1, 1):
            other = rows + sign * shift
            ok = (other >= 0) & (other < n)
            other = np.where(ok, other, 0)
            same = ok & (win.series_index[other] == win.series_index) & (np.abs(win.end[other] - win.end) < horizon)
            out.append(np.where(same, other, -1))
    return np.stack(out, axis=1)
