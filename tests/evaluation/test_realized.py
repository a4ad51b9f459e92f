"""Realized accuracy: due points, one score per point, and the same figures as validation's."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from evaluation import realized
from models.metrics import QUANTILES, per_series_metrics

H, SEASON = 4, 4


def _history(n: int, uid: str, shift: float = 0.0) -> pd.DataFrame:
    t = np.arange(n)
    y = 10 + 3 * np.sin(2 * np.pi * t / SEASON) + 0.1 * t + shift
    return pd.DataFrame({"unique_id": uid, "ds": pd.date_range("2026-01-05", periods=n, freq="W-MON"), "y": y})


def _forecasts(actuals: pd.DataFrame, origin: str, last_n: int) -> pd.DataFrame:
    """Seasonal-naive quantile forecasts made after the first ``last_n`` points of each series."""
    rows = []
    for uid, g in actuals.groupby("unique_id"):
        hist = g.iloc[:last_n]
        ds = pd.date_range(hist["ds"].iloc[-1], periods=H + 1, freq="W-MON")[1:]
        point = hist["y"].to_numpy()[-SEASON:][:H]
        q = {str(lv): point + (lv - 0.5) * 2.0 for lv in QUANTILES}
        rows.append(
            pd.DataFrame(
                {
                    "unique_id": uid,
                    "ds": ds,
                    "mean": point,
                    **q,
                    "model": "forecaster-x",
                    "model_version": "3",
                    "family": "seasonal_naive",
                    "last_ds": hist["ds"].iloc[-1],
                    "origin": pd.Timestamp(origin).date(),
                }
            )
        )
    return pd.concat(rows, ignore_index=True)


def test_due_points_are_scored_once_and_the_rest_waits():
    full = pd.concat([_history(40, "a"), _history(40, "b")], ignore_index=True)
    forecasts = pd.concat([_forecasts(full, "2026-06-01", 30), _forecasts(full, "2026-06-08", 38)])
    # the store holds 40 points: origin 1 is covered whole (steps 1-4), origin 2 for 2 steps of 4
    due, waiting = realized.due_points(forecasts, full)
    assert len(due) == 2 * H + 2 * 2 and len(waiting) == 2 * 2
    assert sorted(due[due["origin"] == "2026-06-08"]["step"].unique()) == [1, 2]
    assert sorted(waiting["step"].unique()) == [3, 4]
    # scored once: the ledger's points are not due again, the waiting ones are once actuals arrive
    longer = pd.concat([_history(44, "a"), _history(44, "b")], ignore_index=True)
    again, still = realized.due_points(forecasts, longer, scored=due[realized.KEY])
    assert len(again) == 4 and len(still) == 0 and set(again["step"]) == {3, 4}
    by_origin = realized.summary(realized.score_points(due, full, SEASON), by=["origin"])  # the ledger's view
    assert list(by_origin["origin"]) == ["2026-06-01", "2026-06-08"] and list(by_origin["points"]) == [8, 4]


def test_figures_match_validation_definitions():
    full = _history(40, "a", shift=0.0)
    forecasts = _forecasts(full, "2026-06-01", 30)
    due, _ = realized.due_points(forecasts, full)
    points = realized.score_points(due, full, SEASON)
    table = realized.summary(points)
    q = due[[str(lv) for lv in QUANTILES]].to_numpy()[None]
    expect = per_series_metrics(q, due["y"].to_numpy()[None], [full["y"].to_numpy()[:30]], SEASON)
    for metric in ("MASE", "sCRPS", "sMAPE", "coverage"):
        assert table.loc[0, metric] == pytest.approx(float(expect[metric][0]), rel=1e-9), metric
    steps = realized.per_step(points)
    assert list(steps["step"]) == [1, 2, 3, 4] and (steps["points"] == 1).all()
    ratios = realized.against_validation(table, {"3": {"MASE": table.loc[0, "MASE"] / 2, "sCRPS": 1.0}})
    assert ratios.loc[0, "MASE_ratio"] == pytest.approx(2.0) and np.isnan(ratios.loc[0, "sMAPE_ratio"])


def test_a_level_shift_shows_as_a_larger_mase():
    before = _history(30, "a")
    forecasts = _forecasts(before, "2026-06-01", 30)
    steady = _history(34, "a")
    shifted = steady.copy()
    shifted.loc[30:, "y"] *= 1.6
    score = {}
    for name, actuals in (("steady", steady), ("shifted", shifted)):
        due, _ = realized.due_points(forecasts, actuals)
        score[name] = realized.summary(realized.score_points(due, actuals, SEASON)).loc[0, "MASE"]
    assert score["shifted"] > 5 * score["steady"]


def test_integer_steps_and_string_ids_join():
    actuals = pd.DataFrame({"unique_id": [7] * 12, "ds": np.arange(12), "y": np.arange(12.0)})
    f = pd.DataFrame(
        {
            "unique_id": ["7"] * 2,
            "ds": [10, 11],
            **{str(lv): [10.0, 11.0] for lv in QUANTILES},
            "model_version": "1",
            "family": "fused",
            "last_ds": 9,
            "origin": pd.Timestamp("2026-01-01"),
        }
    )
    due, waiting = realized.due_points(f, actuals)
    assert len(due) == 2 and waiting.empty
    points = realized.score_points(due, actuals, 1)
    assert (points["abs_err"] == 0).all() and (points["scale"] == 1.0).all()


def test_seasonal_naive_on_the_same_points_is_the_value_a_season_back():
    full = _history(40, "a")
    forecasts = _forecasts(full, "2026-06-01", 30)  # the fixture's forecasts ARE seasonal naive
    due, _ = realized.due_points(forecasts, full)
    points = realized.score_points(due, full, SEASON)
    np.testing.assert_allclose(points["naive"], due["0.5"])
    table = realized.summary(points)
    assert table.loc[0, "MASE_vs_naive"] == pytest.approx(1.0)
    assert table.loc[0, "naive_MASE"] == pytest.approx(table.loc[0, "MASE"])
    # its intervals: normal, from the in-sample seasonal differences (here a constant 0.4 trend step)
    assert np.isfinite(table.loc[0, "naive_sCRPS"]) and table.loc[0, "naive_sCRPS"] > 0
