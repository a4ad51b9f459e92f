"""Which distributed strategy a pre-training run uses, and the Lightning object for it.

- ``auto``: one device -> Lightning's single-device default; several devices -> DDP, or
  FSDP for the 1b / 2.5b presets on CUDA (their weights + AdamW state outgrow one GPU).
- DDP is built here so its gradient buckets (``bucket_cap_mb``) and communication hook
  (bf16 / fp16 compression, PowerSGD) are configurable. Lightning registers hooks only on
  CUDA and silently drops them elsewhere: we warn and drop them ourselves.
- FSDP (Lightning FSDPStrategy, needs CUDA): full sharding, one FSDP unit per TimeBlock /
  VariateBlock, optional activation checkpointing on the same blocks.

Selection (pure functions) imports no Lightning; ``build_strategy`` does.
"""

from __future__ import annotations

import warnings
from typing import Any

STRATEGIES = ("auto", "ddp", "ddp_spawn", "fsdp")
COMM_HOOKS = ("none", "bf16", "fp16", "powersgd")
FSDP_PRESETS = ("1b", "2.5b")


def device_count(devices: str | int | list[int], on_gpu: bool, cuda_count: int) -> int:
    """How many devices (processes per node) Lightning will use for ``devices``."""
    if isinstance(devices, list):
        return len(devices)
    if devices == "auto" or devices == -1:
        return max(cuda_count, 1) if on_gpu else 1  # Lightning's CPU "auto" is one process
    return int(devices)


def choose_strategy(strategy: str, preset: str, on_gpu: bool, n_devices: int) -> str:
    """-> 'auto' (single device), 'ddp', 'ddp_spawn' or 'fsdp'."""
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown strategy {strategy!r}; valid: {', '.join(STRATEGIES)}")
    if strategy != "auto":
        return strategy
    if n_devices <= 1:
        return "auto"
    return "fsdp" if on_gpu and preset in FSDP_PRESETS else "ddp"


def check_strategy(kind: str, on_gpu: bool, optimizer: str) -> str | None:
    """A message when the chosen strategy cannot run with these settings, else None."""
    if kind == "fsdp" and not on_gpu:
        return "--strategy fsdp needs CUDA GPUs (Lightning's FSDP does not run on CPU); use ddp on CPU"
    if kind == "fsdp" and optimizer != "adamw":
        what = (
            "orthogonalises whole matrices"
            if optimizer == "muon"
            else "computes layer-wise trust ratios from whole tensors"
        )
        return f"--optimizer {optimizer} {what}, which FSDP shards; use --optimizer adamw with FSDP (or --strategy ddp)"
    return None


def comm_hook_args(hook: str, on_gpu: bool, powersgd_start_iter: int = 1000) -> dict[str, Any]:
    """DDPStrategy keyword arguments for a communication hook ({} for none, or on CPU)."""
    if hook not in COMM_HOOKS:
        raise ValueError(f"unknown DDP comm hook {hook!r}; valid: {', '.join(COMM_HOOKS)}")
    if hook == "none":
        return {}
    if not on_gpu:
        warnings.warn(
            f"--ddp-comm-hook {hook} ignored: DDP communication hooks register only on CUDA "
            "(gloo on CPU all-reduces uncompressed fp32 gradients)",
            UserWarning,
            stacklevel=2,
        )
        return {}
    from torch.distributed.algorithms.ddp_comm_hooks import default_hooks, powerSGD_hook

    if hook == "bf16":
        return {"ddp_comm_hook": default_hooks.bf16_compress_hook}
    if hook == "fp16":
        return {"ddp_comm_hook": default_hooks.fp16_compress_hook}
    # rank-1 PowerSGD with error feedback; plain all-reduce for the first steps (warm-up), as advised
    state = powerSGD_hook.PowerSGDState(
        process_group=None, matrix_approximation_rank=1, start_powerSGD_iter=max(2, powersgd_start_iter)
    )
    return {"ddp_comm_state": state, "ddp_comm_hook": powerSGD_hook.powerSGD_hook}


def build_strategy(
    kind: str,
    *,
    on_gpu: bool,
    bucket_cap_mb: float = 25.0,
    comm_hook: str = "none",
    activation_checkpointing: bool = False,
    powersgd_start_iter: int = 1000,
):
    """The Lightning ``strategy`` argument for ``kind`` (from ``choose_strategy``)."""
    if kind == "auto":
        if comm_hook != "none":
            warnings.warn(
                f"--ddp-comm-hook {comm_hook} ignored: a single device has no gradient all-reduce",
                UserWarning,
                stacklevel=2,
            )
        return "auto"
    if kind in ("ddp", "ddp_spawn"):
        from lightning.pytorch.strategies import DDPStrategy

        return DDPStrategy(
            start_method="spawn" if kind == "ddp_spawn" else "popen",
            bucket_cap_mb=bucket_cap_mb,
            **comm_hook_args(comm_hook, on_gpu, powersgd_start_iter),
        )
    if kind == "fsdp":
        from lightning.pytorch.strategies import FSDPStrategy

        from models.backbone.layers import TimeBlock, VariateBlock

        if comm_hook != "none":
            warnings.warn(
                f"--ddp-comm-hook {comm_hook} ignored under FSDP (it has no DDP buckets)", UserWarning, stacklevel=2
            )
        blocks = {TimeBlock, VariateBlock}
        return FSDPStrategy(
            auto_wrap_policy=blocks,  # one all-gather / reduce-scatter unit per transformer block
            activation_checkpointing_policy=blocks if activation_checkpointing else None,
            sharding_strategy="FULL_SHARD",
            state_dict_type="full",  # last.ckpt and the saved backbone hold whole tensors
            limit_all_gathers=True,
        )
    raise ValueError(f"unknown strategy kind {kind!r}")
