"""The ensemble forecaster answers with its members' weighted quantiles and survives a save and a
load; a statistical member reuses the parameters fitted at onboarding for a series it knows."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from models.backbone.network import PatchBackbone
from models.backbone.presets import get_preset
from models.forecasting.backbone import BackboneForecaster
from models.forecasting.ensemble import EnsembleForecaster
from models.forecasting.statistical import StatisticalForecaster, fit_one

H = 6


def _series(n=4, length=72, seed=0):
    rng = np.random.default_rng(seed)
    t = np.arange(length)
    return [
        (rng.uniform(20, 80) + 6 * np.sin(2 * np.pi * t / 12) + rng.normal(0, 0.5, length)).astype(np.float32)
        for _ in range(n)
    ]


@pytest.fixture(scope="module")
def members():
    torch.manual_seed(0)
    series = _series()
    ids = [f"s{i}" for i in range(len(series))]
    fitted = {u: fit_one(x, H, 12, "auto_ets", keep=True)[2] for u, x in zip(ids, series)}
    ets = StatisticalForecaster("auto_ets", 12, dict.fromkeys(ids, 12), fitted)
    backbone = BackboneForecaster(PatchBackbone(get_preset("tiny")).eval(), context_length=32)
    return series, ids, {"auto_ets": ets, "backbone": backbone}


def test_the_answer_is_the_weighted_mean_of_the_members(members):
    series, ids, parts = members
    ens = EnsembleForecaster(parts, {"auto_ets": 3, "backbone": 1}, {"auto_ets": "statistical", "backbone": "backbone"})
    assert ens.weights == {"auto_ets": 0.75, "backbone": 0.25} and ens.backbone is parts["backbone"].backbone
    q = ens.predict(series, H, ids=ids).quantiles
    expected = sum(
        w * parts[f].predict(series, H, ids=ids).quantiles.astype(np.float64) for f, w in ens.weights.items()
    )
    np.testing.assert_allclose(q, expected, rtol=1e-5)
    assert (np.diff(q, axis=-1) >= 0).all()


def test_assembled_from_saved_members_and_loaded_with_a_shared_backbone(members, tmp_path):
    series, ids, parts = members
    folders = {f: (k, m.save(tmp_path / f)) for (f, m), k in zip(parts.items(), ("statistical", "backbone"))}
    out = EnsembleForecaster.assemble(tmp_path / "ensemble", folders, {"auto_ets": 0.6, "backbone": 0.4}, None)
    assert (out / "backbone").is_dir() and not (out / "members" / "backbone" / "backbone").exists()
    loaded = EnsembleForecaster.load(out)
    direct = EnsembleForecaster(
        parts, {"auto_ets": 0.6, "backbone": 0.4}, {"auto_ets": "statistical", "backbone": "backbone"}
    )
    np.testing.assert_allclose(
        loaded.predict(series, H, ids=ids).quantiles, direct.predict(series, H, ids=ids).quantiles, rtol=1e-5
    )
    # a server holding the backbone already passes it in: the members use that very object
    shared = EnsembleForecaster.load(out, backbone=parts["backbone"].backbone)
    assert shared.members["backbone"].backbone is parts["backbone"].backbone
    with pytest.raises(ValueError, match="cannot hold"):
        EnsembleForecaster.assemble(tmp_path / "bad", {"e": ("ensemble", out)}, {"e": 1.0}, None)  # no nesting


def test_a_known_series_reuses_its_fitted_parameters_and_anything_else_is_refitted(members, tmp_path):
    series, ids, parts = members
    ets = StatisticalForecaster.load(parts["auto_ets"].save(tmp_path / "ets"))  # fitted.pkl travels with it
    extended = [np.concatenate([x, x[-12:]]) for x in series]  # new points after the fitted history
    ets.predict(extended, H, ids=ids)
    assert ets.reused == len(series)
    # the fitted history itself: the same forecast as a fresh fit
    np.testing.assert_allclose(
        ets.predict(series[:1], H, ids=ids[:1]).quantiles[0], fit_one(series[0], H, 12, "auto_ets")[0], rtol=1e-4
    )
    before = ets.reused
    ets.predict([x[-40:] for x in extended], H, ids=ids)  # a trailing window: the fitted start is gone
    ets.predict(extended, H, ids=[f"new{i}" for i in range(len(ids))])  # unknown series
    assert ets.reused == before  # neither was answered from fitted parameters


def test_a_long_history_is_fitted_on_its_latest_points_and_found_again_when_served():
    from models.forecasting.statistical import MAX_HISTORY, extends

    rng = np.random.default_rng(3)
    x = 100 + 10 * np.sin(2 * np.pi * np.arange(MAX_HISTORY + 500) / 24) + rng.normal(0, 1, MAX_HISTORY + 500)
    q, _, state = fit_one(x, 24, 24, "theta", keep=True)
    assert state["n"] == MAX_HISTORY  # the first 500 points were never read
    np.testing.assert_allclose(q, fit_one(x[-MAX_HISTORY:], 24, 24, "theta")[0])
    grown = np.concatenate([x, x[-48:]])
    assert extends(grown, state) == 500 and extends(grown[400:], state) == 100  # wherever the client's window starts
    assert extends(grown[600:], state) is None  # the fitted start is gone: refit
    theta = StatisticalForecaster("theta", 24, {"s": 24}, {"s": state})
    theta.predict([grown[400:].astype(np.float64)], 24, ids=["s"])
    assert theta.reused == 1
