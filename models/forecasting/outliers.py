"""Isolated absurd values: one point hundreds of times its series' size (a unit slip, a typo).

The backbone scales each context by its running mean and spread; one such point became the scale of
every patch after it, and a flat series near 100 was forecast from -145 to 157. The neural forecasters
read such a point as missing (the backbone handles missing points natively). Only isolated points
qualify: a level shift (several points at the new level) and the last observed point are kept, so a
real change is never hidden from the model. Ingest names the series where this happens
(``store.validate.extreme_values_note``); the stored data stay as written.
"""

from __future__ import annotations

import warnings

import numpy as np
from jaxtyping import Bool, Float

EXTREME = 500.0  # times a series' typical size (median non-zero magnitude) and spread (median absolute deviation)


def typical_size(x: Float[np.ndarray, "n t"]) -> Float[np.ndarray, "n 1"]:
    """Each row's typical size: the median of its non-zero magnitudes (NaN where it has none)."""
    mag = np.abs(x)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a row with no non-zero value
        return np.nanmedian(np.where(mag > 0, mag, np.nan), axis=1, keepdims=True)


def extreme(x: Float[np.ndarray, "n t"]) -> Bool[np.ndarray, "n t"]:
    """Observed values over EXTREME times their row's typical size and, where it is not zero, its spread."""
    far = np.zeros(x.shape, bool)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # rows with nothing observed (or no non-zero value)
        nonzero = np.where(np.abs(x) > 0, np.abs(x), np.nan)
        # a row whose largest magnitude is within EXTREME of its smallest non-zero one has no candidate
        # (its typical size lies between the two): the medians below only for the others
        rows = np.flatnonzero(np.nanmax(nonzero, axis=1) > EXTREME * np.nanmin(nonzero, axis=1))
        if not len(rows):
            return far
        x = x[rows]
        mag = np.abs(x)
        typical = typical_size(x)
        median = np.nanmedian(x, axis=1, keepdims=True)
        spread = np.nanmedian(np.abs(x - median), axis=1, keepdims=True)
        with np.errstate(invalid="ignore"):
            hit = (mag > EXTREME * typical) & ((spread == 0) | (np.abs(x - median) > EXTREME * spread))
    far[rows] = hit & np.isfinite(x)
    return far


def isolated_extremes(x: Float[np.ndarray, "n t"]) -> Bool[np.ndarray, "n t"]:
    """``extreme`` points whose neighbours are not extreme, the last observed point of each row excepted."""
    far = extreme(x)
    if not far.any():
        return far
    before = np.zeros_like(far)
    before[:, 1:] = far[:, :-1]
    after = np.zeros_like(far)
    after[:, :-1] = far[:, 1:]
    observed = np.isfinite(x)
    last = observed.shape[1] - 1 - np.argmax(observed[:, ::-1], axis=1)  # index of each row's last observed point
    is_last = np.zeros_like(far)
    is_last[np.arange(len(x)), last] = observed.any(axis=1)
    return far & ~before & ~after & ~is_last


def without_isolated_extremes(x: Float[np.ndarray, "n t"]) -> Float[np.ndarray, "n t"]:
    """``x`` with its isolated extreme points set to NaN (missing); the same array when there are none."""
    mask = isolated_extremes(x)
    if not mask.any():
        return x
    out = x.copy()
    out[mask] = np.nan
    return out
