"""Statistical baselines (statsforecast) as quantile forecasts ``[N, H, 9]``.

Intervals at levels 20/40/60/80 % give the 9 quantiles 0.1..0.9 (lo-80 -> 0.1,
lo-60 -> 0.2, ..., mean -> 0.5, ..., hi-80 -> 0.9), the layout of tasks.metrics.
Series are fitted one by one with the model classes' ``forecast`` (no frame
round-trip), so the output keeps the input order and is deterministic.
"""
from __future__ import annotations

import logging
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor

import numpy as np

log = logging.getLogger(__name__)

LEVELS = (20, 40, 60, 80)
MODELS = ("seasonal_naive", "auto_ets")
ETS_MAX_SEASON = 24  # statsforecast's ETS does not fit longer seasons

# Season length from a pandas-style frequency, for callers that know only that.
_FREQ_SEASON = {"H": 24, "h": 24, "D": 7, "B": 5, "W": 52, "M": 12, "MS": 12, "ME": 12, "Q": 4, "QS": 4, "QE": 4}


def season_from_freq(freq: str | None) -> int:
    """12 for monthly, 4 quarterly, ...; 1 when unknown (yearly, integer steps)."""
    if not freq:
        return 1
    base = freq.lstrip("0123456789").split("-")[0]
    return _FREQ_SEASON.get(base, 1)


def _quantiles(fc: dict[str, np.ndarray]) -> np.ndarray:
    """statsforecast output dict -> [H, 9]; sorted so crossing can never reach metrics."""
    cols = [fc[f"lo-{lv}"] for lv in reversed(LEVELS)] + [fc["mean"]] + [fc[f"hi-{lv}"] for lv in LEVELS]
    return np.sort(np.stack(cols, axis=-1).astype(np.float64), axis=-1)


def _naive(x: np.ndarray, horizon: int, season: int) -> np.ndarray:
    from statsforecast.models import SeasonalNaive

    return _quantiles(SeasonalNaive(season_length=season).forecast(y=x, h=horizon, level=list(LEVELS)))


def fit_one(x: np.ndarray, horizon: int, season_length: int, model: str) -> tuple[np.ndarray, str | None]:
    """One series, one model -> (quantiles [H, 9], note about a fallback or None)."""
    from statsforecast.models import AutoETS

    x = np.asarray(x, dtype=np.float64)
    if len(x) == 0:
        raise ValueError("empty history")
    # Less than one full season plus a step: the seasonal lag is undefined.
    season = season_length if len(x) > season_length else 1
    note = None if season == season_length else f"n={len(x)} <= season {season_length}: season 1"
    if model == "seasonal_naive":
        return _naive(x, horizon, season), note
    if model != "auto_ets":
        raise ValueError(f"unknown baseline {model!r}; known: {MODELS}")
    if season > ETS_MAX_SEASON:
        season, note = 1, f"season {season_length} > {ETS_MAX_SEASON} unsupported by ETS: season 1"
    try:
        q = _quantiles(AutoETS(season_length=season).forecast(y=x, h=horizon, level=list(LEVELS)))
        if np.isfinite(q).all():
            return q, note
        reason = "non-finite ETS forecast"
    except Exception as exc:  # statsforecast raises for tiny or degenerate series
        reason = f"ETS failed ({type(exc).__name__}: {exc})"
    return _naive(x, horizon, 1), f"n={len(x)}: {reason}: naive"


def _fit_chunk(args) -> list[tuple[np.ndarray, str | None]]:
    xs, horizon, season_length, model = args
    return [fit_one(x, horizon, season_length, model) for x in xs]


def baseline_forecasts_with_notes(
    histories: Sequence[np.ndarray],
    horizon: int,
    season_length: int | None,
    freq: str | None = None,
    models: Sequence[str] = MODELS,
    n_jobs: int = 1,
) -> tuple[dict[str, np.ndarray], list[str]]:
    """Like baseline_forecasts, also returning one note per fallback ("<model> series <i>: ...")."""
    if horizon < 1:
        raise ValueError("horizon must be >= 1")
    season_length = season_length or season_from_freq(freq)
    out: dict[str, np.ndarray] = {}
    notes: list[str] = []
    for model in models:
        if n_jobs > 1 and len(histories) > n_jobs:
            chunks = [list(histories[i::n_jobs]) for i in range(n_jobs)]
            with ProcessPoolExecutor(n_jobs) as pool:
                parts = list(pool.map(_fit_chunk, [(c, horizon, season_length, model) for c in chunks]))
            # Undo the round-robin chunking: series i sits in chunk i % n_jobs at i // n_jobs.
            results = [parts[i % n_jobs][i // n_jobs] for i in range(len(histories))]
        else:
            results = _fit_chunk((histories, horizon, season_length, model))
        out[model] = np.stack([q for q, _ in results]) if results else np.zeros((0, horizon, 9))
        notes += [f"{model} series {i}: {n}" for i, (_, n) in enumerate(results) if n]
    return out, notes


def baseline_forecasts(
    histories: Sequence[np.ndarray],
    horizon: int,
    season_length: int | None,
    freq: str | None = None,
    models: Sequence[str] = MODELS,
    n_jobs: int = 1,
) -> dict[str, np.ndarray]:
    """Quantile forecasts ``{model: [N, H, 9]}`` in the order of ``histories``.

    ``season_length`` 0/None falls back to one derived from ``freq``. Series too
    short for the season (or for ETS at all) fall back to a non-seasonal model;
    each fallback is logged (see baseline_forecasts_with_notes to get them).
    """
    out, notes = baseline_forecasts_with_notes(histories, horizon, season_length, freq, models, n_jobs)
    for note in notes:
        log.info("baseline fallback: %s", note)
    if notes:
        log.warning("baselines: %d fallback(s) among %d series", len(notes), len(histories))
    return out
