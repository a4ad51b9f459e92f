"""Forecast metrics (DESIGN.md "Metrics" contract), pure numpy.

Shapes: truth ``y [N, H]``, quantile forecasts ``[N, H, 9]`` at levels
0.1..0.9 (median = index 4), insample = one 1-D training history per series.
NaN targets (ragged horizons) are ignored, never counted as errors.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

QUANTILES = np.round(np.arange(1, 10) / 10, 1)  # 0.1 .. 0.9
MEDIAN = 4


def _as_2d(y) -> np.ndarray:
    y = np.asarray(y, dtype=np.float64)
    if y.ndim != 2:
        raise ValueError(f"expected [N, H], got shape {y.shape}")
    return y


def _mean_over_targets(err: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Mean over steps with a known target; a NaN forecast still gives NaN."""
    known = ~np.isnan(y)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(known, err, 0.0).sum(axis=1) / known.sum(axis=1)


def mase_scale(insample: Sequence[np.ndarray], season_length: int | Sequence[int]) -> np.ndarray:
    """Per-series MASE denominator: mean |x_t - x_{t-m}| over the training history.

    ``season_length``: one m, or one per series (a domain mixing monthly and yearly
    series). Lag 1 when the history is shorter than m + 1, or when the seasonal scale
    is 0 (an exactly periodic history); NaN when even that is 0 (a constant series).
    """
    seasons = np.broadcast_to(np.asarray(season_length, dtype=np.int64), (len(insample),))
    out = np.full(len(insample), np.nan)
    for i, x in enumerate(insample):
        season_length = int(seasons[i])
        x = np.asarray(x, dtype=np.float64)
        for lag in (season_length, 1) if season_length > 1 else (1,):
            if len(x) <= lag:
                continue
            d = np.abs(x[lag:] - x[:-lag])
            s = np.nanmean(d) if np.isfinite(d).any() else np.nan
            if np.isfinite(s) and s > 0:
                out[i] = s
                break
    return out


def mase(y, point, insample: Sequence[np.ndarray], season_length: int | Sequence[int]) -> np.ndarray:
    """Mean absolute scaled error per series, ``[N]`` (NaN where the scale is undefined)."""
    y, point = _as_2d(y), _as_2d(point)
    if len(insample) != len(y):
        raise ValueError("one insample history per series is required")
    return _mean_over_targets(np.abs(y - point), y) / mase_scale(insample, season_length)


def smape(y, point) -> np.ndarray:
    """M-competition sMAPE per series in percent, ``[N]``; a step where y = f = 0 counts 0."""
    y, point = _as_2d(y), _as_2d(point)
    num = 200.0 * np.abs(y - point)
    den = np.abs(y) + np.abs(point)
    with np.errstate(invalid="ignore", divide="ignore"):
        s = np.where(den == 0, 0.0, num / np.where(den == 0, 1.0, den))
        return _mean_over_targets(s, y)


def _pinball2(y, quantiles, levels) -> np.ndarray:
    """2 * pinball loss, ``[N, H, K]``; steps without a target give 0, NaN forecasts NaN."""
    y, q = _as_2d(y), np.asarray(quantiles, dtype=np.float64)
    if q.shape[:2] != y.shape or q.shape[2] != len(levels):
        raise ValueError(f"quantiles {q.shape} do not match y {y.shape} and {len(levels)} levels")
    diff = y[..., None] - q
    loss = 2.0 * np.maximum(levels * diff, (levels - 1.0) * diff)
    return np.where(np.isnan(y)[..., None], 0.0, loss)


def scaled_crps(y, quantiles, levels=QUANTILES) -> np.ndarray:
    """Per-series scaled CRPS, ``[N]``: mean over levels of sum_t 2*pinball / sum_t |y|.

    For a degenerate forecast (all quantiles = f) this is sum|y - f| / sum|y|.
    NaN where the series' targets are all 0.
    """
    levels = np.asarray(levels, dtype=np.float64)
    loss = _pinball2(y, quantiles, levels).sum(axis=1).mean(axis=1)
    denom = np.nansum(np.abs(_as_2d(y)), axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denom > 0, loss / np.where(denom > 0, denom, 1.0), np.nan)


def scaled_crps_pooled(y, quantiles, levels=QUANTILES) -> float:
    """Dataset-level scaled CRPS as GIFT-Eval reports it (gluonts MeanWeightedSumQuantileLoss):
    mean over levels of sum over series and steps of 2*pinball, over sum |y|."""
    levels = np.asarray(levels, dtype=np.float64)
    loss = _pinball2(y, quantiles, levels).sum(axis=(0, 1)).mean()
    denom = np.nansum(np.abs(_as_2d(y)))
    return float(loss / denom) if denom > 0 else float("nan")


def scaled_crps_parts(y, quantiles, levels=QUANTILES) -> tuple[np.ndarray, np.ndarray]:
    """Per-series numerator (mean over levels of sum_t 2*pinball) and denominator (sum_t |y|),
    ``[N]`` each: their sums over any set of series give that set's pooled scaled CRPS."""
    levels = np.asarray(levels, dtype=np.float64)
    return _pinball2(y, quantiles, levels).sum(axis=1).mean(axis=1), np.nansum(np.abs(_as_2d(y)), axis=1)


