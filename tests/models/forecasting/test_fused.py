import numpy as np
import pytest
import torch

from models.backbone.network import PatchBackbone
from models.backbone.presets import get_preset
from models.forecasting.batch import batch_forecast
from models.forecasting.fused import FusedForecaster
from models.forecasting.inputs import strip_left_nan
from models.forecasting.teacher import TeacherForecaster
from models.memory.adapter import AdapterShape, MemoryAdapter, adapter_forecast
from models.memory.fusion import choose_alpha, fuse, fuse_torch
from models.memory.teacher import KnnTeacher
from models.memory.windows import sliding_windows
from models.metrics import scaled_crps_pooled

C, H = 32, 4


def _series(n=6, length=60, seed=0):
    rng = np.random.default_rng(seed)
    t = np.arange(length)
    return [
        (rng.uniform(10, 100) + 5 * np.sin(2 * np.pi * t / 12 + rng.uniform(0, 6)) + rng.normal(0, 0.3, length)).astype(
            np.float32
        )
        for _ in range(n)
    ]


@pytest.fixture(scope="module")
def parts():
    torch.manual_seed(0)
    backbone = PatchBackbone(get_preset("tiny")).eval()
    torch.manual_seed(1)
    adapter = MemoryAdapter(AdapterShape(d_model=backbone.config.d_model, horizon=H, hidden=16))
    with torch.no_grad():  # a non-trivial adapter: the zero-initialised last layer made random
        adapter.out.weight.normal_(0, 0.1)
    return backbone, adapter


def test_fuse_endpoints_and_sorting():
    rng = np.random.default_rng(0)
    base = np.sort(rng.normal(size=(3, 4, 9)), -1)
    mem = rng.normal(size=(3, 4, 9))  # deliberately unsorted
    assert np.array_equal(fuse(base, mem, 0.0), base)
    np.testing.assert_allclose(fuse(base, mem, 1.0), np.sort(mem, -1))
    assert (np.diff(fuse(base, mem, 0.4), axis=-1) >= 0).all()


def test_scaled_crps_of_a_point_forecast_is_relative_abs_error():
    y = np.array([[1.0, 2.0, np.nan], [3.0, 4.0, 5.0]])
    q = np.repeat((y + 0.5)[..., None], 9, -1)  # degenerate forecast, 0.5 off everywhere
    assert scaled_crps_pooled(y, q) == pytest.approx(0.5 / np.nanmean(np.abs(y)))


def test_choose_alpha_finds_the_best_mixture_and_breaks_ties_low():
    rng = np.random.default_rng(0)
    y = rng.normal(10, 1, size=(50, 4))
    noise = np.sort(rng.normal(0, 0.3, size=(50, 4, 9)), -1)
    # base is 2 too high, mem 2 too low: the truth sits exactly half way
    base, mem = y[..., None] + 2 + noise, y[..., None] - 2 + noise
    alpha, table = choose_alpha(base, mem, y, [round(0.1 * i, 1) for i in range(11)])
    assert alpha == 0.5
    assert [r["alpha"] for r in table] == [round(0.1 * i, 1) for i in range(11)]
    assert min(table, key=lambda r: r["sCRPS"])["alpha"] == 0.5
    # identical candidates: every alpha ties, the smallest wins
    alpha, _ = choose_alpha(base, base.copy(), y, [1.0, 0.3, 0.7])
    assert alpha == 0.3


def test_alpha_zero_is_the_backbone_exactly(parts):
    backbone, adapter = parts
    ctx = _series()
    fused = FusedForecaster(backbone, adapter, alpha=0.0, context_length=C, horizon=H)
    expected = batch_forecast(backbone, ctx, H, C).quantiles
    assert np.array_equal(fused.predict(ctx, H).quantiles, expected)
    # with alpha = 1 the adapter does change the forecast
    assert not np.allclose(FusedForecaster(backbone, adapter, 1.0, C, H).predict(ctx, H).quantiles, expected)


def test_fuse_torch_is_fuse():
    rng = np.random.default_rng(1)
    base = np.sort(rng.normal(size=(5, 4, 9)), -1).astype(np.float32)
    mem = rng.normal(size=(5, 4, 9)).astype(np.float32)
    for a in (0.0, 0.3, 1.0):
        assert np.array_equal(fuse_torch(torch.from_numpy(base), torch.from_numpy(mem), a).numpy(), fuse(base, mem, a))


