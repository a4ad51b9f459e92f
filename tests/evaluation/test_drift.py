"""Drift features and PSI: the strengths tell a seasonal series from a trend and from noise, the simple
features are exact, histograms follow Prometheus' ``le`` buckets, and a level shift is caught while a
fresh sample of the same population is not."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from evaluation.drift import (
    BUCKETS,
    FEATURE_DOCS,
    FEATURES,
    bucket_counts,
    counts_from_cumulative,
    drift_table,
    features_frame,
    psi,
    series_features,
)

T = np.arange(120)


def population(n: int, seed: int, factor: float = 1.0, length: int = 60, season: int = 12) -> pd.DataFrame:
    """Long frame of ``n`` series: level log-uniform over 10^0.5..10^3, noise, seasonality, a slope,
    zeros and gaps, each in a per-series random amount (times ``factor``)."""
    rng = np.random.default_rng(seed)
    t = np.arange(length)

    def per_series(lo: float, hi: float) -> np.ndarray:
        return rng.uniform(lo, hi, (n, 1))

    y = 10 ** per_series(0.5, 3.0) * (
        1
        + per_series(0.05, 0.3) * rng.normal(size=(n, length))
        + per_series(0, 0.5) * np.sin(2 * np.pi * t / season)
        + per_series(0, 0.01) * t
    )
    y[rng.random((n, length)) < per_series(0, 0.3)] = 0.0
    y[rng.random((n, length)) < per_series(0, 0.2)] = np.nan
    return pd.DataFrame(
        {"unique_id": np.repeat([f"s{i}" for i in range(n)], length), "ds": np.tile(t, n), "y": (y * factor).ravel()}
    )


def test_the_strengths_tell_seasonality_from_trend_from_noise():
    rng = np.random.default_rng(0)
    sine = series_features(np.sin(2 * np.pi * T / 12) + 5, season=12)
    assert sine["seasonal_strength"] > 0.9 and sine["trend_strength"] < 0.1
    trend = series_features(0.5 * T + rng.normal(0, 1, len(T)), season=12)
    assert trend["trend_strength"] > 0.9 and trend["seasonal_strength"] < 0.3
    assert series_features(0.5 * T + rng.normal(0, 1, len(T)))["trend_strength"] > 0.9  # no season: short MA
    for season in (1, 12):
        noise = series_features(rng.normal(0, 1, len(T)), season=season)
        assert noise["trend_strength"] < 0.3 and noise["seasonal_strength"] < 0.3
    # a gap is interpolated, leading/trailing NaN dropped: the sine stays seasonal
    gappy = np.sin(2 * np.pi * T / 12) + 5
    gappy[[0, 1, 40, 41, 42, 119]] = np.nan
    assert series_features(gappy, season=12)["seasonal_strength"] > 0.9
    # too short, or constant: no strength rather than a spurious one
    assert series_features(np.array([1.0, 2.0, 3.0]))["trend_strength"] == 0.0
    assert series_features(np.full(50, 3.0), season=12)["seasonal_strength"] == 0.0
    # fewer than 2 full seasons: no seasonal part
    assert series_features(np.sin(2 * np.pi * T[:20] / 12), season=12)["seasonal_strength"] == 0.0


def test_the_simple_features_are_exact():
    f = series_features(np.array([np.nan, 0.0, 2.0, np.nan, 0.0, 6.0, np.nan, 0.0]))
    assert list(f) == list(FEATURES)
    assert f["missing_share"] == pytest.approx(3 / 8) and f["intermittency"] == pytest.approx(3 / 5)
    known = np.array([0.0, 2.0, 0.0, 6.0, 0.0])  # mean 1.6
    assert f["level"] == pytest.approx(math.log10(1.6))
    assert f["scale"] == pytest.approx(np.std(known) / 1.6)  # population std, as the serving process
    zero_mean = series_features(np.array([-1.0, 1.0]))
    assert zero_mean["level"] == BUCKETS["level"][0] and math.isnan(zero_mean["scale"])
    empty = series_features(np.array([np.nan, np.nan]))
    assert math.isnan(empty["level"]) and math.isnan(empty["intermittency"]) and empty["missing_share"] == 1.0
    assert math.isnan(series_features(np.array([4.0]))["scale"])
    with pytest.raises(ValueError, match="1-D"):
        series_features(np.ones((2, 3)))


def test_the_buckets():
    assert len(BUCKETS["level"]) == 25 and BUCKETS["level"][0] == -3.0 and BUCKETS["level"][-1] == 9.0
    assert BUCKETS["missing_share"] == (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)
    assert set(BUCKETS) == set(FEATURES) == set(FEATURE_DOCS)
    assert all(list(e) == sorted(e) for e in BUCKETS.values())


def test_bucket_counts_follow_prometheus_le_and_invert_the_cumulative_sums():
    edges = (0.0, 0.5, 1.0)
    # a value on an edge belongs to that edge's bucket (le); above the last edge: +Inf; NaN: nowhere
    counts = bucket_counts(np.array([-1.0, 0.0, 0.2, 0.5, 0.5000001, 1.0, 7.0, np.nan]), edges)
    assert counts.tolist() == [2, 2, 2, 1]
    assert bucket_counts(np.array([]), edges).tolist() == [0, 0, 0, 0]
    assert counts_from_cumulative(np.cumsum(counts)).tolist() == counts.tolist()
    assert counts_from_cumulative([3, 5, 5, 9]).tolist() == [3, 2, 0, 4]
    # increase() extrapolates each bucket on its own: a dip of a hair is no negative count
    assert counts_from_cumulative([3.0, 2.999, 4.0]).tolist() == [3.0, 0.0, pytest.approx(1.001)]


def test_psi():
    counts = np.array([10, 40, 30, 20, 0])
    assert psi(counts, counts) == 0.0 and psi(counts, 3 * counts) == pytest.approx(0.0)
    shifted = np.array([0, 10, 40, 30, 20])
    assert psi(counts, shifted) > 1.0 and math.isfinite(psi(counts, shifted))
    assert psi(counts, shifted) == pytest.approx(psi(shifted, counts))  # symmetric
    mild = np.array([12, 38, 30, 20, 0])
    assert 0 < psi(counts, mild) < 0.01
    assert math.isnan(psi(counts, np.zeros(5))) and math.isnan(psi(np.zeros(5), counts))
    with pytest.raises(ValueError, match="same buckets"):
        psi(counts, counts[:-1])


def test_a_level_shift_drifts_and_a_fresh_sample_does_not():
    reference = features_frame(population(300, seed=0), season=12)
    assert reference.notna().all().all() and len(reference) == 300
    # PSI's sampling noise is about (buckets - 1) * (1/n_ref + 1/n_cur): 300 against 300 series over
    # 11 buckets reaches 0.1 by chance, so the fresh sample is larger
    fresh = drift_table(reference, features_frame(population(3000, seed=1), season=12), threshold=0.25)
    assert list(fresh.index) == list(FEATURES) and fresh.index.name == "feature"
    assert (fresh["psi"] < 0.1).all() and not fresh["drifted"].any()
    assert (fresh["n_reference"] == 300).all() and (fresh["n_current"] == 3000).all()

    tripled = features_frame(population(300, seed=0, factor=3.0), season=12)  # the same series, 3x the level
    table = drift_table(reference, tripled, threshold=0.25)
    assert table.loc["level", "psi"] > 0.25 and table.loc["level", "drifted"]
    assert table.loc["level", "current_median"] == pytest.approx(table.loc["level", "reference_median"] + math.log10(3))
    others = table.drop(index="level")  # the other features do not depend on the level
    assert (others["psi"] < 0.01).all() and not others["drifted"].any()

    # the same table from the serving process' histograms: cumulative counts summed over two replicas
    counts = bucket_counts(tripled["level"].to_numpy(), BUCKETS["level"])
    half = counts // 2
    cumulative = np.cumsum(half) + np.cumsum(counts - half)
    served = drift_table(reference, None, 0.25, current_counts={"level": counts_from_cumulative(cumulative)})
    assert served.loc["level", "psi"] == pytest.approx(table.loc["level", "psi"])
    assert served.loc["level", "n_current"] == 300 and math.isnan(served.loc["level", "current_median"])
    assert served.loc["level", "drifted"]
    assert served.drop(index="level")["psi"].isna().all()  # no current data for them
    assert not served.drop(index="level")["drifted"].any()
    with pytest.raises(ValueError, match="BUCKETS"):
        drift_table(reference, None, 0.25, current_counts={"level": np.ones(13)})  # the old 1-wide buckets


def test_features_frame_keeps_the_last_window_by_ds_and_matches_series_features():
    frame = population(40, seed=3, length=50).sample(frac=1.0, random_state=0)  # unsorted
    frame["ds"] = pd.Timestamp("2024-01-01") + pd.to_timedelta(frame["ds"], unit="D")
    # the last 24 days, with a jump only in the earlier days: the window must not see it
    frame.loc[frame["ds"] < pd.Timestamp("2024-01-27"), "y"] += 1e6
    whole = features_frame(frame, season=12)
    last = features_frame(frame, season=12, window=24)
    assert list(last.index) == sorted(frame["unique_id"].unique()) and last.index.name == "unique_id"
    assert list(last.columns) == list(FEATURES)
    assert (whole["level"] > 5).all() and (last["level"] < 3.5).all()
    for uid in ("s0", "s7", "s39"):
        values = frame[frame["unique_id"] == uid].sort_values("ds")["y"].to_numpy()
        expected = series_features(values[-24:], season=12)
        np.testing.assert_allclose(
            last.loc[uid, list(FEATURES)].to_numpy(float), [expected[f] for f in FEATURES], rtol=1e-9, atol=1e-12
        )
        expected = series_features(values, season=12)
        np.testing.assert_allclose(
            whole.loc[uid, list(FEATURES)].to_numpy(float), [expected[f] for f in FEATURES], rtol=1e-9, atol=1e-12
        )
    # series of different lengths, one all missing, one too short: batched by length, same values
    mixed = pd.DataFrame(
        {
            "unique_id": ["a"] * 30 + ["b"] * 3 + ["c"] * 17,
            "ds": np.r_[np.arange(30), np.arange(3), np.arange(17)],
            "y": np.r_[np.sin(np.arange(30)), [np.nan] * 3, np.arange(17.0)],
        }
    )
    table = features_frame(mixed.iloc[::-1], season=4)
    for uid, group in mixed.groupby("unique_id"):
        expected = series_features(group["y"].to_numpy(), season=4)
        np.testing.assert_allclose(table.loc[uid].to_numpy(float), [expected[f] for f in FEATURES], rtol=1e-9)
    assert features_frame(mixed.iloc[:0]).empty
    with pytest.raises(ValueError, match="window"):
        features_frame(mixed, window=0)


def test_features_of_many_series_equal_each_series_alone():
    from evaluation.drift import features_of

    rng = np.random.default_rng(3)
    series = [rng.normal(10, 2, n) for n in (5, 40, 40, 2, 97)]
    series[2][[3, 7]] = np.nan
    batch = features_of(series, season=4)
    for i, v in enumerate(series):
        one = series_features(v, season=4)
        for f in FEATURES:
            np.testing.assert_allclose(batch[f][i], one[f], equal_nan=True, err_msg=f)
