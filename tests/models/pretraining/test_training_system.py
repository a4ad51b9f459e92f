"""The training system around the backbone: optimisers and their parameter groups, LR scaling
with the global batch, strategy selection (DDP buckets/hooks, FSDP), accumulation, compile."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from tests.corpus import seasonal_corpus
from tests.models.pretraining.trainer_runs import TINY_CPU

ROOT = Path(__file__).resolve().parents[3]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
COMMON = TINY_CPU


def pretrain(*args: str, env: dict | None = None, timeout: int = 240) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "models.pretraining", *args],
        cwd=ROOT,
        env=env or ENV,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    return seasonal_corpus(tmp_path_factory.mktemp("corpus") / "train.parquet", 16, (80, 300))


# --- optimisers -------------------------------------------------------------------------


class Toy(nn.Module):
    """A matrix, a bias and a norm gain: the three kinds of parameter a block has."""

    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(6, 4)
        self.gain = nn.Parameter(torch.linspace(0.5, 1.5, 4))

    def forward(self, x):
        return self.lin(x) * self.gain


def run_steps(opt: torch.optim.Optimizer, model: nn.Module, steps: int = 3) -> None:
    """The same gradients for both models (seeded, not backpropagated: the matrices' steps differ
    by design and must not leak into the 1-D parameters' gradients)."""
    gen = torch.Generator().manual_seed(1)
    for _ in range(steps):
        for p in model.parameters():
            p.grad = torch.randn(p.shape, generator=gen)
        opt.step()


def plain_reference(name: str, params, lr: float) -> torch.optim.Optimizer:
    """What 1-D parameters must get: the optimizer without decay and without trust ratio."""
    from pytorch_optimizer import Lamb

    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.0)
    if name == "lamb":
        return Lamb(params, lr=lr, betas=(0.9, 0.95), eps=1e-6, weight_decay=0.0, adam=True)
    return torch.optim.SGD(params, lr=lr, momentum=0.9, weight_decay=0.0)


@pytest.mark.parametrize("name", ["adamw", "lamb", "lars"])
def test_1d_params_get_the_plain_update_and_matrices_do_not(name):
    from models.pretraining.optim import build_optimizer, param_groups

    torch.manual_seed(0)
    model, ref = Toy(), Toy()
    ref.load_state_dict(model.state_dict())
    lr = 0.05
    groups = param_groups(model.named_parameters(), weight_decay=0.5, no_decay_names=None)  # large decay on purpose
    assert {id(p) for p in groups[1]["params"]} == {id(model.lin.bias), id(model.gain)}
    run_steps(build_optimizer(name, groups, lr), model)
    run_steps(plain_reference(name, ref.parameters(), lr), ref)
    for p, q in ((model.lin.bias, ref.lin.bias), (model.gain, ref.gain)):
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-7)
    # the matrix took a different step: decay and (lamb/lars) the layer-wise trust ratio
    assert not torch.allclose(model.lin.weight, ref.lin.weight, rtol=1e-3, atol=1e-6)


def test_module_groups_every_1d_backbone_param_as_plain_even_when_wrapped():
    from models.backbone.presets import get_preset
    from models.pretraining.module import PretrainModule
    from models.pretraining.optim import param_groups

    module = PretrainModule(get_preset("tiny").to_dict(), future_length=16, optimizer="lamb", weight_decay=0.1)
    opt = module.configure_optimizers()["optimizer"]
    decay, plain = opt.param_groups
    assert plain["adam"] is True and plain["weight_decay"] == 0.0  # Lamb reads adam=True: trust ratio 1
    assert decay["adam"] is False and decay["weight_decay"] == 0.1
    assert {id(p) for p in plain["params"]} == {id(p) for p in module.parameters() if p.ndim <= 1}
    assert len(plain["params"]) > 0 and all(p.ndim == 2 for p in decay["params"])
    # FSDP (use_orig_params) shows flattened 1-D shards under wrapper prefixes: names decide
    sharded = [
        ("model.blocks.0._fsdp_wrapped_module.attn.qkv.weight", nn.Parameter(torch.zeros(12))),
        ("model.blocks.0._fsdp_wrapped_module.norm1.weight", nn.Parameter(torch.zeros(3))),
    ]
    d, p = param_groups(sharded, 0.1, module.plain_param_names)
    assert len(d["params"]) == 1 and d["params"][0].numel() == 12 and len(p["params"]) == 1


