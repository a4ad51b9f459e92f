"""Greedy ensemble selection: it finds the mix that wins, its validation forecasts are out of
sample, and it never invents a member."""

from __future__ import annotations

import numpy as np
import pytest

from evaluation.ensemble import combine, distinct_members, fit_ensemble, folds_of, greedy_weights
from models.metrics import QUANTILES, scaled_crps

Z = np.array([-1.2816, -0.8416, -0.5244, -0.2533, 0.0, 0.2533, 0.5244, 0.8416, 1.2816])  # normal quantiles


def _gaussian(mean: np.ndarray, sd: float) -> np.ndarray:
    return mean[..., None] + sd * Z


def _panel(n_series=40, origins=3, h=6, seed=0):
    """Truth = a + b with a, b known to two forecasters at half strength each: their average is best."""
    rng = np.random.default_rng(seed)
    m = n_series * origins
    a, b = rng.normal(0, 1, (m, h)), rng.normal(0, 1, (m, h))
    truth = 50 + a + b
    forecasts = {
        "left": _gaussian(50 + 2 * a, 1.0),
        "right": _gaussian(50 + 2 * b, 1.0),
        "flat": _gaussian(np.full((m, h), 50.0), 1.5),
    }
    series = np.repeat(np.arange(n_series), origins)
    origin = np.tile(np.arange(origins, 0, -1), n_series)
    return forecasts, truth, series, origin


def test_greedy_selection_finds_the_mix_that_beats_every_member():
    forecasts, truth, _, _ = _panel()
    w = greedy_weights(forecasts, truth)
    assert sum(w.values()) == pytest.approx(1.0)
    assert w["left"] >= 0.3 and w["right"] >= 0.3  # the average of the two halves
    mix = np.nanmean(scaled_crps(truth, combine(forecasts, w)))
    assert mix < min(np.nanmean(scaled_crps(truth, q)) for q in forecasts.values())
    assert list(w) == list(forecasts)  # a weight per member, members never invented


def test_a_mean_of_sorted_quantiles_stays_sorted():
    forecasts, _, _, _ = _panel()
    q = combine(forecasts, {"left": 0.35, "right": 0.4, "flat": 0.25})
    assert (np.diff(q, axis=-1) >= 0).all() and q.shape[-1] == len(QUANTILES)


def test_validation_forecasts_are_out_of_sample_by_origin():
    forecasts, truth, series, origin = _panel()
    ens = fit_ensemble(forecasts, truth, origin, series)
    assert ens is not None and len(ens.fold_weights) == 3  # one fit per left-out origin
    for group, w in zip(np.unique(folds_of(origin, series)), ens.fold_weights):
        held = origin == group
        # each group's forecast is the combination made with the weights fitted without it
        np.testing.assert_allclose(ens.val[held], combine({k: v[held] for k, v in forecasts.items()}, w))
        assert w == greedy_weights({k: v[~held] for k, v in forecasts.items()}, truth[~held])


def test_one_origin_is_cross_validated_over_series_and_nothing_to_mix_gives_none():
    forecasts, truth, series, _ = _panel(origins=1)
    ens = fit_ensemble(forecasts, truth, np.ones_like(series), series)
    assert ens is not None and len(ens.fold_weights) == 5
    assert fit_ensemble({"left": forecasts["left"]}, truth, np.ones_like(series), series) is None
    one = np.zeros(1, dtype=int)
    assert fit_ensemble({k: v[:1] for k, v in forecasts.items()}, truth[:1], one, one) is None


def test_copies_and_members_without_a_forecast_where_there_is_a_target_are_left_out():
    forecasts, truth, series, origin = _panel()
    broken = forecasts["flat"].copy()
    broken[0, 0, 0] = np.nan
    kept = distinct_members(
        {
            "backbone": forecasts["left"],
            "fused": forecasts["left"].copy(),
            "broken": broken,
            "right": forecasts["right"],
        },
        truth,
    )
    assert list(kept) == ["backbone", "right"]
    ens = fit_ensemble({"left": forecasts["left"], "copy": forecasts["left"].copy()}, truth, origin, series)
    assert ens is None  # one distinct member: nothing to ensemble
