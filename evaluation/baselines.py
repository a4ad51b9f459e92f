"""Statistical baselines (statsforecast) as quantile forecasts ``[N, H, 9]``.

Intervals at levels 20/40/60/80 % give the 9 quantiles 0.1..0.9 (lo-80 -> 0.1,
lo-60 -> 0.2, ..., mean -> 0.5, ..., hi-80 -> 0.9), the layout of ``models.metrics``.
Series are fitted one by one with the model classes' ``forecast`` (no frame
round-trip), so the output keeps the input order and is deterministic.
Models: seasonal naive, Theta (the standard theta method, statsforecast's ``Theta``)
and AutoETS; ``MODELS`` is the default set (what onboarding compares against).
"""
from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Executor, ProcessPoolExecutor
from contextlib import ExitStack

import numpy as np

from store.frequency import season_from_freq

log = logging.getLogger(__name__)

LEVELS = (20, 40, 60, 80)
MODELS = ("seasonal_naive", "auto_ets")  # the default set
KNOWN_MODELS = ("seasonal_naive", "theta", "auto_ets")
CHUNK = 64  # series per unit of work: the granularity of progress reports
ETS_MAX_SEASON = 24  # statsforecast's ETS does not fit longer seasons

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
    if model == "theta":
        return _theta(x, horizon, season, note)
    if model != "auto_ets":
        raise ValueError(f"unknown baseline {model!r}; known: {KNOWN_MODELS}")
    if season > ETS_MAX_SEASON:
        season, note = 1, f"season {season_length} > {ETS_MAX_SEASON} unsupported by ETS: season 1"
    return _fit_or_naive(AutoETS(season_length=season), "ETS", x, horizon, note)


def _theta(x: np.ndarray, horizon: int, season: int, note: str | None) -> tuple[np.ndarray, str | None]:
    """Standard theta method (seasonality test + decomposition inside statsforecast)."""
    from statsforecast.models import Theta

    return _fit_or_naive(Theta(season_length=season), "Theta", x, horizon, note)


def _fit_or_naive(model, label: str, x: np.ndarray, horizon: int,
                  note: str | None) -> tuple[np.ndarray, str | None]:
    """The statsforecast model's quantiles, or naive with the reason when it fails or diverges."""
    try:
        q = _quantiles(model.forecast(y=x, h=horizon, level=list(LEVELS)))
        if np.isfinite(q).all():
            return q, note
        reason = f"non-finite {label} forecast"
    except Exception as exc:  # statsforecast raises for tiny or degenerate series
        reason = f"{label} failed ({type(exc).__name__}: {exc})"
    return _naive(x, horizon, 1), f"n={len(x)}: {reason}: naive"


def _fit_chunk(args) -> list[tuple[np.ndarray, str | None]]:
    xs, horizon, season_length, model = args
    return [fit_one(x, horizon, season_length, model) for x in xs]


def _fit_all(histories, horizon, season_length, model, n_jobs, progress,
             executor: Executor | None = None) -> list[tuple[np.ndarray, str | None]]:
    """Contiguous chunks, serially or in a process pool; results in input order."""
    n = len(histories)
    size = max(1, min(CHUNK, math.ceil(n / max(n_jobs, 1))))
    chunks = [(list(histories[s:s + size]), horizon, season_length, model) for s in range(0, n, size)]
    results: list[tuple[np.ndarray, str | None]] = []
    if n_jobs > 1 and n > n_jobs:
        with ExitStack() as stack:
            pool = executor or stack.enter_context(ProcessPoolExecutor(n_jobs))
            for part in pool.map(_fit_chunk, chunks):  # map keeps the order of the chunks
                results += part
                if progress:
                    progress(model, len(results), n)
    else:
        for chunk in chunks:
            results += _fit_chunk(chunk)
            if progress:
                progress(model, len(results), n)
    return results


def baseline_pool(n_jobs: int, models: Sequence[str] = KNOWN_MODELS) -> ProcessPoolExecutor:
    """A process pool for many baseline calls. The models are fitted once here first, so
    that the forked workers inherit statsforecast's imports and compiled code."""
    x = 10 + np.sin(np.arange(48, dtype=np.float64))
    for model in models:
        fit_one(x, 4, 12, model)
    return ProcessPoolExecutor(n_jobs)