def test_lr_scales_with_the_global_batch():
    from models.pretraining.optim import resolve_lr_scaling, scaled_lr

    assert scaled_lr(3e-3, 256, 64, "sqrt") == pytest.approx(6e-3)
    assert scaled_lr(3e-3, 256, 64, "linear") == pytest.approx(1.2e-2)
    assert scaled_lr(3e-3, 16, 64, "linear") == pytest.approx(7.5e-4)
    assert scaled_lr(3e-3, 4096, 64, "none") == 3e-3
    assert resolve_lr_scaling("auto", "adamw") == resolve_lr_scaling("auto", "lamb") == "sqrt"
    assert resolve_lr_scaling("auto", "lars") == "linear" and resolve_lr_scaling("none", "lars") == "none"


# --- strategies ---------------------------------------------------------------------------


def test_strategy_selection():
    from models.pretraining.strategy import check_strategy, choose_strategy, device_count

    assert device_count("auto", on_gpu=True, cuda_count=8) == 8 and device_count("auto", False, 0) == 1
    assert device_count([0, 3], True, 8) == 2 and device_count(-1, True, 4) == 4 and device_count(2, False, 0) == 2
    # FSDP only for the big presets on several GPUs
    assert choose_strategy("auto", "1b", on_gpu=True, n_devices=2) == "fsdp"
    assert choose_strategy("auto", "2.5b", on_gpu=True, n_devices=8) == "fsdp"
    assert choose_strategy("auto", "2.5b", on_gpu=True, n_devices=1) == "auto"
    assert choose_strategy("auto", "313m", on_gpu=True, n_devices=8) == "ddp"
    assert choose_strategy("auto", "1b", on_gpu=False, n_devices=2) == "ddp"
    assert choose_strategy("auto", "tiny", on_gpu=False, n_devices=1) == "auto"
    assert choose_strategy("fsdp", "tiny", on_gpu=True, n_devices=2) == "fsdp"
    assert choose_strategy("ddp_spawn", "1b", on_gpu=True, n_devices=8) == "ddp_spawn"
    assert "needs CUDA" in check_strategy("fsdp", on_gpu=False, optimizer="adamw")
    assert "trust ratios" in check_strategy("fsdp", on_gpu=True, optimizer="lamb")
    assert check_strategy("fsdp", on_gpu=True, optimizer="adamw") is None
    assert check_strategy("ddp", on_gpu=False, optimizer="lars") is None


def test_strategy_objects_buckets_hooks_and_fsdp_wrapping():
    from lightning.pytorch.strategies import DDPStrategy, FSDPStrategy
    from torch.distributed.algorithms.ddp_comm_hooks import default_hooks, powerSGD_hook

    from models.backbone.layers import TimeBlock, VariateBlock
    from models.pretraining.strategy import build_strategy

    ddp = build_strategy("ddp", on_gpu=False, bucket_cap_mb=5.0)
    assert isinstance(ddp, DDPStrategy) and ddp._ddp_kwargs["bucket_cap_mb"] == 5.0
    # on CPU a hook would be dropped silently by Lightning: we say so
    with pytest.warns(UserWarning, match="register only on CUDA"):
        cpu = build_strategy("ddp", on_gpu=False, comm_hook="bf16")
    assert cpu._ddp_comm_hook is None
    gpu = build_strategy("ddp", on_gpu=True, comm_hook="fp16")
    assert gpu._ddp_comm_hook is default_hooks.fp16_compress_hook
    psgd = build_strategy("ddp_spawn", on_gpu=True, comm_hook="powersgd", powersgd_start_iter=50)
    assert psgd._ddp_comm_hook is powerSGD_hook.powerSGD_hook and psgd._start_method == "spawn"
    assert isinstance(psgd._ddp_comm_state, powerSGD_hook.PowerSGDState)
    assert psgd._ddp_comm_state.start_powerSGD_iter == 50
    fsdp = build_strategy("fsdp", on_gpu=True, activation_checkpointing=True)
    assert isinstance(fsdp, FSDPStrategy) and fsdp.sharding_strategy.name == "FULL_SHARD"
    assert fsdp.kwargs["auto_wrap_policy"]._module_classes == {TimeBlock, VariateBlock}
    assert fsdp._activation_checkpointing_kwargs["auto_wrap_policy"]._module_classes == {TimeBlock, VariateBlock}
    assert build_strategy("auto", on_gpu=False) == "auto"


def test_backbone_weights_drop_module_and_wrapper_prefixes():
    from models.pretraining.train import backbone_weights

    t = torch.zeros(1)
    state = {
        "model.blocks.0._fsdp_wrapped_module._checkpoint_wrapped_module.norm1.weight": t,
        "model.head.out.bias": t,
        "something_else": t,
    }
    assert set(backbone_weights(state)) == {"blocks.0.norm1.weight", "head.out.bias"}


