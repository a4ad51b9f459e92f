"""Full fine-tuning of a tiny, randomly initialised backbone on a seasonal domain."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from models.backbone.decode import decode_horizon, knots_to_quantiles
from models.backbone.network import PatchBackbone
from models.backbone.presets import get_preset
from models.forecasting.batch import batch_forecast
from models.forecasting.inputs import left_pad
from models.memory.config import FinetuneConfig
from models.memory.finetune import finetune_backbone, finetune_loss, validation_scores
from models.memory.windows import sliding_windows
from models.metrics import scaled_crps_pooled

N_SERIES, LENGTH, H, C = 16, 80, 6, 32
CFG = FinetuneConfig(max_steps=60, batch_size=32, lr=3e-3, warmup_steps=5, eval_every=15, patience=3, seed=0)


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/models/conftest.py


def _backbone(seed: int = 0) -> PatchBackbone:
    torch.manual_seed(seed)
    return PatchBackbone(get_preset("tiny")).eval()


def _domain(seed: int = 0) -> tuple[list[np.ndarray], np.ndarray]:
    """Per series: (train part, validation targets [H]); level 20..200, period 12."""
    rng = np.random.default_rng(seed)
    t = np.arange(LENGTH)
    series = [
        rng.uniform(20, 200) * (1 + 0.3 * np.sin(2 * np.pi * t / 12 + rng.uniform(0, 2 * np.pi)))
        + rng.normal(0, 2, LENGTH)
        for _ in range(N_SERIES)
    ]
    return [s[:-H].astype(np.float32) for s in series], np.stack([s[-H:] for s in series]).astype(np.float32)


@pytest.fixture(scope="module")
def domain():
    train, val_truth = _domain()
    return sliding_windows(train, C, H, stride=1, min_context=8), train, val_truth


def _state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def _strip_seconds(history: list[dict]) -> list[dict]:
    return [{k: v for k, v in row.items() if k != "seconds"} for row in history]


@pytest.mark.parametrize(("length", "horizon"), [(13, 11), (32, 6), (600, 11), (0, 3)])
def test_training_path_decodes_the_horizon_exactly_as_forecast(length, horizon):
    # context not a multiple of the patch, horizon not one, context past max_context, empty
    model = _backbone()
    g = torch.Generator().manual_seed(1)
    ctx = 50 + 10 * torch.randn(4, length, generator=g)
    if length > 4:
        ctx[0, :3] = float("nan")  # left padding
        ctx[1, 2] = float("nan")  # a gap
    with torch.no_grad():
        fc = model.forecast(ctx, horizon)
        knots, loc, scale, _ = decode_horizon(model, ctx, horizon)
        quantiles, norm_q = knots_to_quantiles(knots, loc, scale)
    assert knots.shape == (4, horizon, 9)
    torch.testing.assert_close(norm_q, fc.norm_quantiles, rtol=0, atol=0)
    torch.testing.assert_close(quantiles, fc.quantiles, rtol=0, atol=0)
    torch.testing.assert_close(loc, fc.loc, rtol=0, atol=0)
    torch.testing.assert_close(scale, fc.scale, rtol=0, atol=0)


@pytest.mark.parametrize("horizon", [16, 11])
def test_loss_is_the_pretraining_objective_on_the_horizon(horizon):
    from models.pretraining.module import PretrainModule

    model = _backbone()
    module = PretrainModule(model.config.to_dict(), future_length=horizon)
    module.model.load_state_dict(model.state_dict())
    g = torch.Generator().manual_seed(2)
    ctx, fut = 30 + 5 * torch.randn(3, 32, generator=g), 30 + 5 * torch.randn(3, horizon, generator=g)
    # pre-training's window: context, then whole masked patches; steps past the horizon unobserved
    future_steps = 8 * math.ceil(horizon / 8)
    values = torch.cat([ctx, torch.nn.functional.pad(fut, (0, future_steps - horizon))], dim=1)[:, None]
    observed = torch.ones_like(values, dtype=torch.bool)
    observed[..., values.shape[-1] - future_steps + horizon :] = False
    with torch.no_grad():
        expected, _ = module.masked_loss({"values": values, "observed": observed})
        got = finetune_loss(model, ctx, fut)
    torch.testing.assert_close(got, expected, rtol=1e-6, atol=1e-7)


def test_nan_targets_count_as_no_target():
    model = _backbone()
    g = torch.Generator().manual_seed(3)
    ctx, fut = 40 + 8 * torch.randn(5, C, generator=g), 40 + 8 * torch.randn(5, H, generator=g)
    h = 4
    padded = fut.clone()
    padded[:, h:] = float("nan")
    # the masked patches past the horizon cannot change earlier ones (causal): the truncated
    # window gives the same loss, and NaN reaches neither the loss nor the gradient
    losses, grads = [], []
    for f in (padded, fut[:, :h]):
        model.zero_grad()
        loss = finetune_loss(model, ctx, f)
        loss.backward()
        losses.append(loss.detach())
        grads.append(torch.cat([p.grad.flatten() for p in model.parameters()]))
    assert torch.isfinite(losses[0]) and torch.isfinite(grads[0]).all()
    torch.testing.assert_close(losses[0], losses[1], rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-4, atol=1e-7)
    # and it differs from the full-horizon loss: the NaN steps were really dropped, not zeroed
    with torch.no_grad():
        assert not torch.isclose(finetune_loss(model, ctx, padded), finetune_loss(model, ctx, fut))
        zeroed = torch.nan_to_num(padded, nan=0.0)
        assert not torch.isclose(finetune_loss(model, ctx, padded), finetune_loss(model, ctx, zeroed))


def test_finetuning_improves_validation_restores_best_and_is_deterministic(domain):
    win, train, val_truth = domain
    backbone = _backbone()
    before = _state(backbone)
    rng_before = torch.get_rng_state()
    logged: list[dict] = []
    tuned, hist = finetune_backbone(backbone, win, train, val_truth, H, C, CFG, log_fn=logged.append)
    assert _same(_state(backbone), before)  # the backbone passed in is untouched
    assert torch.equal(torch.get_rng_state(), rng_before)  # and so is the global RNG
    assert tuned is not backbone and not tuned.training

    assert hist[0]["step"] == 0 and hist[0]["train_loss"] is None
    assert [r["step"] for r in logged] == [r["step"] for r in hist]
    assert sum(r["best"] for r in hist) == 1
    best = min(hist, key=lambda r: r["val_score"])
    assert best["best"] and best["val_score"] == best["val_sCRPS"]  # default metric
    assert best["val_sCRPS"] < 0.5 * hist[0]["val_sCRPS"]  # the random backbone is poor here
    assert best["val_pinball"] < 0.5 * hist[0]["val_pinball"]
    # the restored weights are the best ones, and the score is that of forecast()'s quantiles
    q = batch_forecast(tuned, train, H, C).quantiles
    assert scaled_crps_pooled(val_truth, q) == pytest.approx(best["val_sCRPS"], rel=1e-5)
    base_q = batch_forecast(backbone, train, H, C).quantiles
    assert scaled_crps_pooled(val_truth, base_q) == pytest.approx(hist[0]["val_sCRPS"], rel=1e-5)

    again, hist2 = finetune_backbone(backbone, win, train, val_truth, H, C, CFG)
    assert _same(_state(again), _state(tuned))
    assert _strip_seconds(hist2) == _strip_seconds(hist)
    other, _ = finetune_backbone(backbone, win, train, val_truth, H, C, CFG.model_copy(update={"seed": 1}))
    assert not _same(_state(other), _state(tuned))  # the seed does matter


def test_pinball_selection_and_right_padded_futures(domain):
    win, train, val_truth = domain
    cfg = CFG.model_copy(update={"max_steps": 20, "eval_every": 10, "val_metric": "pinball"})
    backbone = _backbone()
    short = (win.context, win.future[:, :4])  # a domain whose own horizon is 4
    padded = (win.context, np.pad(win.future[:, :4], ((0, 0), (0, H - 4)), constant_values=np.nan))
    a, ha = finetune_backbone(backbone, short, train, val_truth, H, C, cfg)
    b, hb = finetune_backbone(backbone, padded, train, val_truth, H, C, cfg)
    assert _same(_state(a), _state(b)) and _strip_seconds(ha) == _strip_seconds(hb)
    assert all(r["val_score"] == r["val_pinball"] for r in ha)
    assert min(r["val_pinball"] for r in ha[1:]) < ha[0]["val_pinball"]
    scores = validation_scores(a, left_pad(train, C), val_truth)
    assert scores["pinball"] == pytest.approx(min(r["val_pinball"] for r in ha), rel=1e-5)


@pytest.mark.parametrize("change", [{"lr": 0.0}, {"lr": 1.0}, {"max_steps": 0}])
def test_training_that_does_not_help_returns_the_original_weights(domain, change):
    # lr 0: nothing moves; lr 1: every weight is thrown far off, validation gets worse
    win, train, val_truth = domain
    cfg = CFG.model_copy(update={"max_steps": 10, "eval_every": 5, "warmup_steps": 0, **change})
    backbone = _backbone()
    tuned, hist = finetune_backbone(backbone, win, train, val_truth, H, C, cfg)
    assert hist[0]["best"] and not any(r["best"] for r in hist[1:])
    assert _same(_state(tuned), _state(backbone))
    assert len(hist) == (1 if cfg.max_steps == 0 else 3)
    if change.get("lr") == 1.0:
        assert all(r["val_score"] > hist[0]["val_score"] for r in hist[1:])


def test_early_stopping_and_bad_inputs(domain):
    win, train, val_truth = domain
    cfg = CFG.model_copy(update={"lr": 1.0, "max_steps": 100, "eval_every": 2, "patience": 2, "warmup_steps": 0})
    _, hist = finetune_backbone(_backbone(), win, train, val_truth, H, C, cfg)
    assert [r["step"] for r in hist] == [0, 2, 4]  # two validations without improvement
    with pytest.raises(ValueError, match="val_metric"):
        FinetuneConfig(val_metric="mase")
    with pytest.raises(ValueError, match="no known target"):
        finetune_backbone(_backbone(), win, train, np.full_like(val_truth, np.nan), H, C, cfg)
    with pytest.raises(ValueError, match="more than horizon"):
        finetune_backbone(_backbone(), (win.context, win.future), train, val_truth, H - 1, C, cfg)
