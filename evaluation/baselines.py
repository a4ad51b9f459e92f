"""Statistical baselines over many series: in chunks, in a process pool, grouped by horizon and
season, with progress reports and every fallback noted. The models themselves (seasonal naive,
AutoETS, Theta, MSTL) are ``models.forecasting.statistical``, the same code a statistical champion
runs when it is served. ``candidate_models`` is what onboarding compares against (and may promote).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Executor, ProcessPoolExecutor
from contextlib import ExitStack
from typing import Any, cast

import numpy as np

from models.forecasting.statistical import LEVELS, STATISTICAL, fit_one, wants_mstl
from store.frequency import season_from_freq

log = logging.getLogger(__name__)

MODELS = ("seasonal_naive", "auto_ets", "theta")  # every domain's statistical candidates
KNOWN_MODELS = STATISTICAL
CHUNK = 64  # series per unit of work: the granularity of progress reports


def candidate_models(seasons: Sequence[int]) -> tuple[str, ...]:
    """A domain's statistical candidates: ``MODELS``, and MSTL where ``wants_mstl`` (a second cycle, or a
    season longer than ETS models)."""
    return (*MODELS, "mstl") if wants_mstl(seasons) else MODELS


def _fit_chunk(args: tuple[Any, ...]) -> list[tuple[Any, ...]]:
    xs, horizon, season_length, model, keep = args
    return [fit_one(x, horizon, season_length, model, keep=keep) for x in xs]


def _fit_all(
    histories: Sequence[np.ndarray],
    horizon: int,
    season_length: int,
    model: str,
    n_jobs: int,
    progress: Any,
    executor: Executor | None = None,
    keep: bool = False,
) -> list[tuple[Any, ...]]:
    """Contiguous chunks, serially or in a process pool; results in input order: (quantiles, note)
    or, with ``keep``, (quantiles, note, fitted parameters)."""
    n = len(histories)
    size = max(1, min(CHUNK, math.ceil(n / max(n_jobs, 1))))
    chunks = [(list(histories[s : s + size]), horizon, season_length, model, keep) for s in range(0, n, size)]
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


def progress_logger(
    label: str, logger: logging.Logger | logging.LoggerAdapter[logging.Logger] | None = None, every_s: float = 30.0
) -> Callable[[str, int, int], None]:
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
    states: dict[str, list[Any]] | None = None,
) -> tuple[dict[str, np.ndarray], list[str]]:
    """Like baseline_forecasts, also returning one note per fallback ("<model> series <i>: ...").

    ``progress(model, done, total)`` is called as chunks of series finish. ``executor``:
    a process pool to reuse across calls (see ``baseline_pool``) instead of one per model.
    ``states``: a dict to receive each model's fitted parameters per series (None where nothing
    was fitted), for ``StatisticalForecaster.fitted``.
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
        results = _fit_all(
            histories, horizon, season_length, model, n_jobs, progress, executor, keep=states is not None
        )
        out[model] = np.stack([r[0] for r in results]) if results else np.zeros((0, horizon, 9))
        notes += [f"{model} series {i}: {r[1]}" for i, r in enumerate(results) if r[1]]
        if states is not None:
            states[model] = [r[2] for r in results]
    return out, notes


def baseline_forecasts(
    histories: Sequence[np.ndarray], horizon: int, season_length: int | None, **options: Any
) -> dict[str, np.ndarray]:
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
    horizons: Any,  # Sequence[int]
    seasons: Any,  # Sequence[int]
    horizon: int,
    models: Sequence[str] = MODELS,
    n_jobs: int = 1,
    states: dict[str, list[Any]] | None = None,
) -> tuple[dict[str, np.ndarray], list[str], dict[str, float]]:
    """Baselines for series with their own horizon and season (M3 categories mix frequencies):
    fitted per (horizon, season) group, NaN-padded to ``horizon``: ``{model: [N, horizon, 9]}``,
    fallback notes, and each model's wall seconds for all series (the latency column).
    ``states``: as in ``baseline_forecasts_with_notes``, in the order of ``histories``."""
    horizons, seasons = np.asarray(horizons, dtype=np.int64), np.asarray(seasons, dtype=np.int64)
    if len(horizons) != len(histories) or len(seasons) != len(histories):
        raise ValueError("one horizon and one season per series are required")
    out = {m: np.full((len(histories), horizon, len(LEVELS) * 2 + 1), np.nan) for m in models}
    notes: list[str] = []
    seconds = dict.fromkeys(models, 0.0)
    if states is not None:
        states.update({m: [None] * len(histories) for m in models})
    with ExitStack() as stack:
        pool = stack.enter_context(baseline_pool(n_jobs, models)) if n_jobs > 1 else None
        for h, m in sorted(set(zip(horizons.tolist(), seasons.tolist()))):
            idx = np.flatnonzero((horizons == h) & (seasons == m))
            for model in models:
                t = time.perf_counter()
                kept: dict[str, list[Any]] | None = {} if states is not None else None
                fc, part_notes = baseline_forecasts_with_notes(
                    [cast(Any, histories)[i] for i in idx], h, m, None, (model,), n_jobs, executor=pool, states=kept
                )
                seconds[model] += time.perf_counter() - t
                if kept is not None:
                    for i, state in zip(idx, kept[model]):
                        cast(dict[str, list[Any]], states)[model][i] = state
                out[model][idx, :h] = fc[model]
                notes += [f"h={h} m={m} {n}" for n in part_notes]
    return out, notes, seconds
