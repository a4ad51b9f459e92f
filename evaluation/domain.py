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
import time
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from evaluation.baselines import candidate_models, grouped_baseline_forecasts
from evaluation.ensemble import Ensemble, combine, fit_ensemble
from evaluation.gate import Evidence
from evaluation.scores import per_series_frame, summarize
from models.forecasting.kinds import ENSEMBLE, FAMILIES, HORIZON_BOUND
from models.forecasting.statistical import STATISTICAL
from models.memory.result import PARTS, OnboardingResult
from models.metrics import MEDIAN, mase_scale
from reports.plots import fan_chart, per_horizon_plot
from reports.tables import format_table


def evaluate_result(result: OnboardingResult, domain: str, n_jobs: int = 1) -> None:
    """The baselines are fitted on the same context each model saw (for validation, train and the
    windows before the origin; for test, train + validation); MASE is scaled by the train part."""
    split = result.split
    notes = {}
    ensemble: Ensemble | None = None
    stages = {"statistical_fits": 0.0, "ensemble": 0.0, "tables_and_plots": 0.0}  # seconds, for the profile
    shown = None  # the family the fan charts show: the best on validation, on test too
    times = series_times(result)
    for part in PARTS:
        w = split.windows(part)
        horizons, seasons = split.horizons[w.series], split.seasons[w.series]
        insample = [split.train[i] for i in w.series]
        ids = [split.ids[i] for i in w.series]
        keys = ids if part == "test" else [f"{u}@{o}" for u, o in zip(ids, w.origin)]  # one per window
        states: dict[str, list[Any]] | None = {} if part == "test" else None  # fitted on train + validation
        t = time.perf_counter()
        forecasts, notes[part], seconds = grouped_baseline_forecasts(
            w.contexts,
            horizons,
            seasons,
            split.horizon,
            candidate_models(split.seasons.tolist()),
            n_jobs=n_jobs,
            states=states,
        )
        stages["statistical_fits"] += time.perf_counter() - t
        made = dict(result.forecasts(part).items())
        forecasts.update(made)
        t = time.perf_counter()
        if part == "val":
            ensemble = fit_ensemble(
                {f: forecasts[f] for f in ENSEMBLE_MEMBERS if f in forecasts}, w.truth, w.origin, w.series
            )
        if ensemble is not None and ensemble.single is None:
            forecasts[ENSEMBLE] = ensemble.val if part == "val" else combine(forecasts, ensemble.used)
            # its members' forecasts, one after the other (at onboarding, statistical members are fitted)
            seconds[ENSEMBLE] = sum(
                seconds.get(m, 0.0) + result.timings.get(f"latency_{part}_{m}", 0.0) for m in ensemble.used
            )
        stages["ensemble"] += time.perf_counter() - t
        t = time.perf_counter()
        if states is not None:
            _keep_fitted(result, states)
        per = per_series_frame(forecasts, w.truth, insample, seasons, ids=keys)
        table = summarize(per)
        n_models = len(forecasts)
        per = per.drop(columns="instance").assign(
            unique_id=np.tile(ids, n_models),
            origin=np.tile(w.origin, n_models),
            horizon=np.tile(horizons, n_models),
            season=np.tile(seasons, n_models),
        )
        per[["unique_id", "origin", "model", "horizon", "season", "MASE", "sCRPS", "sMAPE", "coverage"]].to_csv(
            result.per_series_file(part), index=False
        )
        # forecast latency: wall milliseconds per window (batched models in batches of batch_size)
        latency = {**{m: result.timings.get(f"latency_{part}_{m}", np.nan) for m in made}, **seconds}
        table["ms_per_series"] = [1000.0 * latency.get(m, np.nan) / max(len(w), 1) for m in table.index]
        table.to_csv(result.metrics_file(part))
        same = identical_notes(forecasts, result.alpha)
        result.metrics_file(part, "txt").write_text(format_table(table) + "\n" + "".join(f"{n}\n" for n in same))
        if shown is None:
            shown = str(table["sCRPS"].idxmin()) if table["sCRPS"].notna().any() else "fused"
        latest = np.flatnonzero(w.origin <= 1)  # validation's fan chart: the window right before test
        fan_chart(
            [w.contexts[i] for i in latest],
            w.truth[latest],
            forecasts[shown][latest],
            [ids[i] for i in latest],
            result.plot_file(part, "fan_chart"),
            f"{domain}: {shown} forecast on {part} (best on validation)",
            stamps=[times.get(ids[i]) for i in latest],
        )
        # where in the horizon each model gains or loses: mean scaled absolute error per step
        scale = mase_scale(insample, seasons)[:, None]
        with np.errstate(invalid="ignore", divide="ignore"), warnings.catch_warnings(action="ignore"):
            per_step = {m: np.nanmean(np.abs(w.truth - q[..., MEDIAN]) / scale, axis=0) for m, q in forecasts.items()}
        per_horizon_plot(per_step, result.plot_file(part, "per_horizon"), f"{domain}: error by step ({part})")
        stages["tables_and_plots"] += time.perf_counter() - t
    t = time.perf_counter()
    _write_ensemble(result, ensemble)
    stages["ensemble"] += time.perf_counter() - t
    result.evaluation_timings_file().write_text(json.dumps(stages, indent=2))
    result.baseline_notes_file().write_text(json.dumps(notes, indent=2, default=str))


