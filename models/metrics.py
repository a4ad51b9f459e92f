"""Every forecast metric of tsfm, once: pinball (the training loss, torch), scaled CRPS,
MASE and sMAPE (evaluation, numpy). Training, onboarding, evaluation and reports all use these.

Forecasts are quantiles at ``QUANTILES`` (0.1 .. 0.9; the median, index ``MEDIAN``, is
the point forecast). A NaN target means "no target" (a missing value, or a step past a
series' own horizon): it is skipped, never counted as an error.

Names: ``scaled_crps`` is per series (an array, averaged over series as the M competitions
do); ``scaled_crps_pooled`` is one number for a whole set (GIFT-Eval's weighted quantile loss).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
from jaxtyping import Bool, Float
from numpy.typing import ArrayLike

if TYPE_CHECKING:  # torch is imported by the training losses only: evaluation and reports stay light
    from torch import Tensor

QUANTILES: tuple[float, ...] = tuple(round(0.1 * i, 1) for i in range(1, 10))
MEDIAN = len(QUANTILES) // 2  # index of the 0.5 quantile

Quantiles = Float[np.ndarray, "n horizon quantile"]
Truth = Float[np.ndarray, "n horizon"]


# ------------------------------------------------------------------ pinball (torch, training)
def pinball(
    q: Float[Tensor, "*batch quantile"], y: Float[Tensor, "*batch"], levels: Sequence[float] = QUANTILES
) -> Float[Tensor, "*batch"]:
    """Pinball loss averaged over the quantile levels, per element (``y`` finite)."""
    import torch

    if q.shape[-1] != len(levels):
        raise ValueError(f"pred has {q.shape[-1]} quantiles, expected {len(levels)}")
    tau = torch.as_tensor(levels, dtype=q.dtype, device=q.device)
    diff = y.unsqueeze(-1).to(q.dtype) - q
    return torch.maximum(tau * diff, (tau - 1.0) * diff).mean(dim=-1)


def pinball_loss(
    pred: Float[Tensor, "*batch quantile"], target: Float[Tensor, "*batch"], mask: Bool[Tensor, "*batch"] | None = None
) -> Float[Tensor, ""]:
    """Mean pinball over the elements that count (``mask``); 0 when none does, so an
    all-missing batch adds no gradient."""
    import torch

    loss = pinball(pred, target)
    if mask is None:
        return loss.mean()
    weight = mask.to(loss.dtype).expand_as(loss)
    # where() keeps NaN/inf at masked-out targets out of the sum
    return torch.where(weight > 0, loss, 0.0).sum() / weight.sum().clamp_min(1.0)


def pinball_per_sample(
    q: Float[Tensor, "batch horizon quantile"], y: Float[Tensor, "batch horizon"]
) -> Float[Tensor, " batch"]:
    """Mean pinball of each sample over its known steps (NaN in ``y`` = no target)."""
    import torch

    known = ~torch.isnan(y)
    loss = pinball(q, torch.where(known, y, 0.0))
    return (loss * known).sum(-1) / known.sum(-1).clamp(min=1)


# ------------------------------------------------------------------ evaluation (numpy)
def _as_2d(y: ArrayLike) -> np.ndarray:
    y = np.asarray(y, dtype=np.float64)
    if y.ndim != 2:
        raise ValueError(f"expected [N, H], got shape {y.shape}")
    return y


def _mean_over_targets(err: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Mean over steps with a known target; a NaN forecast still gives NaN."""
    known = ~np.isnan(y)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(known, err, 0.0).sum(axis=1) / known.sum(axis=1)


def _pinball2(y: Truth, quantiles: Quantiles, levels: Any) -> Float[np.ndarray, "n horizon quantile"]:
    """2 * pinball per level; 0 where there is no target, NaN where the forecast is NaN."""
    y, q = _as_2d(y), np.asarray(quantiles, dtype=np.float64)
    levels = np.asarray(levels, dtype=np.float64)
    if q.shape[:2] != y.shape or q.shape[2] != len(levels):
        raise ValueError(f"quantiles {q.shape} do not match y {y.shape} and {len(levels)} levels")
    diff = y[..., None] - q
    loss = 2.0 * np.maximum(levels * diff, (levels - 1.0) * diff)
    return np.where(np.isnan(y)[..., None], 0.0, loss)


def scaled_crps(y: Truth, quantiles: Quantiles, levels: Sequence[float] = QUANTILES) -> Float[np.ndarray, " n"]:
    """Per series: mean over levels of sum_t 2*pinball / sum_t |y|. For a point forecast
    this is sum|y - f| / sum|y|. NaN where a series' targets are all 0."""
    loss = _pinball2(y, quantiles, levels).sum(axis=1).mean(axis=1)
    denom = np.nansum(np.abs(_as_2d(y)), axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denom > 0, loss / np.where(denom > 0, denom, 1.0), np.nan)


