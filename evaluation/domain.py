"""Scoring one onboarding on its validation and test windows against the statistical baselines.

Reads the result folder (``models.memory.result``), never the store: the split is the one
the adaptation was fitted on. Validation has one window per (series, origin), test one per
series (``SeriesSplit.windows``); every model is scored on the same windows. Writes, per part,
the score table (``<part>_metrics.csv`` and ``.txt``: means over windows), the per-window
scores (``<part>_per_series.csv``, for pooling across domains), a fan chart and a per-step
error plot; then the baselines' fallback notes.
"""
from __future__ import annotations

import json
import warnings

import numpy as np

from evaluation.baselines import grouped_baseline_forecasts
from evaluation.scores import per_series_frame, summarize
from models.memory.result import PARTS, OnboardingResult
from models.metrics import MEDIAN, mase_scale
from reports.plots import fan_chart, per_horizon_plot
from reports.tables import format_table


def evaluate_result(result: OnboardingResult, domain: str, n_jobs: int = 1) -> None:
    """The baselines are fitted on the same context each model saw (for validation, train and the
    windows before the origin; for test, train + validation); MASE is scaled by the train part."""
    split = result.split
    notes = {}
    for part in PARTS:
        w = split.windows(part)
        horizons, seasons = split.horizons[w.series], split.seasons[w.series]
        insample = [split.train[i] for i in w.series]
        ids = [split.ids[i] for i in w.series]
        keys = ids if part == "test" else [f"{u}@{o}" for u, o in zip(ids, w.origin)]  # one per window
        forecasts, notes[part], seconds = grouped_baseline_forecasts(
            w.contexts, horizons, seasons, split.horizon, n_jobs=n_jobs)
        made = dict(result.forecasts(part).items())
        forecasts.update(made)
        per = per_series_frame(forecasts, w.truth, insample, seasons, ids=keys)
        table = summarize(per)
        n_models = len(forecasts)
        per = per.drop(columns="instance").assign(
            unique_id=np.tile(ids, n_models), origin=np.tile(w.origin, n_models),
            horizon=np.tile(horizons, n_models), season=np.tile(seasons, n_models))
        per[["unique_id", "origin", "model", "horizon", "season", "MASE", "sCRPS", "sMAPE", "coverage"]].to_csv(
            result.per_series_file(part), index=False)
        # forecast latency: wall milliseconds per window (batched models in batches of batch_size)
        latency = {**seconds, **{m: result.timings.get(f"latency_{part}_{m}", np.nan) for m in made}}
        table["ms_per_series"] = [1000.0 * latency.get(m, np.nan) / max(len(w), 1) for m in table.index]
        table.to_csv(result.metrics_file(part))
        result.metrics_file(part, "txt").write_text(format_table(table) + "\n")
        latest = np.flatnonzero(w.origin <= 1)  # validation's fan chart: the window right before test
        fan_chart([w.contexts[i] for i in latest], w.truth[latest], made["fused"][latest], [ids[i] for i in latest],
                  result.plot_file(part, "fan_chart"), f"{domain}: fused forecast on {part}")
        # where in the horizon each model gains or loses: mean scaled absolute error per step
        scale = mase_scale(insample, seasons)[:, None]
        with np.errstate(invalid="ignore", divide="ignore"), warnings.catch_warnings(action="ignore"):
            per_step = {m: np.nanmean(np.abs(w.truth - q[..., MEDIAN]) / scale, axis=0) for m, q in forecasts.items()}
        per_horizon_plot(per_step, result.plot_file(part, "per_horizon"), f"{domain}: error by step ({part})")
    result.baseline_notes_file().write_text(json.dumps(notes, indent=2, default=str))
