"""TSMixup (Chronos): a training series that is a convex combination of several windows.

Each component window is mean-scaled first (divided by the mean absolute value of its
observed context), so the components have comparable levels and none dominates by units;
the weights come from a symmetric Dirichlet. The mix stays in that scaled space (level ~1):
the model scales its inputs itself.
Missing values: a point of the mix is missing where ANY component is missing (a partial
sum would jump in level where a component starts). When that leaves no observed point in
the future part, components are dropped from the end until it does not, so an item always
has targets whenever its first component has.
"""

from __future__ import annotations

import numpy as np

DIRICHLET_ALPHA = 1.5  # Chronos' TSMixup concentration


def mean_scale(w: np.ndarray, context_length: int) -> np.ndarray:
    """w [W] (NaN = missing) / mean |observed context|; the whole window's observed points
    when the context has none (or only zeros); unscaled when all are zero."""
    for part in (w[:context_length], w):
        observed = part[~np.isnan(part)]
        scale = float(np.mean(np.abs(observed))) if observed.size else 0.0
        if scale > 0 and np.isfinite(scale):
            return w / scale
    return w.copy()


def tsmixup(windows: np.ndarray, weights: np.ndarray, context_length: int) -> np.ndarray:
    """windows [k, W] float32 (NaN = missing), weights [k] > 0 -> mix [W] float32."""
    scaled = np.stack([mean_scale(w.astype(np.float64), context_length) for w in windows])  # [k, W]
    for k in range(len(scaled), 0, -1):
        weight = weights[:k] / weights[:k].sum()
        mix = (weight[:, None] * scaled[:k]).sum(axis=0)  # NaN wherever any component is NaN
        if k == 1 or not np.isnan(mix[context_length:]).all():
            return mix.astype(np.float32)
    raise AssertionError("unreachable")
