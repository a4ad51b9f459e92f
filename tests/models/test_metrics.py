"""Metric values computed by hand on tiny arrays."""

import numpy as np
import pytest

from evaluation.scores import evaluate
from models.metrics import QUANTILES, geometric_mean_ratio, mase, mase_scale, scaled_crps, scaled_crps_pooled, smape
from reports.tables import format_table


def degenerate(point):
    """All 9 quantiles equal to the point forecast: [N, H] -> [N, H, 9]."""
    return np.repeat(np.asarray(point, float)[..., None], 9, axis=-1)


def test_quantile_levels():
    assert list(QUANTILES) == [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9]


def test_mase_hand_values():
    insample = [np.array([1.0, 3.0, 2.0, 6.0])]
    y, f = np.array([[5.0, 7.0]]), np.array([[6.0, 6.0]])  # MAE 1
    # lag 1: |2|,|1|,|4| -> 7/3 ; lag 2: |2-1|,|6-3| -> 2
    assert mase(y, f, insample, 1)[0] == pytest.approx(3 / 7)
    assert mase(y, f, insample, 2)[0] == pytest.approx(0.5)
    assert mase(y, y, insample, 2)[0] == 0.0


def test_mase_scale_fallbacks():
    hist = [
        np.array([1.0, 3.0]),  # shorter than m + 1 -> lag 1 -> 2
        np.array([1.0, 2.0, 1.0, 2.0, 1.0, 2.0]),  # periodic: seasonal scale 0 -> lag 1 -> 1
        np.array([5.0, 5.0, 5.0]),  # constant -> undefined
    ]
    s = mase_scale(hist, 2)
    assert s[0] == 2.0 and s[1] == 1.0 and np.isnan(s[2])


def test_mase_naive_on_random_walk_is_about_one():
    rng = np.random.default_rng(0)
    walks = rng.normal(size=(2000, 61)).cumsum(axis=1)
    insample, y = list(walks[:, :60]), walks[:, 60:]
    naive = walks[:, 59:60]
    m = mase(y, naive, insample, 1)
    assert abs(m.mean() - 1.0) < 0.08
    assert m.min() >= 0


def test_smape_hand_values_and_symmetry():
    assert smape([[100.0]], [[50.0]])[0] == pytest.approx(200 * 50 / 150)
    assert smape([[50.0]], [[100.0]])[0] == pytest.approx(200 * 50 / 150)
    # both zero counts 0; y=2, f=0 counts 200
    assert smape([[0.0, 2.0]], [[0.0, 0.0]])[0] == pytest.approx(100.0)
    # a missing target is skipped, a missing forecast is not hidden
    assert smape([[100.0, np.nan]], [[50.0, 1.0]])[0] == pytest.approx(200 * 50 / 150)
    assert np.isnan(smape([[100.0]], [[np.nan]])[0])


def test_scaled_crps_degenerate_is_mae_over_mean_abs_y():
    y, f = np.array([[1.0, 2.0, 3.0]]), np.array([[2.0, 2.0, 2.0]])
    assert scaled_crps(y, degenerate(f))[0] == pytest.approx(2 / 6)


def test_scaled_crps_hand_value():
    # y = 1, q_tau = 2*tau: pinball = tau(1-2tau) below the median, (1-tau)(2tau-1) above;
    # sum over the 9 levels = 0.8 -> mean of 2*pinball = 1.6/9.
    y = np.array([[1.0]])
    q = (2 * np.asarray(QUANTILES))[None, None, :]
    assert scaled_crps(y, q)[0] == pytest.approx(1.6 / 9)
    assert scaled_crps(y, np.full((1, 1, 9), 1.0))[0] == 0.0


def test_scaled_crps_per_series_and_pooled():
    y = np.array([[1.0, 1.0], [10.0, 10.0]])
    f = np.array([[2.0, 2.0], [10.0, 12.0]])
    np.testing.assert_allclose(scaled_crps(y, degenerate(f)), [1.0, 0.1])
    assert scaled_crps_pooled(y, degenerate(f)) == pytest.approx(4 / 22)


def test_geometric_mean_ratio_skips_zero_baseline():
    assert geometric_mean_ratio(np.array([2.0, 8.0, 5.0]), np.array([1.0, 2.0, 0.0])) == pytest.approx(np.sqrt(2 * 4))


def test_evaluate_relative_metrics():
    rng = np.random.default_rng(1)
    insample = list(rng.normal(10, 1, size=(5, 30)))
    y = rng.normal(10, 1, size=(5, 4))
    err = rng.normal(0, 1, size=(5, 4))
    forecasts = {
        "seasonal_naive": degenerate(y + err),
        "twice_worse": degenerate(y + 2 * err),  # MASE and sCRPS double on every series
        "perfect": degenerate(y),
    }
    df = evaluate(forecasts, y, insample, season_length=1)
    assert list(df.index) == ["seasonal_naive", "twice_worse", "perfect"]
    assert {"MASE", "sCRPS", "sMAPE", "MASE_rel", "sCRPS_rel", "sCRPS_pooled"} <= set(df.columns)
    assert df.loc["seasonal_naive", "MASE_rel"] == pytest.approx(1.0)
    assert df.loc["seasonal_naive", "sCRPS_rel"] == pytest.approx(1.0)
    assert df.loc["twice_worse", "MASE_rel"] == pytest.approx(2.0)
    assert df.loc["twice_worse", "sCRPS_rel"] == pytest.approx(2.0)
    assert df.loc["twice_worse", "MASE"] == pytest.approx(2 * df.loc["seasonal_naive", "MASE"])
    assert df.loc["perfect", "MASE"] == 0.0 and df.loc["perfect", "sMAPE"] == 0.0
    with pytest.raises(ValueError):
        evaluate({"x": degenerate(y)}, y, insample, 1)


def test_format_table_aligned():
    rng = np.random.default_rng(2)
    y = rng.normal(10, 1, size=(3, 2))
    df = evaluate({"seasonal_naive": degenerate(y + 1), "auto_ets": degenerate(y + 0.5)}, y, list(y), 1)
    text = format_table(df)
    lines = text.splitlines()
    assert len(lines) == 4 and len({len(line) for line in lines}) == 1
    assert lines[2].startswith("seasonal_naive") and "1.000" in lines[2]
    assert "0.500" in lines[3]  # MASE_rel of auto_ets


def test_mase_scale_takes_one_season_per_series():
    from models.metrics import mase_scale

    x = np.tile([0.0, 1.0, 0.0, 3.0], 6)  # period 4: the seasonal scale is 0, so lag 1 is used
    y = np.arange(24, dtype=np.float64)
    per = mase_scale([x, y], [4, 1])
    np.testing.assert_allclose(per, [mase_scale([x], 4)[0], 1.0])
    np.testing.assert_allclose(mase_scale([y, y], [12, 1]), [12.0, 1.0])