def scaled_crps_parts(
    y: Truth, quantiles: Quantiles, levels: Sequence[float] = QUANTILES
) -> tuple[Float[np.ndarray, " n"], Float[np.ndarray, " n"]]:
    """Per series numerator and denominator of the pooled score: their sums over any set of
    series give that set's ``scaled_crps_pooled``."""
    return _pinball2(y, quantiles, levels).sum(axis=1).mean(axis=1), np.nansum(np.abs(_as_2d(y)), axis=1)


def scaled_crps_pooled(y: Truth, quantiles: Quantiles, levels: Sequence[float] = QUANTILES) -> float:
    """One number for the set (GIFT-Eval / gluonts MeanWeightedSumQuantileLoss): mean over
    levels of the sum over series and steps of 2*pinball, over sum |y|."""
    num, den = scaled_crps_parts(y, quantiles, levels)
    total = den.sum()
    return float(num.sum() / total) if total > 0 else float("nan")


def mase_scale(
    insample: Sequence[np.ndarray], season_length: int | Sequence[int] | np.ndarray
) -> Float[np.ndarray, " n"]:
    """Per-series MASE denominator: mean |x_t - x_{t-m}| over the training history.

    ``season_length``: one m, or one per series. Lag 1 when the history is shorter than
    m + 1, or when the seasonal scale is 0 (an exactly periodic history); NaN when even
    that is 0 (a constant series).
    """
    seasons = np.broadcast_to(np.asarray(season_length, dtype=np.int64), (len(insample),))
    out = np.full(len(insample), np.nan)
    for i, x in enumerate(insample):
        m = int(seasons[i])
        x = np.asarray(x, dtype=np.float64)
        for lag in (m, 1) if m > 1 else (1,):
            if len(x) <= lag:
                continue
            d = np.abs(x[lag:] - x[:-lag])
            s = np.nanmean(d) if np.isfinite(d).any() else np.nan
            if np.isfinite(s) and s > 0:
                out[i] = s
                break
    return out


def mase(
    y: Truth, point: Truth, insample: Sequence[np.ndarray], season_length: int | Sequence[int] | np.ndarray
) -> Float[np.ndarray, " n"]:
    """Mean absolute scaled error per series (NaN where the scale is undefined)."""
    y, point = _as_2d(y), _as_2d(point)
    if len(insample) != len(y):
        raise ValueError("one insample history per series is required")
    return _mean_over_targets(np.abs(y - point), y) / mase_scale(insample, season_length)


def smape(y: Truth, point: Truth) -> Float[np.ndarray, " n"]:
    """M-competition sMAPE per series in percent; a step where y = f = 0 counts 0."""
    y, point = _as_2d(y), _as_2d(point)
    num = 200.0 * np.abs(y - point)
    den = np.abs(y) + np.abs(point)
    with np.errstate(invalid="ignore", divide="ignore"):
        s = np.where(den == 0, 0.0, num / np.where(den == 0, 1.0, den))
        return _mean_over_targets(s, y)


def coverage(y: Truth, quantiles: Quantiles) -> Float[np.ndarray, " n"]:
    """Per series: share of known targets inside [lowest, highest] quantile (10-90%, nominally 0.8)."""
    y, q = _as_2d(y), np.asarray(quantiles, dtype=np.float64)
    inside = ((y >= q[..., 0]) & (y <= q[..., -1])).astype(np.float64)
    return _mean_over_targets(inside, y)


def per_series_metrics(
    quantiles: Quantiles, y: Truth, insample: Sequence[np.ndarray], season_length: int | Sequence[int] | np.ndarray
) -> dict[str, np.ndarray]:
    """MASE / sCRPS / sMAPE and 10-90% coverage per series for one model; the median is the point forecast."""
    point = np.asarray(quantiles)[..., MEDIAN]
    return {
        "MASE": mase(y, point, insample, season_length),
        "sCRPS": scaled_crps(y, quantiles),
        "sMAPE": smape(y, point),
        "coverage": coverage(y, quantiles),
    }


def nan_mean(values: ArrayLike) -> float:
    """The mean of the finite values; NaN (without numpy's warning) when there is none."""
    v = np.asarray(values, float)
    ok = np.isfinite(v)
    return float(v[ok].mean()) if ok.any() else float("nan")


def geometric_mean_ratio(values: np.ndarray, baseline: np.ndarray) -> float:
    """Geometric mean over series of values / baseline; pairs with a zero or non-finite side
    are skipped (a log of 0 is undefined)."""
    values, baseline = np.asarray(values, float), np.asarray(baseline, float)
    ok = np.isfinite(values) & np.isfinite(baseline) & (baseline > 0) & (values > 0)
    if not ok.any():
        return float("nan")
    return float(np.exp(np.mean(np.log(values[ok] / baseline[ok]))))
