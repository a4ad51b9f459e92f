"""Backbone, scaler, presets and inference on real (randomly initialised) tiny models."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from models.backbone.config import BackboneConfig
from models.backbone.io import load_backbone, save_backbone
from models.backbone.network import PatchBackbone
from models.backbone.presets import PRESETS, count_parameters, get_preset
from models.backbone.scaler import causal_scale
from models.forecasting.batch import batch_forecast, bucket_length
from models.metrics import QUANTILES, pinball_loss

P = 8  # tiny patch size


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/models/conftest.py


@pytest.fixture(scope="module")
def model() -> PatchBackbone:
    torch.manual_seed(0)
    return PatchBackbone(get_preset("tiny")).eval()


def seasonal(n: int, level: float = 10.0) -> torch.Tensor:
    t = torch.arange(n, dtype=torch.float32)
    return level + 3 * torch.sin(2 * math.pi * t / 12) + 0.01 * t


def test_pinball_loss_values():
    target = torch.tensor([1.0, 2.0])
    pred = torch.tensor([[0.0] * 9, [2.0] * 9])
    # first row: target above every quantile -> mean(q) * 1; second row: exact -> 0
    expected = (sum(QUANTILES) / 9 * 1.0 + 0.0) / 2
    assert pinball_loss(pred, target).item() == pytest.approx(expected)
    masked = pinball_loss(pred, target, mask=torch.tensor([False, True]))
    assert masked.item() == 0.0
    # NaN targets that are masked out must not poison the loss
    nan_target = torch.tensor([float("nan"), 2.0])
    assert pinball_loss(pred, nan_target, mask=torch.tensor([False, True])).item() == 0.0


def test_scaler_is_causal_and_ignores_missing():
    torch.manual_seed(1)
    x = torch.randn(2, 3, 64) * 5 + 100
    obs = torch.ones_like(x, dtype=torch.bool)
    norm, loc, scale = causal_scale(x, obs, P, 1e-3)
    assert norm.shape == (2, 3, 64) and loc.shape == scale.shape == (2, 3, 8)
    # changing the future leaves every earlier patch untouched
    y = x.clone()
    y[..., 40:] += 1000
    norm2, loc2, scale2 = causal_scale(y, obs, P, 1e-3)
    assert torch.equal(loc[..., :5], loc2[..., :5]) and torch.equal(scale[..., :5], scale2[..., :5])
    assert torch.equal(norm[..., :40], norm2[..., :40])
    # a patch uses the statistics at its last step: patch 0 = mean/std of x[..., :8]
    ref = x[..., :8].double()
    assert torch.allclose(loc[..., 0].double(), ref.mean(-1), atol=1e-4)
    assert torch.allclose(scale[..., 0].double(), ref.std(-1, unbiased=False), atol=1e-4)
    # missing points do not move the statistics, whatever value they hold
    obs3 = obs.clone()
    obs3[..., 20:30] = False
    a = causal_scale(x, obs3, P, 1e-3)
    z = x.clone()
    z[..., 20:30] = -1e9
    b = causal_scale(z, obs3, P, 1e-3)
    for u, v in zip(a, b):
        assert torch.equal(u, v)
    assert torch.all(a[0][..., 20:30] == 0)


def test_scaler_min_scale_and_large_level():
    const = torch.full((1, 1, 32), 5e6)
    norm, loc, scale = causal_scale(const, torch.ones_like(const, dtype=torch.bool), P, 1e-3)
    assert torch.allclose(scale, torch.full_like(scale, 1e-3)) and torch.all(loc == 5e6)
    assert torch.all(norm == 0)
    # float64 statistics with a shift: a small std on a huge level is still exact
    x = 1e7 + torch.tensor([1.0, -1.0] * 16).view(1, 1, 32)
    _, _, scale = causal_scale(x, torch.ones_like(x, dtype=torch.bool), P, 1e-3)
    assert torch.allclose(scale, torch.ones_like(scale), atol=1e-6)


def test_forward_shapes_and_time_causality(model):
    torch.manual_seed(2)
    x = torch.randn(2, 3, 64)
    obs = torch.ones_like(x, dtype=torch.bool)
    out = model(x, obs)
    assert out.knots.shape == (2, 3, 8, P, 9)
    assert out.hidden.shape == (2, 3, 8, 64) and out.loc.shape == out.scale.shape == (2, 3, 8)
    y = x.clone()
    y[..., 48:] = 50.0  # patches 6, 7 change; outputs at patches 0..5 must not
    out2 = model(y, obs)
    assert torch.allclose(out.knots[:, :, :6], out2.knots[:, :, :6], atol=1e-5)
    assert not torch.allclose(out.knots[:, :, 6:], out2.knots[:, :, 6:])


def test_variate_attention_respects_groups(model):
    torch.manual_seed(3)
    x = torch.randn(1, 3, 32)
    obs = torch.ones_like(x, dtype=torch.bool)
    groups = torch.tensor([[0, 0, 1]])
    y = x.clone()
    y[0, 2] = torch.randn(32) * 10  # only the series in group 1 changes
    a, b = model(x, obs, groups), model(y, obs, groups)
    assert torch.allclose(a.knots[:, :2], b.knots[:, :2], atol=1e-5)
    # without groups every series sees the others
    a, b = model(x, obs), model(y, obs)
    assert not torch.allclose(a.knots[:, :2], b.knots[:, :2], atol=1e-5)


@pytest.mark.parametrize("T,H", [(0, 1), (5, 3), (37, 13), (96, 16), (2000, 24), (100, 300)])
def test_forecast_any_length_and_horizon(model, T, H):
    ctx = seasonal(T)[None].repeat(2, 1)
    fc = model.forecast(ctx, H)
    assert fc.quantiles.shape == fc.norm_quantiles.shape == (2, H, 9)
    assert fc.loc.shape == fc.scale.shape == (2,) and fc.embedding.shape == (2, 64)
    assert torch.all(fc.quantiles.diff(dim=-1) >= 0), "quantiles cross"
    assert torch.isfinite(fc.quantiles).all() and torch.isfinite(fc.embedding).all()
    expected = (fc.quantiles - fc.loc[:, None, None]) / fc.scale[:, None, None]
    assert torch.allclose(fc.norm_quantiles, expected, rtol=1e-4, atol=1e-3)


def test_forecast_rejects_horizon_without_room(model):
    with pytest.raises(ValueError, match="no room"):
        model.forecast(seasonal(32)[None], 512)


def test_padding_value_does_not_change_the_forecast(model):
    ctx = seasonal(50)[None]  # 50 -> left-padded by 6 to 56 inside forecast
    base = model.forecast(ctx, 12)
    # the same context with explicit missing history of any length up to the patch grid
    nan_pad = torch.cat([torch.full((1, 6), float("nan")), ctx], dim=1)
    same = model.forecast(nan_pad, 12)
    assert torch.equal(base.quantiles, same.quantiles) and torch.equal(base.embedding, same.embedding)
    # forward level: values under observed=False are ignored, whatever they are
    x = torch.cat([torch.zeros(1, 1, 16), seasonal(48)[None, None]], dim=-1)
    obs = torch.ones_like(x, dtype=torch.bool)
    obs[..., :16] = False
    obs[..., 30:33] = False  # and a gap in the middle
    outs = []
    for fill in (0.0, 1e6, float("nan"), -3.0):
        xf = x.clone()
        xf[~obs] = fill
        outs.append(model(xf, obs))
    for o in outs[1:]:
        assert torch.equal(o.knots, outs[0].knots) and torch.equal(o.hidden, outs[0].hidden)


@pytest.mark.parametrize(
    "case", ["all_zero", "zeros_then_spike", "spike_then_zeros", "sparse", "all_nan", "huge", "tiny_values"]
)
def test_zero_heavy_and_extreme_series_give_finite_forecasts(model, case):
    n = 200
    x = torch.zeros(n)
    if case == "zeros_then_spike":
        x[-1] = 1e4
    elif case == "spike_then_zeros":
        x[50] = 1e4
    elif case == "sparse":
        x[::37] = torch.tensor([3.0, 0.5, 7.0, 1.0, 2.0, 9.0])[: len(x[::37])]
    elif case == "all_nan":
        x[:] = float("nan")
    elif case == "huge":
        x = seasonal(n) * 1e9
    elif case == "tiny_values":
        x = seasonal(n) * 1e-9
    fc = model.forecast(x[None], 48)
    for t in (fc.quantiles, fc.norm_quantiles, fc.loc, fc.scale, fc.embedding):
        assert torch.isfinite(t).all(), case
    if case == "all_zero":
        # a flat zero history is scaled by the minimum scale only: the forecast stays near 0
        assert fc.quantiles.abs().max() < 1.0


def test_preset_parameter_counts_match_their_names():
    expected = {"4m": 4e6, "22m": 22e6, "313m": 313e6, "1b": 1e9, "2.5b": 2.5e9}
    for name, target in expected.items():
        n = count_parameters(get_preset(name))
        assert abs(n - target) / target < 0.10, (name, n)
    assert count_parameters(get_preset("tiny")) < 1e6
    assert set(PRESETS) == {"tiny", *expected}
    with pytest.raises(KeyError, match="valid presets: tiny, 4m"):
        get_preset("3m")


def test_config_roundtrip_and_validation():
    cfg = get_preset("22m")
    assert BackboneConfig.from_dict(cfg.to_dict()) == cfg
    assert [cfg.is_variate_layer(i) for i in range(6)] == [False] * 5 + [True]
    assert [get_preset("313m").is_variate_layer(i) for i in range(24)].count(True) == 2
    with pytest.raises(ValueError):
        BackboneConfig(d_model=60, d_ff=8, n_heads=4, n_layers=1, patch_size=8, max_context=64, variate_every=0)


def test_save_load_roundtrip_gives_identical_output(model, tmp_path):
    save_backbone(model, tmp_path / "bb")
    assert (tmp_path / "bb" / "config.json").is_file() and (tmp_path / "bb" / "weights.pt").is_file()
    loaded = load_backbone(tmp_path / "bb")
    assert loaded.config == model.config and not loaded.training
    ctx = seasonal(77)[None]
    a, b = model.forecast(ctx, 20), loaded.forecast(ctx, 20)
    assert torch.equal(a.quantiles, b.quantiles) and torch.equal(a.embedding, b.embedding)


def test_batch_forecast_matches_forecast(model):
    rng = np.random.default_rng(0)
    contexts = [rng.normal(5, 1, n).astype(np.float32) for n in (3, 40, 64, 300)]
    out = batch_forecast(model, contexts, horizon=10, context_length=64, batch_size=3)
    assert out.quantiles.shape == out.norm_quantiles.shape == (4, 10, 9)
    assert out.loc.shape == out.scale.shape == (4,) and out.embedding.shape == (4, 64)
    assert all(v.dtype == np.float32 for v in out)
    # one series alone: last 64 points, NaN-padded to its length bucket, through forecast
    for i, c in enumerate(contexts):
        width = bucket_length(len(c), 64, model.config.patch_size)
        padded = np.full(width, np.nan, np.float32)
        tail = c[-width:]
        padded[width - len(tail) :] = tail
        with torch.no_grad():
            ref = model.forecast(torch.from_numpy(padded)[None], 10)
        np.testing.assert_allclose(out.quantiles[i], ref.quantiles[0].numpy(), rtol=1e-5, atol=1e-5)
    # a series' forecast does not depend on the series beside it in the call
    alone = batch_forecast(model, contexts[1:2], horizon=10, context_length=64)
    np.testing.assert_allclose(alone.quantiles[0], out.quantiles[1], rtol=1e-5, atol=1e-5)
    empty = batch_forecast(model, [], horizon=10, context_length=64)
    assert empty.quantiles.shape == (0, 10, 9)


def test_preset_table_prints_every_preset_with_its_count():
    from models.backbone.presets import preset_table

    lines = preset_table().splitlines()
    assert len(lines) == 2 + len(PRESETS)
    assert any(line.startswith("| 313m | 1024 | 2736 | 16 | 24 | 16 |") and "308,706,176" in line for line in lines)
