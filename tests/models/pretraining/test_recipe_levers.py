"""The pre-training recipe's levers: the patch size, the windowed causal scaler, many masked
origins per window, random context lengths and the structural synthetic prior. Each must do
what it says and leave the default recipe exactly as it was."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from models.backbone.presets import count_parameters, get_preset
from models.backbone.scaler import causal_scale, normalise
from models.metrics import pinball_loss
from models.pretraining.module import PretrainModule
from models.pretraining.priors import structural
from models.pretraining.spec import TrainerJob, TrainingRecipe

P = 8


def test_windowed_scaler_reads_the_last_patches_and_the_future_keeps_the_context_statistics():
    t = torch.arange(96, dtype=torch.float64).view(1, 1, 96).float()  # a pure trend
    obs = torch.ones_like(t, dtype=torch.bool)
    obs[..., 64:] = False  # four masked future patches
    _, loc_all, _ = causal_scale(t, obs, P, 1e-3)
    _, loc_w, scale_w = causal_scale(t, obs, P, 1e-3, window=2)
    # whole history: patch 7 (steps 56..63) sits at mean 31.5; last two patches: 55.5
    assert loc_all[0, 0, 7].item() == pytest.approx(31.5)
    assert loc_w[0, 0, 7].item() == pytest.approx(55.5)
    assert scale_w[0, 0, 7].item() == pytest.approx(float(torch.arange(48, 64.0).std(unbiased=False)), rel=1e-5)
    # every masked future patch carries the statistics of the last context patch, in both scalers
    for loc in (loc_all, loc_w):
        assert torch.equal(loc[0, 0, 8:], loc[0, 0, 7].expand(4))
    # a window as long as the series changes nothing
    same = causal_scale(t, obs, P, 1e-3, window=12)
    for a, b in zip(same, causal_scale(t, obs, P, 1e-3)):
        assert torch.allclose(a, b, atol=1e-5)


def _module(**kw) -> PretrainModule:
    config = get_preset("tiny").to_dict()
    return PretrainModule(config, future_length=32, **kw)


def test_default_objective_is_the_masked_end_run_unchanged():
    torch.manual_seed(0)
    module = _module()
    values = torch.randn(4, 1, 128).cumsum(-1)
    observed = torch.rand(4, 1, 128) > 0.1
    loss, tokens = module.masked_loss({"values": values, "observed": observed})
    # the objective before the levers existed: hide the last 32 steps, score them alone
    ctx = observed.clone()
    ctx[..., -32:] = False
    out = module.model(torch.where(ctx, values, 0.0), ctx)
    target = normalise(values, out.loc, out.scale, P)[..., -32:]
    pred = out.knots[:, :, -4:].reshape(4, 1, 32, -1)
    assert loss.item() == pytest.approx(pinball_loss(pred, target, mask=observed[..., -32:]).item(), rel=1e-6)
    assert tokens == 4 * 16
    assert module._generator(0) is None  # no random draw at all by default


def test_many_origins_and_random_contexts_are_drawn_reproducibly():
    module = _module(mask_origins=5, random_context=True, seed=3)
    target, dropped = module.hidden_patches((256, 1, 16), torch.Generator().manual_seed(7))
    assert target[..., -4:].all()  # the end run is always there
    assert (target[..., :12].sum(-1) > 0).float().mean() > 0.8  # and interior runs in nearly every window
    assert not target[..., 0].any()  # a run starts after at least one context patch
    assert not (target & dropped).any()
    kept = 12 - dropped[..., :12].sum(-1)
    assert kept.min() >= 1 and kept.max() == 12 and (kept <= 3).float().mean() > 0.2  # short contexts are common
    # dropped points are a prefix: never a patch seen after one dropped
    assert not (dropped[..., 1:] & ~dropped[..., :-1]).any()
    again = module.hidden_patches((256, 1, 16), torch.Generator().manual_seed(7))
    assert torch.equal(again[0], target) and torch.equal(again[1], dropped)
    # validation draws nothing: the plain end run, comparable across recipes
    plain, none = module.hidden_patches((2, 1, 16), None)
    assert plain[..., -4:].all() and not plain[..., :-4].any() and not none.any()


def test_patch_size_and_scaler_window_reach_the_backbone_and_the_trainer_flags(tmp_path):
    recipe = TrainingRecipe(preset="4m", patch_size=8, scaler_window=8, mask_origins=4, random_context=True)
    config = recipe.backbone_config()
    assert (config.patch_size, config.scaler_window, config.d_model, config.n_layers) == (8, 8, 256, 4)
    assert count_parameters(config) < count_parameters(get_preset("4m"))  # only the patch embedding and head shrink
    structural(3, 64, seed=0).to_parquet(tmp_path / "x.parquet")
    job = TrainerJob(**recipe.model_dump(), data=[str(tmp_path / "x.parquet")], out=str(tmp_path / "out"))
    again = TrainerJob.from_argv(job.to_argv())
    assert (again.patch_size, again.scaler_window, again.mask_origins, again.random_context) == (8, 8, 4, True)
    # the defaults are the recipe that won the ablation
    assert (TrainingRecipe().mask_origins, TrainingRecipe().random_context, get_preset("4m").patch_size) == (
        4,
        True,
        16,
    )
    with pytest.raises(ValueError, match="max_context"):
        TrainingRecipe(preset="tiny", patch_size=4, context_length=1024)


def test_structural_prior_is_reproducible_varied_and_finite():
    a = structural(300, 512, seed=5)
    assert a.equals(structural(300, 512, seed=5))
    lengths = a.groupby("unique_id").size()
    assert lengths.min() >= 32 and lengths.max() <= 512 and lengths.nunique() > 50
    assert np.isfinite(a["y"]).all()
    zeros = a.groupby("unique_id")["y"].apply(lambda y: (y == 0).mean())
    assert 0.02 < (zeros > 0.3).mean() < 0.3  # some intermittent demand, not mostly
    # the first series do not depend on how many are drawn
    b = structural(10, 512, seed=5)
    assert b.equals(a[a["unique_id"].isin(b["unique_id"].unique())].reset_index(drop=True))


def test_continued_pretraining_starts_from_the_saved_weights(tmp_path):
    from models.backbone.io import load_backbone, save_backbone
    from models.backbone.network import PatchBackbone
    from models.pretraining.train import main

    config = get_preset("tiny")
    config.patch_size, config.scaler_window = 16, 4
    torch.manual_seed(0)
    start = PatchBackbone(config)
    save_backbone(start, tmp_path / "start")
    recipe = TrainingRecipe(init=str(tmp_path / "start"), preset="4m")
    assert recipe.backbone_config().to_dict() == config.to_dict()  # the saved shape wins over the preset
    with pytest.raises(ValueError, match="not a saved backbone folder"):
        TrainingRecipe(init=str(tmp_path))
    structural(20, 256, seed=1).to_parquet(tmp_path / "d.parquet")
    assert (
        main(
            [
                "--data",
                str(tmp_path / "d.parquet"),
                "--out",
                str(tmp_path / "out"),
                "--init",
                str(tmp_path / "start"),
                "--max-steps",
                "1",
                "--lr",
                "1e-12",
                "--batch-size",
                "4",
                "--context-length",
                "64",
                "--horizon-length",
                "16",
            ]
        )
        == 0
    )
    after = load_backbone(tmp_path / "out" / "backbone")
    assert after.config.to_dict() == config.to_dict()
    for (name, a), b in zip(start.state_dict().items(), after.state_dict().values()):
        assert torch.allclose(a, b, atol=1e-6), name  # one step at lr ~0: the weights it started from


def test_long_contexts_are_cropped_per_step_at_a_constant_token_budget():
    module = _module(min_context_length=32, seed=1)
    values = torch.randn(64, 1, 256 + 32).cumsum(-1)
    observed = torch.ones_like(values, dtype=torch.bool)
    widths, rows = [], []
    for step in range(40):
        v, o = module.crop(values, observed, torch.Generator().manual_seed(step))
        assert v.shape == o.shape and v.shape[-1] % P == 0
        assert torch.equal(v, values[: v.shape[0], :, -v.shape[-1] :])  # the most recent steps, whole patches
        widths.append(v.shape[-1]), rows.append(v.shape[0])
    # from min context + future up to the whole window, short and long both drawn
    assert 64 <= min(widths) <= 96 and 224 <= max(widths) <= 288
    tokens = [w * r for w, r in zip(widths, rows)]
    assert max(tokens) <= 1.3 * min(tokens)  # every step costs about the same
    # leading patches no window observes are stripped (short series in a long window)
    observed[:, :, :200] = False
    v, o = module.crop(values, observed, torch.Generator().manual_seed(0))
    assert o[..., :P].any()
    # the masked loss trains on the cropped windows, reproducibly
    batch = {"values": values, "observed": torch.ones_like(observed)}
    a, ta = module.masked_loss(batch, module._generator(3))
    b, tb = module.masked_loss(batch, module._generator(3))
    assert a.item() == b.item() and ta == tb


def test_muon_updates_the_hidden_matrices_and_adamw_the_rest():
    from models.pretraining.optim import param_groups

    torch.manual_seed(0)
    module = _module(optimizer="muon", lr=1e-2)
    opt = module.configure_optimizers()["optimizer"]
    groups = param_groups(module.named_parameters(), 0.01, module.plain_param_names, split_hidden=True)
    hidden = {id(p) for p in groups[2]["params"]}
    assert hidden and all(p.ndim == 2 for p in groups[2]["params"])
    assert id(module.model.embed.hidden.weight) not in hidden and id(module.model.head.out.weight) not in hidden
    assert isinstance(opt.inner[0], torch.optim.Muon) and isinstance(opt.inner[1], torch.optim.AdamW)
    before = {n: p.detach().clone() for n, p in module.named_parameters()}
    values = torch.randn(8, 1, 128).cumsum(-1)
    loss, _ = module.masked_loss({"values": values, "observed": torch.ones_like(values, dtype=torch.bool)})
    loss.backward()
    opt.step()
    assert all(not torch.equal(before[n], p) for n, p in module.named_parameters() if p.grad is not None)
    # the scheduler's LR reaches both inner optimizers; the state survives a checkpoint round trip
    for g in opt.param_groups:
        g["lr"] = 0.5e-2
    assert all(g["lr"] == 0.5e-2 for inner in opt.inner for g in inner.param_groups)
    state = opt.state_dict()
    opt.load_state_dict(state)
    assert len(state["inner"]) == 2


def test_calendar_prior_has_daily_and_sub_daily_cycles():
    from models.pretraining.priors import calendar

    a = calendar(60, 2048, seed=4)
    assert a.equals(calendar(60, 2048, seed=4)) and np.isfinite(a["y"]).all()
    lengths = a.groupby("unique_id").size()
    assert lengths.min() >= 256 and lengths.max() <= 2048

    # most series repeat themselves after one of the calendar periods (7, 24, 48, 96 steps)
    def best_lag(y):
        y = np.diff(y)  # trends and shifts out
        y = (y - y.mean()) / (y.std() + 1e-9)
        return max((7, 24, 48, 96), key=lambda k: float(np.mean(y[k:] * y[:-k])))

    seasonal = [best_lag(g.to_numpy()) for _, g in a.groupby("unique_id")["y"]]
    assert len(set(seasonal)) >= 3