def geometric_mean_ratio(values: np.ndarray, baseline: np.ndarray) -> float:
    """Geometric mean over series of values/baseline; pairs with a zero or
    non-finite side are skipped (a log of 0 is undefined)."""
    values, baseline = np.asarray(values, float), np.asarray(baseline, float)
    ok = np.isfinite(values) & np.isfinite(baseline) & (baseline > 0) & (values > 0)
    if not ok.any():
        return float("nan")
    return float(np.exp(np.mean(np.log(values[ok] / baseline[ok]))))


def per_series_metrics(quantiles, y, insample, season_length: int | Sequence[int]) -> dict[str, np.ndarray]:
    """MASE / sCRPS / sMAPE per series for one model; the median is the point forecast."""
    point = np.asarray(quantiles)[..., MEDIAN]
    return {
        "MASE": mase(y, point, insample, season_length),
        "sCRPS": scaled_crps(y, quantiles),
        "sMAPE": smape(y, point),
    }


def evaluate(
    forecasts: dict[str, np.ndarray],
    y,
    insample: Sequence[np.ndarray],
    season_length: int | Sequence[int],
    baseline: str = "seasonal_naive",
) -> pd.DataFrame:
    """One row per model (index ``model``).

    MASE, sCRPS, sMAPE: means over series (M competitions; NaN series skipped).
    sCRPS_pooled: the dataset-level GIFT-Eval value.
    MASE_rel, sCRPS_rel: geometric mean over series of the ratio to ``baseline``.
    """
    if baseline not in forecasts:
        raise ValueError(f"baseline {baseline!r} is not among the forecasts {sorted(forecasts)}")
    per = {name: per_series_metrics(q, y, insample, season_length) for name, q in forecasts.items()}
    base = per[baseline]
    rows = []
    for name, m in per.items():
        rows.append(
            {
                "model": name,
                "MASE": float(np.nanmean(m["MASE"])),
                "sCRPS": float(np.nanmean(m["sCRPS"])),
                "sMAPE": float(np.nanmean(m["sMAPE"])),
                "sCRPS_pooled": scaled_crps_pooled(y, forecasts[name]),
                "MASE_rel": geometric_mean_ratio(m["MASE"], base["MASE"]),
                "sCRPS_rel": geometric_mean_ratio(m["sCRPS"], base["sCRPS"]),
            }
        )
    return pd.DataFrame(rows).set_index("model")


def summarize(per_series: pd.DataFrame, baseline: str = "seasonal_naive", key: str = "instance") -> pd.DataFrame:
    """The columns of ``evaluate`` from a long per-series frame.

    ``per_series`` has one row per (``key``, ``model``) with MASE, sCRPS, sMAPE and the
    pooled-CRPS parts ``crps_num``/``crps_den`` (scaled_crps_parts). Series with different
    horizons and season lengths can be pooled this way. Rows are ordered as models first appear.
    """
    models = list(dict.fromkeys(per_series["model"]))
    if baseline not in models:
        raise ValueError(f"baseline {baseline!r} is not among the models {models}")
    wide = {m: g.set_index(key) for m, g in per_series.groupby("model", sort=False)}
    base = wide[baseline]
    rows = []
    for name in models:
        m = wide[name]
        b = base.reindex(m.index)
        den = m["crps_den"].to_numpy(np.float64).sum()  # numpy sums: a NaN forecast stays NaN
        rows.append({
            "model": name,
            "MASE": float(np.nanmean(m["MASE"])),
            "sCRPS": float(np.nanmean(m["sCRPS"])),
            "sMAPE": float(np.nanmean(m["sMAPE"])),
            "sCRPS_pooled": float(m["crps_num"].to_numpy(np.float64).sum() / den) if den > 0 else float("nan"),
            "MASE_rel": geometric_mean_ratio(m["MASE"].to_numpy(), b["MASE"].to_numpy()),
            "sCRPS_rel": geometric_mean_ratio(m["sCRPS"].to_numpy(), b["sCRPS"].to_numpy()),
        })
    return pd.DataFrame(rows).set_index("model")


def format_table(df: pd.DataFrame, digits: int = 3) -> str:
    """Plain aligned text table: index first, numbers right-aligned with ``digits`` decimals."""
    head = [df.index.name or ""] + [str(c) for c in df.columns]
    body = [
        [str(idx)] + [f"{v:.{digits}f}" if isinstance(v, (float, np.floating)) else str(v) for v in row]
        for idx, row in zip(df.index, df.itertuples(index=False))
    ]
    widths = [max(len(r[i]) for r in [head, *body]) for i in range(len(head))]

    def line(cells):
        return "  ".join(
            c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths))
        )

    return "\n".join([line(head), line(["-" * w for w in widths]), *map(line, body)])


def markdown_table(df: pd.DataFrame, digits: int = 3) -> str:
    """A pipe table (index included) for docs and MLflow descriptions."""
    df = df.reset_index() if not isinstance(df.index, pd.RangeIndex) else df
    cols = list(df.columns)

    def cell(v) -> str:
        if isinstance(v, (float, np.floating)):
            return "" if np.isnan(v) else f"{v:.{digits}f}"
        return str(v)

    lines = ["| " + " | ".join(map(str, cols)) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join(lines)