# --- backbone-level switches ----------------------------------------------------------


def test_activation_checkpointing_gives_the_same_gradients_and_flops_are_counted():
    from models.backbone.network import PatchBackbone
    from models.backbone.presets import get_preset
    from models.pretraining.module import PretrainModule

    torch.manual_seed(0)
    a = PatchBackbone(get_preset("tiny"))
    b = PatchBackbone(get_preset("tiny"))
    b.load_state_dict(a.state_dict())
    b.gradient_checkpointing = True
    values = torch.randn(2, 3, 64)
    observed = torch.ones_like(values, dtype=torch.bool)
    for m in (a, b):
        m(values, observed).knots.pow(2).mean().backward()
    for (name, p), q in zip(a.named_parameters(), b.parameters()):
        torch.testing.assert_close(p.grad, q.grad, msg=name)

    # in-place compile keeps parameter names, so checkpoints stay loadable
    c = PatchBackbone(get_preset("tiny"))
    c.compile()
    assert list(c.state_dict()) == list(a.state_dict())

    # FLOPs per training batch ~ 6 x params x tokens (matmuls dominate), counted on the meta device
    module = PretrainModule(get_preset("tiny").to_dict(), future_length=16)
    n = sum(p.numel() for p in module.parameters())
    flops = module.training_flops(batch_size=16, n_patches=10)
    assert 0.9 < flops / (6 * n * 16 * 10) < 1.5, flops


def test_data_side_skips_accumulated_micro_batches_on_resume(corpus):
    """Contract with models/pretraining/data.py: with batches_per_step = k, a run resumed at
    global step N starts N * k batches in (the micro-batches the checkpointed run consumed)."""
    from models.pretraining.data import PretrainDataModule, ResumableSampler

    dm = PretrainDataModule([corpus], context_length=64, future_length=16, batch_size=4, seed=0)
    dm.batches_per_step = 2
    dm.trainer = types.SimpleNamespace(world_size=1, global_rank=0, global_step=3)
    expected = ResumableSampler(dm.train_set, 4, num_replicas=1, rank=0, seed=0, start_batch=6)
    assert list(dm.train_dataloader().sampler) == list(expected)


# --- end to end (own processes) -------------------------------------------------------


def test_lamb_with_accumulation_learns_and_counts_steps_and_tokens(corpus, tmp_path):
    out = tmp_path / "run"
    res = pretrain(
        "--data",
        str(corpus),
        "--out",
        str(out),
        *COMMON,
        "--optimizer",
        "lamb",
        "--accumulate-grad-batches",
        "2",
        "--max-steps",
        "40",
        "--batch-size",
        "8",
        "--warmup-steps",
        "4",
        "--lr",
        "3e-3",
        "--lr-reference-batch",
        "64",
        "--throughput",
        "--ddp-comm-hook",
        "bf16",
    )
    assert res.returncode == 0, res.stderr[-3000:]
    assert "ignored: a single device" in res.stderr  # the hook flag is not silently dropped
    m = json.loads((out / "metrics.json").read_text())
    assert m["steps"] == 40 and m["accumulate_grad_batches"] == 2 and m["optimizer"] == "lamb"
    assert m["tokens_seen"] == 40 * 2 * 8 * 10  # steps x micro-batches x windows x patches
    assert m["global_batch"] == 16 and m["lr_scaling"] == "sqrt"
    assert m["effective_lr"] == pytest.approx(3e-3 * (16 / 64) ** 0.5)
    assert m["schedule"] == "wsd" and m["precision"] == "32-true" and m["tokens_per_second"] > 0
    assert m["final_train_loss"] < 0.9 * m["initial_train_loss"], m
    # one progress line per 4 optimizer steps, not per micro-batch
    steps = [int(line.split()[1].split("/")[0]) for line in res.stdout.splitlines() if line.startswith("step ")]
    assert steps == list(range(4, 41, 4)), steps
    # ThroughputMonitor logged next to the loss
    assert "train/samples" in pd.read_csv(out / "logs" / "version_0" / "metrics.csv").columns