def series_times(result: OnboardingResult) -> dict[str, np.ndarray]:
    """Each series' timestamps (or steps) from the store the result was fitted on, for dated charts;
    empty where the store is gone."""
    from store.canonical import read_store

    try:
        frame, _ = read_store(result.provenance["store"])
    except (KeyError, OSError, ValueError):
        return {}
    frame = frame.sort_values(["unique_id", "ds"])
    return {str(u): g.to_numpy() for u, g in frame.groupby("unique_id", sort=False)["ds"]}


def identical_notes(forecasts: dict[str, np.ndarray], alpha: float) -> list[str]:
    """A line for each pair of candidates whose forecasts are the same numbers, with the reason
    where it is known (two identical rows in a table are otherwise a puzzle)."""
    names, notes = list(forecasts), []
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            if forecasts[a].shape == forecasts[b].shape and np.array_equal(forecasts[a], forecasts[b], equal_nan=True):
                why = (
                    f"fusion weight {alpha:g}: the fused model is the backbone"
                    if {a, b} == {"fused", "backbone"}
                    else f"the ensemble puts all its weight on {b if a == ENSEMBLE else a}"
                    if ENSEMBLE in (a, b)
                    else "the same forecasts"
                )
                notes.append(f"note: {a} and {b} have identical rows ({why})")
    return notes


# the candidates an ensemble is made of, in the order exact copies are dropped (the backbone is kept
# over a fused model with fusion weight 0: the same forecasts without the adapter's cost)
ENSEMBLE_MEMBERS = (*STATISTICAL, "backbone", "fused", "teacher")


def _keep_fitted(result: OnboardingResult, states: dict[str, list[Any]]) -> None:
    """Each statistical candidate's folder gets the parameters fitted on every series' test context."""
    from models.forecasting.statistical import StatisticalForecaster

    for model, per_series in states.items():
        saved = StatisticalForecaster.load(result.model_dir(model))
        fitted = {uid: st for uid, st in zip(result.split.ids, per_series) if st is not None}
        StatisticalForecaster(model, saved.default_season, saved.seasons, fitted).save(result.model_dir(model))


def _write_ensemble(result: OnboardingResult, ensemble: Ensemble | None) -> None:
    """``ensemble.json`` (weights, the weights of each cross-validation fold, the members considered)
    and, where the ensemble is a candidate, its forecaster folder."""
    from models.forecasting.ensemble import EnsembleForecaster

    record = {
        "offered": False,
        "reason": "fewer than two distinct candidates, or validation windows that cannot be split in two groups",
    }
    if ensemble is not None:
        record = {
            "offered": ensemble.single is None,
            "weights": ensemble.weights,
            "members": ensemble.members,
            "fold_weights": ensemble.fold_weights,
            "reason": (
                f"all the weight went to {ensemble.single}: the ensemble is that candidate"
                if ensemble.single
                else "weights fitted on every validation window"
            ),
        }
        if ensemble.single is None:
            members = {f: (FAMILIES[f], result.model_dir(f)) for f in ensemble.used}
            # the adapter's trained horizon, the datastore's futures
            horizon = result.horizon if any(f in HORIZON_BOUND for f in members) else None
            EnsembleForecaster.assemble(result.model_dir(ENSEMBLE), members, ensemble.used, horizon)
    result.ensemble_file().write_text(json.dumps(record, indent=2))


def validation_evidence(result: OnboardingResult, families: Sequence[str] = tuple(FAMILIES)) -> Evidence:
    """Every candidate family's validation sCRPS per window, on the same windows in the same order,
    with each window's series as the resampling unit: what the gate judges on."""
    per = pd.read_csv(result.per_series_file("val"))
    per = per[per["model"].isin(families)]
    scores = {m: g["sCRPS"].to_numpy(np.float64) for m, g in per.groupby("model", sort=False)}
    first = per[per["model"] == per["model"].iloc[0]]
    return Evidence(scores, pd.factorize(first["unique_id"].astype(str))[0])
