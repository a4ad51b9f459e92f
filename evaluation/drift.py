"""Input drift of one domain: per-series features and a population stability index per feature.

A model is fitted on one population of series; the series it is later asked to forecast may look
different (another level or scale, a seasonality that faded, more zeros or gaps) long before that
shows in the errors. ``features_frame`` reduces each series to a few numbers (``FEATURES``), and
``drift_table`` compares the reference population (the training data) with the current one,
feature by feature, as the PSI of their histograms over fixed buckets (``BUCKETS``).

The buckets are fixed, not quantiles of the reference, so that the serving process can export
the same histograms to Prometheus (``le`` upper edges, +Inf implied): a monitor sums their
``_bucket`` series across replicas (``counts_from_cumulative``) and passes them to
``drift_table`` as ``current_counts``, without the raw inputs. Pure numpy/pandas on purpose: the
serving process and the monitor import it without the training stack.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

FEATURES: tuple[str, ...] = ("level", "scale", "trend_strength", "seasonal_strength", "intermittency", "missing_share")
_SHARES = tuple(round(0.1 * i, 1) for i in range(11))  # 0.0, 0.1, ..., 1.0
BUCKETS: dict[str, tuple[float, ...]] = {
    "level": tuple(round(-3.0 + 0.5 * i, 1) for i in range(25)),  # log10 |mean|: 1e-3 .. 1e9
    "scale": (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),  # coefficient of variation
    "trend_strength": _SHARES,
    "seasonal_strength": _SHARES,
    "intermittency": _SHARES,
    "missing_share": _SHARES,
}
FEATURE_DOCS: dict[str, str] = {
    "level": "Per-series level: log10 |mean of the known values|",
    "scale": "Per-series scale: std / |mean| of the known values (coefficient of variation)",
    "trend_strength": "Per-series trend strength (0..1) of a classical decomposition",
    "seasonal_strength": "Per-series seasonal strength (0..1) of a classical decomposition",
    "intermittency": "Per-series share of known values that are exactly 0",
    "missing_share": "Per-series share of missing (NaN) values",
}
_MIN_POINTS = 4  # fewer points where the trend is defined: no strength (0)
_ZERO_VAR = 1e-10  # a component+remainder variance below this share of the series' variance counts as 0
_CHUNK = 1 << 22  # values per decomposition batch: bounds the memory of the 2-D arrays


# --- features ------------------------------------------------------------------------------------------------------


def _strengths(x: np.ndarray, season: int) -> tuple[np.ndarray, np.ndarray]:
    """Trend and seasonal strength of each row of ``x`` (series of one length, no NaN)."""
    m, n = x.shape
    zeros = np.zeros(m)
    if season > 1:
        w = season
    else:  # no season: a short odd moving average, so the trend is smoother than the series
        w = min(7, n // 2)
        w -= 1 - w % 2
        if w < 3:
            return zeros, zeros
    if n - w + (w % 2) < _MIN_POINTS:
        return zeros, zeros
    x = x - x.mean(axis=1, keepdims=True)  # centred: the running sums keep their precision at any level
    cs = np.concatenate([np.zeros((m, 1)), np.cumsum(x, axis=1)], axis=1)
    ma = (cs[:, w:] - cs[:, :-w]) / w  # ma[:, j] = mean of x[:, j:j + w]
    if w % 2:
        trend, lo = ma, (w - 1) // 2
    else:  # 2 x w moving average: centred on a point, as classical decomposition does for an even season
        trend, lo = (ma[:, :-1] + ma[:, 1:]) / 2, w // 2
    length = trend.shape[1]
    detrended = x[:, lo : lo + length] - trend
    if season > 1 and n >= 2 * season:
        # phase means over the defined points: padded to whole cycles so a reshape groups them by phase
        pre = lo % season
        cycles = -(-(pre + length) // season)
        padded = np.zeros((m, cycles * season))
        padded[:, pre : pre + length] = detrended
        phases = (lo + np.arange(length)) % season
        index = padded.reshape(m, cycles, season).sum(axis=1) / np.bincount(phases, minlength=season)
        index -= index.mean(axis=1, keepdims=True)
        seasonal = index[:, phases]
    else:
        seasonal = np.zeros_like(detrended)
    remainder = detrended - seasonal
    var_r = remainder.var(axis=1)
    floor = _ZERO_VAR * x[:, lo : lo + length].var(axis=1)

    def strength(component: np.ndarray) -> np.ndarray:
        total = (component + remainder).var(axis=1)
        with np.errstate(divide="ignore", invalid="ignore"):
            s = np.where(total > floor, 1.0 - var_r / total, 0.0)
        return np.clip(s, 0.0, 1.0)

    return strength(trend), strength(seasonal)


def _features_flat(y: np.ndarray, group: np.ndarray, starts: np.ndarray, season: int) -> dict[str, np.ndarray]:
    """Features of the series laid end to end in ``y`` (each in time order); ``group`` numbers each
    value's series 0..G-1, ``starts`` the first position of each. One code path for one series and many."""
    n_groups = len(starts)
    known = ~np.isnan(y)
    n_values = np.bincount(group, minlength=n_groups).astype(float)
    n_known = np.bincount(group, weights=known, minlength=n_groups)
    with np.errstate(divide="ignore", invalid="ignore"):
        mean = np.bincount(group, weights=np.where(known, y, 0.0), minlength=n_groups) / n_known
        dev = np.where(known, y - mean[group], 0.0)
        std = np.sqrt(np.bincount(group, weights=dev * dev, minlength=n_groups) / n_known)
        level = np.where(mean == 0, BUCKETS["level"][0], np.log10(np.abs(mean)))  # as the serving process does
        level[n_known == 0] = np.nan
        scale = np.where((n_known >= 2) & (mean != 0), std / np.abs(mean), np.nan)
        zeros = np.bincount(group, weights=known & (y == 0), minlength=n_groups)
        intermittency = np.where(n_known > 0, zeros / n_known, np.nan)
        missing_share = (n_values - n_known) / n_values

    # Gaps: linear interpolation inside a series, leading and trailing NaN dropped (no vectorised
    # loop per series: the previous/next known position, kept only when it is in the same series).
    size = len(y)
    pos = np.arange(size)
    ends = np.append(starts[1:], size)
    prev = np.maximum.accumulate(np.where(known, pos, -1)) if size else pos
    nxt = np.minimum.accumulate(np.where(known, pos, size)[::-1])[::-1] if size else pos
    keep = (prev >= starts[group]) & (nxt < ends[group])
    filled = y.copy()
    gap = keep & ~known
    if gap.any():
        p, q = prev[gap], nxt[gap]
        filled[gap] = y[p] + (y[q] - y[p]) * (pos[gap] - p) / (q - p)
    clean = filled[keep]
    lengths = np.bincount(group[keep], minlength=n_groups)
    clean_starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)

    # Decomposition in batches of series of one cleaned length (a 2-D array each).
    trend_strength = np.zeros(n_groups)
    seasonal_strength = np.zeros(n_groups)
    for length in np.unique(lengths):
        if length < _MIN_POINTS:
            continue
        which = np.flatnonzero(lengths == length)
        step = max(1, _CHUNK // int(length))
        for s in range(0, len(which), step):
            sel = which[s : s + step]
            rows = clean[clean_starts[sel][:, None] + np.arange(length)]
            trend_strength[sel], seasonal_strength[sel] = _strengths(rows, season)
    return {
        "level": level,
        "scale": scale,
        "trend_strength": trend_strength,
        "seasonal_strength": seasonal_strength,
        "intermittency": intermittency,
        "missing_share": missing_share,
    }


def series_features(values: np.ndarray, season: int = 1) -> dict[str, float]:
    """Features of one series' values (1-D, time order, NaN = missing); keys ``FEATURES``.

    level: log10 |mean| of the known values (``BUCKETS['level'][0]`` for a mean of 0, NaN with no
    known value); scale: std / |mean| (NaN for a mean of 0 or fewer than 2 known values);
    trend_strength, seasonal_strength: Hyndman and Wang's strengths, max(0, 1 - var(R) / var(C + R)),
    from a classical decomposition of the known values (gaps interpolated, leading and trailing NaN
    dropped): the trend a centred moving average of length ``season`` (2 x ``season`` when even; for
    ``season`` <= 1 an odd one of length min(7, n // 2)), the seasonal part the centred mean of the
    detrended values per phase (with 2 full seasons or more, else 0), both 0 with fewer than 4 points
    where the trend is defined or a variance of 0; intermittency: the share of known values that are
    exactly 0; missing_share: the share of NaN.
    """
    y = np.asarray(values, dtype=np.float64)
    if y.ndim != 1:
        raise ValueError(f"series_features takes one series (a 1-D array), got shape {y.shape}")
    out = _features_flat(y, np.zeros(len(y), dtype=np.int64), np.zeros(1, dtype=np.int64), season)
    return {f: float(out[f][0]) for f in FEATURES}


def features_of(values: Sequence[np.ndarray], season: int = 1) -> dict[str, np.ndarray]:
    """``series_features`` of many series at once (each 1-D, time order): feature -> one value per
    series. The serving process calls it once per request instead of once per series."""
    if not len(values):
        return {f: np.zeros(0) for f in FEATURES}
    lengths = np.array([len(v) for v in values], dtype=np.int64)
    y = np.concatenate([np.asarray(v, dtype=np.float64) for v in values]) if lengths.sum() else np.zeros(0)
    group = np.repeat(np.arange(len(values)), lengths)
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
    return _features_flat(y, group, starts, season)


def features_frame(frame: pd.DataFrame, season: int = 1, window: int | None = None) -> pd.DataFrame:
    """``series_features`` of every series of a long frame (``unique_id``, ``ds``, ``y``, any order),
    on its last ``window`` points by ``ds`` (all when None): index ``unique_id`` (sorted), columns
    ``FEATURES``. Vectorised over series (10,000 series x 100 points take a fraction of a second)."""
    if window is not None and window < 1:
        raise ValueError(f"window must be at least 1, got {window}")
    if frame.empty:
        return pd.DataFrame(columns=list(FEATURES), index=pd.Index([], name="unique_id"), dtype=float)
    codes, ids = pd.factorize(frame["unique_id"], sort=True)
    ds = frame["ds"]
    ds_key = ds.to_numpy() if ds.dtype.kind in "iufM" else pd.factorize(ds, sort=True)[0]
    order = np.lexsort((ds_key, codes))
    group = codes[order]
    y = frame["y"].to_numpy(dtype=np.float64, na_value=np.nan)[order]
    counts = np.bincount(group, minlength=len(ids))
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    if window is not None:
        # position from the end of its series: keep the last `window`
        from_end = np.repeat(starts + counts, counts) - np.arange(len(group))
        last = from_end <= window
        group, y = group[last], y[last]
        counts = np.minimum(counts, window)
        starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    out = _features_flat(y, group, starts.astype(np.int64), season)
    return pd.DataFrame(out, index=pd.Index(ids, name="unique_id"), columns=list(FEATURES))


# --- histograms and PSI -------------------------------------------------------------------------------------------


def bucket_counts(values: np.ndarray, edges: Sequence[float]) -> np.ndarray:
    """Counts per bucket, ``len(edges) + 1`` of them (the last is +Inf): bucket i holds
    ``edges[i-1] < v <= edges[i]``, as a Prometheus ``le`` bucket does. NaN values are not counted."""
    v = np.asarray(values, dtype=np.float64).ravel()
    v = v[~np.isnan(v)]
    # side="left": the first edge >= v, so a value equal to an edge falls in that edge's bucket
    return np.bincount(np.searchsorted(np.asarray(edges, dtype=np.float64), v, side="left"), minlength=len(edges) + 1)


def counts_from_cumulative(cumulative: Sequence[float]) -> np.ndarray:
    """Prometheus ``_bucket`` values (cumulative, in edge order, +Inf last) -> counts per bucket.
    A small negative difference is clipped to 0: ``increase()`` extrapolates each bucket series on
    its own, so a window's cumulative counts summed over replicas need not be exactly monotone."""
    c = np.asarray(cumulative, dtype=np.float64)
    return np.clip(np.diff(c, prepend=0.0), 0.0, None)


def psi(reference: np.ndarray, current: np.ndarray, eps: float = 1e-4) -> float:
    """Population stability index of two count vectors over the same buckets: sum of (c - r) ln(c / r)
    over the shares r, c, each floored at ``eps`` (an empty bucket on one side adds a large but finite
    term). 0 for identical shares; > 0.25 is the usual mark of a shift. NaN when either side is empty."""
    r = np.asarray(reference, dtype=np.float64)
    c = np.asarray(current, dtype=np.float64)
    if r.shape != c.shape:
        raise ValueError(f"psi needs counts over the same buckets, got {r.shape} and {c.shape}")
    if r.sum() <= 0 or c.sum() <= 0:
        return float("nan")
    r = np.maximum(r / r.sum(), eps)
    c = np.maximum(c / c.sum(), eps)
    return float(np.sum((c - r) * np.log(c / r)))


def drift_table(
    reference: pd.DataFrame,
    current: pd.DataFrame | None,
    threshold: float,
    current_counts: dict[str, np.ndarray] | None = None,
) -> pd.DataFrame:
    """Reference vs current features (frames of ``features_frame``), one row per feature (index
    ``feature``, order ``FEATURES``): psi over ``BUCKETS``, n_reference and n_current (series counted,
    NaN features left out), reference_median, current_median, drifted (psi > ``threshold``; False
    when psi is NaN). ``current_counts``: counts per bucket already binned over ``BUCKETS`` (e.g. the
    serving process' histograms) used instead of ``current`` for those features: n_current is their
    sum and current_median NaN. A feature in neither gives psi NaN."""
    current_counts = current_counts or {}
    rows = []
    for f in FEATURES:
        edges = BUCKETS[f]
        ref = reference[f].to_numpy(dtype=np.float64, na_value=np.nan) if f in reference else np.array([])
        ref_counts = bucket_counts(ref, edges)
        if f in current_counts:
            cur_counts = np.asarray(current_counts[f], dtype=np.float64)
            if cur_counts.shape != (len(edges) + 1,):
                raise ValueError(
                    f"current_counts[{f!r}] has shape {cur_counts.shape}, "
                    f"expected ({len(edges) + 1},): BUCKETS[{f!r}] and +Inf"
                )
            cur_median = np.nan
        else:
            cur = (
                current[f].to_numpy(dtype=np.float64, na_value=np.nan)
                if current is not None and f in current
                else np.array([])
            )
            cur_counts = bucket_counts(cur, edges)
            cur_median = _median(cur)
        value = psi(ref_counts, cur_counts)
        rows.append(
            {
                "feature": f,
                "psi": value,
                "n_reference": int(ref_counts.sum()),
                "n_current": int(round(float(cur_counts.sum()))),
                "reference_median": _median(ref),
                "current_median": cur_median,
                "drifted": bool(value > threshold),
            }
        )
    return pd.DataFrame(rows).set_index("feature")


def _median(values: np.ndarray) -> float:
    known = values[~np.isnan(values)]
    return float(np.median(known)) if len(known) else float("nan")
