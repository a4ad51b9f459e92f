"""Series too short for a neural answer: fewer than ``MIN_NEURAL_CONTEXT`` observed points.

A backbone scales its input by the context's own mean and spread; with one or two points there
is no spread to scale by, and its quantiles came back at many times the level (``[100, 100]``
gave a 0.9 quantile of 4,879). Those series get the naive answer instead: the last observed
value, with quantiles spread by the context's own range (none for a single point), so no
quantile leaves [min - range, max + range]. Every neural forecaster routes its input through
``guarded``; the server names the fallback from ``short_rows``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from statistics import NormalDist

import numpy as np
from jaxtyping import Bool, Float

from models.forecasting.types import QuantileForecast
from models.metrics import QUANTILES

MIN_NEURAL_CONTEXT = 3  # observed points; three equal points already forecast a flat line
FALLBACK = "naive"  # what answers a series shorter than that
_Z = np.array([NormalDist().inv_cdf(q) for q in QUANTILES])  # standard normal quantiles at the served levels


def short_rows(contexts: Sequence[np.ndarray]) -> Bool[np.ndarray, " n"]:
    """Series with fewer than MIN_NEURAL_CONTEXT observed (finite) points."""
    return np.array([np.isfinite(np.asarray(x, np.float64)).sum() < MIN_NEURAL_CONTEXT for x in contexts], bool)


def naive_quantiles(contexts: Sequence[np.ndarray], horizon: int) -> Float[np.ndarray, "n horizon quantile"]:
    """The last observed value at every step, quantiles spread by the context's range / 2.56 (so
    the 0.9 quantile sits half a range above it); 0 for a series with no observed point."""
    out = np.zeros((len(contexts), horizon, len(QUANTILES)), np.float32)
    for i, x in enumerate(contexts):
        seen = np.asarray(x, np.float64)
        seen = seen[np.isfinite(seen)]
        if seen.size:
            spread = (seen.max() - seen.min()) / (2 * _Z[-1])
            out[i] = (seen[-1] + _Z * spread).astype(np.float32)
    return out


def guarded(
    predict: Callable[[Sequence[np.ndarray], int], QuantileForecast], contexts: Sequence[np.ndarray], horizon: int
) -> QuantileForecast:
    """``predict`` for the series long enough for it, the naive answer for the others, in order."""
    short = short_rows(contexts)
    if not short.any():
        return predict(contexts, horizon)
    out = naive_quantiles([c for c, s in zip(contexts, short) if s], horizon)
    full = np.zeros((len(contexts), horizon, len(QUANTILES)), np.float32)
    full[short] = out
    if (~short).any():
        full[~short] = predict([c for c, s in zip(contexts, short) if not s], horizon).quantiles
    return QuantileForecast(full)