def _ragged(seed=7):
    """Series of mixed length (shorter and longer than the context), level and missing values."""
    rng = np.random.default_rng(seed)
    sizes, scales = [3, 20, 31, 32, 33, 90, 45], [1, 1e3, 5, 0.1, 50, 7, 2]
    out = [(rng.normal(size=n).cumsum() * s + s).astype(np.float32) for n, s in zip(sizes, scales)]
    out[5][-4] = np.nan
    return out


def test_one_pass_equals_the_two_pass_reference(parts):
    """The single inference pass gives what backbone -> numpy -> adapter -> numpy fusion gave."""
    backbone, adapter = parts
    ctx = _ragged()
    for batch_size in (256, 3):  # one chunk, and chunks that split the list unevenly
        fused = FusedForecaster(backbone, adapter, alpha=0.4, context_length=C, horizon=H, batch_size=batch_size)
        base = batch_forecast(backbone, ctx, H, C, batch_size=batch_size)  # same chunks: same float sums
        q_mem = adapter_forecast(adapter, base.embedding, base.norm_quantiles, batch_size)
        q_mem = q_mem * base.scale[:, None, None] + base.loc[:, None, None]
        expected = fuse(base.quantiles, q_mem, 0.4)[:, :3]
        np.testing.assert_allclose(fused.predict(ctx, 3).quantiles, expected, rtol=1e-5, atol=1e-5)


def test_predict_leaves_module_modes_alone_and_handles_no_series(parts):
    backbone, adapter = parts
    fused = FusedForecaster(backbone, adapter, alpha=0.5, context_length=C, horizon=H)
    ctx = _series()
    expected = fused.predict(ctx, H).quantiles
    backbone.train(), adapter.train()
    try:
        assert np.array_equal(fused.predict(ctx, H).quantiles, expected)  # forecasts in eval mode
        assert backbone.training and adapter.training  # and gives the modes back
    finally:
        backbone.eval(), adapter.eval()
    assert fused.predict([], 2).quantiles.shape == (0, 2, 9)


def test_horizon_checks_and_prefix(parts):
    backbone, adapter = parts
    fused = FusedForecaster(backbone, adapter, alpha=0.5, context_length=C, horizon=H)
    ctx = _series()
    full = fused.predict(ctx, H).quantiles
    assert full.shape == (6, H, 9) and (np.diff(full, axis=-1) >= 0).all()
    assert np.array_equal(fused.predict(ctx, 2).quantiles, full[:, :2])
    with pytest.raises(ValueError, match="trained for"):
        fused.predict(ctx, H + 1).quantiles


def test_fused_save_load_roundtrip(parts, tmp_path):
    backbone, adapter = parts
    fused = FusedForecaster(backbone, adapter, alpha=0.7, context_length=C, horizon=H)
    ctx = _series(seed=3)
    loaded = FusedForecaster.load(fused.save(tmp_path / "fused"))
    assert (loaded.alpha, loaded.context_length, loaded.horizon) == (0.7, C, H)
    assert np.array_equal(loaded.predict(ctx, H).quantiles, fused.predict(ctx, H).quantiles)


def test_teacher_forecaster_predict_and_roundtrip(parts, tmp_path):
    backbone, _ = parts
    train = _series(seed=5)
    w = sliding_windows(train, C, H, min_context=16)
    keys = batch_forecast(backbone, [strip_left_nan(c) for c in w.context], H, C).embedding
    tf = TeacherForecaster(backbone, KnnTeacher(keys, w.context, w.future), C, H)
    ctx = [s[:50] for s in train]
    pred = tf.predict(ctx, H).quantiles
    assert pred.shape == (6, H, 9) and np.isfinite(pred).all() and (np.diff(pred, axis=-1) >= 0).all()
    loaded = TeacherForecaster.load(tf.save(tmp_path / "teacher"))
    assert np.array_equal(loaded.predict(ctx, 3).quantiles, pred[:, :3])
    with pytest.raises(ValueError):
        tf.predict(ctx, H + 1).quantiles