def progress_logger(label: str, logger: logging.Logger | logging.LoggerAdapter | None = None,
                    every_s: float = 30.0) -> Callable[[str, int, int], None]:
    """A ``progress`` callback that logs at most every ``every_s`` seconds, and at the end."""
    logger = logger or log
    clock = {"free": time.perf_counter()}  # when the previous model finished (or the callback was made)
    started: dict[str, float] = {}
    last: dict[str, float] = {}

    def report(model: str, done: int, total: int) -> None:
        now = time.perf_counter()
        t0 = started.setdefault(model, clock["free"])
        if done >= total or now - last.get(model, t0) >= every_s:
            last[model] = now
            logger.info("%s %s: %d/%d series fitted (%.0f s)", label, model, done, total, now - t0)
        if done >= total:
            clock["free"] = now

    return report


def baseline_forecasts_with_notes(
    histories: Sequence[np.ndarray],
    horizon: int,
    season_length: int | None,
    freq: str | None = None,
    models: Sequence[str] = MODELS,
    n_jobs: int = 1,
    progress: Callable[[str, int, int], None] | None = None,
    executor: Executor | None = None,
) -> tuple[dict[str, np.ndarray], list[str]]:
    """Like baseline_forecasts, also returning one note per fallback ("<model> series <i>: ...").

    ``progress(model, done, total)`` is called as chunks of series finish. ``executor``:
    a process pool to reuse across calls (see ``baseline_pool``) instead of one per model.
    """
    if horizon < 1:
        raise ValueError("horizon must be >= 1")
    season_length = season_length or season_from_freq(freq)
    out: dict[str, np.ndarray] = {}
    notes: list[str] = []
    unknown = [m for m in models if m not in KNOWN_MODELS]
    if unknown:
        raise ValueError(f"unknown baseline(s) {unknown}; known: {KNOWN_MODELS}")
    for model in models:
        results = _fit_all(histories, horizon, season_length, model, n_jobs, progress, executor)
        out[model] = np.stack([q for q, _ in results]) if results else np.zeros((0, horizon, 9))
        notes += [f"{model} series {i}: {n}" for i, (_, n) in enumerate(results) if n]
    return out, notes


def baseline_forecasts(histories: Sequence[np.ndarray], horizon: int, season_length: int | None,
                       **options) -> dict[str, np.ndarray]:
    """Quantile forecasts ``{model: [N, H, 9]}`` in the order of ``histories`` (``options``: those of
    ``baseline_forecasts_with_notes``).

    ``season_length`` 0/None falls back to one derived from ``freq``. Series too
    short for the season (or for ETS at all) fall back to a non-seasonal model;
    each fallback is logged (see baseline_forecasts_with_notes to get them).
    """
    out, notes = baseline_forecasts_with_notes(histories, horizon, season_length, **options)
    for note in notes:
        log.info("baseline fallback: %s", note)
    if notes:
        log.warning("baselines: %d fallback(s) among %d series", len(notes), len(histories))
    return out


def grouped_baseline_forecasts(
    histories: Sequence[np.ndarray],
    horizons: Sequence[int],
    seasons: Sequence[int],
    horizon: int,
    models: Sequence[str] = MODELS,
    n_jobs: int = 1,
) -> tuple[dict[str, np.ndarray], list[str], dict[str, float]]:
    """Baselines for series with their own horizon and season (M3 categories mix frequencies):
    fitted per (horizon, season) group, NaN-padded to ``horizon``: ``{model: [N, horizon, 9]}``,
    fallback notes, and each model's wall seconds for all series (the latency column)."""
    horizons, seasons = np.asarray(horizons, dtype=np.int64), np.asarray(seasons, dtype=np.int64)
    if len(horizons) != len(histories) or len(seasons) != len(histories):
        raise ValueError("one horizon and one season per series are required")
    out = {m: np.full((len(histories), horizon, len(LEVELS) * 2 + 1), np.nan) for m in models}
    notes: list[str] = []
    seconds = dict.fromkeys(models, 0.0)
    with ExitStack() as stack:
        pool = stack.enter_context(baseline_pool(n_jobs, models)) if n_jobs > 1 else None
        for h, m in sorted(set(zip(horizons.tolist(), seasons.tolist()))):
            idx = np.flatnonzero((horizons == h) & (seasons == m))
            for model in models:
                t = time.perf_counter()
                fc, part_notes = baseline_forecasts_with_notes(
                    [histories[i] for i in idx], h, m, None, (model,), n_jobs, executor=pool)
                seconds[model] += time.perf_counter() - t
                out[model][idx, :h] = fc[model]
                notes += [f"h={h} m={m} {n}" for n in part_notes]
    return out, notes, seconds
