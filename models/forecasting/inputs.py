"""Ragged per-series arrays <-> fixed-width batches (NaN = missing or no target)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from jaxtyping import Float

from models.forecasting.outliers import without_isolated_extremes


def left_pad(contexts: Sequence[np.ndarray], length: int) -> Float[np.ndarray, "n length"]:
    """The last ``length`` points of each series, NaN-padded on the left, float32: what every neural model
    reads, so an isolated absurd point (``models.forecasting.outliers``) is missing here."""
    out = np.full((len(contexts), length), np.nan, dtype=np.float32)
    for i, x in enumerate(contexts):
        x = np.asarray(x, dtype=np.float32).reshape(-1)[-length:]
        if x.size:
            out[i, length - x.size :] = x
    return without_isolated_extremes(out)


def pad_right(parts: Sequence[np.ndarray], horizon: int) -> Float[np.ndarray, "n horizon"]:
    """Each row NaN past its own length (a series whose horizon is shorter), float32."""
    out = np.full((len(parts), horizon), np.nan, np.float32)
    for i, x in enumerate(parts):
        out[i, : len(x)] = x
    return out


def strip_left_nan(x: np.ndarray) -> np.ndarray:
    """Drop the leading NaN padding; interior NaNs (missing values) stay."""
    valid = np.flatnonzero(~np.isnan(x))
    return x[valid[0] :] if valid.size else x[:0]
