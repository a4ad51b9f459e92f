"""Scoring one onboarding on its validation and test parts against the statistical baselines.

Reads the result folder (``models.memory.result``), never the store: the split is the one
the adaptation was fitted on. Writes, per part, the score table (``<part>_metrics.csv`` and
``.txt``), the per-series scores (``<part>_per_series.csv``, for pooling across domains),
a fan chart and a per-step error plot; then the baselines' fallback notes.
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
    """The baselines are fitted on the same history each model saw (train before validation,
    train + validation before test); MASE is scaled by the train part for both."""
    split = result.split
    insample = split.train
    notes = {}
    for part in PARTS:
        histories, truth = split.history(part), split.truth(part)
        forecasts, notes[part], seconds = grouped_baseline_forecasts(
            histories, split.horizons, split.seasons, split.horizon, n_jobs=n_jobs)
        made = dict(result.forecasts(part).items())
        forecasts.update(made)
        per = per_series_frame(forecasts, truth, insample, split.seasons, ids=split.ids)
        table = summarize(per)
        per = per.rename(columns={"instance": "unique_id"}).assign(
            horizon=np.tile(split.horizons, len(forecasts)), season=np.tile(split.seasons, len(forecasts)))
        per[["unique_id", "model", "horizon", "season", "MASE", "sCRPS", "sMAPE"]].to_csv(
            result.per_series_file(part), index=False)
        # forecast latency: wall milliseconds per series (batched models in batches of batch_size)
        latency = {**seconds, **{m: result.timings.get(f"latency_{part}_{m}", np.nan) for m in made}}
        table["ms_per_series"] = [1000.0 * latency.get(m, np.nan) / max(len(split), 1) for m in table.index]
        table.to_csv(result.metrics_file(part))
        result.metrics_file(part, "txt").write_text(format_table(table) + "\n")
        fan_chart(histories, truth, made["fused"], split.ids, result.plot_file(part, "fan_chart"),
                  f"{domain}: fused forecast on {part}")
        # where in the horizon each model gains or loses: mean scaled absolute error per step
        scale = mase_scale(insample, split.seasons)[:, None]
        with np.errstate(invalid="ignore", divide="ignore"), warnings.catch_warnings(action="ignore"):
            per_step = {m: np.nanmean(np.abs(truth - q[..., MEDIAN]) / scale, axis=0) for m, q in forecasts.items()}
        per_horizon_plot(per_step, result.plot_file(part, "per_horizon"), f"{domain}: error by step ({part})")
    result.baseline_notes_file().write_text(json.dumps(notes, indent=2, default=str))