def test_compiled_run_with_activation_checkpointing(tmp_path):
    series = tmp_path / "one.parquet"  # a single series: no validation set, one compiled graph
    t = np.arange(300)
    pd.DataFrame({"unique_id": "a", "ds": t, "y": np.sin(t / 5) + 0.01 * t}).to_parquet(series, index=False)
    # Dynamo traces the model as for inductor; aot_eager skips the C++ codegen (minutes on 2 cores)
    env = {**ENV, "TORCH_COMPILE_OVERRIDE_BACKENDS": ">=0:aot_eager"}
    res = pretrain(
        "--data",
        str(series),
        "--out",
        str(tmp_path / "c"),
        *COMMON,
        "--max-steps",
        "3",
        "--batch-size",
        "8",
        "--warmup-steps",
        "1",
        "--compile",
        "--activation-checkpointing",
        env=env,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    assert json.loads((tmp_path / "c" / "metrics.json").read_text())["steps"] == 3
    from models.backbone.io import load_backbone

    load_backbone(tmp_path / "c" / "backbone")  # names unchanged by compile


def test_bad_flags_exit_2_with_a_clear_message(corpus, tmp_path, capsys):
    from models.pretraining.train import main

    base = ["--data", str(corpus), "--out", str(tmp_path / "o"), *COMMON]
    cases = {
        ("--precision", "16-mixed"): "16-mixed (fp16 with loss scaling) needs a GPU",
        ("--strategy", "fsdp"): "fsdp needs CUDA",
        ("--accumulate-grad-batches", "0"): "--accumulate-grad-batches must be >= 1",
        ("--lr-reference-batch", "0"): "--lr-reference-batch must be >= 1",
        ("--ddp-bucket-cap-mb", "0"): "--ddp-bucket-cap-mb must be > 0",
    }
    for flags, message in cases.items():
        assert main(base + list(flags)) == 2, flags
        assert message in capsys.readouterr().err, flags
    for flags in (
        ("--optimizer", "sgd"),
        ("--precision", "fp8"),
        ("--lr-scaling", "cube"),
        ("--ddp-comm-hook", "int8"),
        ("--strategy", "deepspeed"),
    ):
        with pytest.raises(SystemExit) as exc:
            main(base + list(flags))
        assert exc.value.code == 2 and "invalid choice" in capsys.readouterr().err, flags
    # and as a process
    res = pretrain(*base, "--optimizer", "sgd")
    assert res.returncode == 2 and "argument --optimizer: invalid choice: 'sgd'" in res.stderr


def test_killed_accumulating_run_resumes_exactly(tmp_path):
    """With --accumulate-grad-batches 2 a checkpoint at step N has consumed 2N micro-batches per
    rank: the resumed run must skip exactly those (data side: batches_per_step)."""
    import signal

    from tests.models.pretraining.trainer_runs import command, make_corpus, train_losses

    data = make_corpus(tmp_path / "train.parquet")
    a, b = tmp_path / "a", tmp_path / "b"
    acc = ["--accumulate-grad-batches", "2", "--checkpoint-every", "5"]
    log_a = (tmp_path / "a.log").open("w")  # a file, not a pipe: nothing reads it while A runs
    run_a = subprocess.Popen(command(data, a, *acc), cwd=ROOT, env=ENV, stdout=log_a, stderr=subprocess.STDOUT)
    run_b = subprocess.Popen(
        command(data, b, *acc), cwd=ROOT, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    )
    last = b / "checkpoints" / "last.ckpt"
    for line in run_b.stdout:  # "step 12/40 ..." every 4 steps
        if line.startswith("step ") and int(line.split()[1].split("/")[0]) > 10 and last.is_file():
            run_b.send_signal(signal.SIGKILL)
            break
    assert run_b.wait(timeout=60) == -signal.SIGKILL, "run B ended before it was killed"
    resumed_from = int(torch.load(last, map_location="cpu", weights_only=False)["global_step"])
    res = subprocess.run(
        command(data, b, *acc, "--resume"), cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=180
    )
    assert res.returncode == 0 and "resuming from" in res.stdout, res.stderr[-3000:]
    assert run_a.wait(timeout=180) == 0, (tmp_path / "a.log").read_text()[-3000:]
    log_a.close()
    ma, mb = (json.loads((d / "metrics.json").read_text()) for d in (a, b))
    assert ma["steps"] == mb["steps"] == 40 and ma["tokens_seen"] == mb["tokens_seen"] == 40 * 2 * 8 * 10
    la, lb = train_losses(a), train_losses(b)
    after = [s for s in la if s >= resumed_from]
    assert 10 <= resumed_from < 40 and after and set(after) <= set(lb)
    assert all(np.isclose(lb[s], la[s], rtol=1e-4, atol=0) for s in after)
    assert np.isclose(ma["val_loss"], mb["val_loss"], rtol=1e-4, atol=0)
