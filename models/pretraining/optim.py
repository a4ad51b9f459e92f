"""Optimisers, learning-rate schedules and the LR scaling rule (light: torch only, imported lazily).

Large-batch practice (Jia et al. 2018, LAMB/LARS papers): parameters with ndim <= 1 (norm
gains, biases) get no weight decay and no layer-wise trust ratio, so they take the plain
Adam(W) / SGD-momentum step. LAMB honours a per-group ``adam=True`` flag (trust ratio 1);
LARS skips the trust ratio and decay for ndim <= 1 tensors itself. Both compute the trust
ratio from whole tensors, so they refuse FSDP (shards) in ``models.pretraining.strategy``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # torch is imported lazily: the CLI checks its flags before heavy imports
    import torch
    from torch import nn

OPTIMIZERS = ("adamw", "lamb", "lars", "muon")
LR_SCALINGS = ("auto", "linear", "sqrt", "none")
SCHEDULES = ("wsd", "cosine", "constant")
# prefixes that wrappers (FSDP, activation checkpointing, torch.compile) put in parameter names
_WRAPPER_PREFIXES = ("_fsdp_wrapped_module.", "_checkpoint_wrapped_module.", "_orig_mod.")


def resolve_lr_scaling(rule: str, optimizer: str) -> str:
    """'auto' -> sqrt for the Adam family (adamw, lamb, muon), linear for LARS (SGD-type)."""
    if rule not in LR_SCALINGS:
        raise ValueError(f"unknown lr scaling {rule!r}; valid: {', '.join(LR_SCALINGS)}")
    if rule != "auto":
        return rule
    return "linear" if optimizer == "lars" else "sqrt"


def scaled_lr(lr: float, global_batch: int, reference_batch: int, rule: str) -> float:
    """Peak LR for ``global_batch`` windows per optimizer step, given ``lr`` tuned at
    ``reference_batch``: linear (SGD, Goyal et al.), sqrt (Adam-type) or none."""
    ratio = global_batch / reference_batch
    if rule == "linear":
        return lr * ratio
    if rule == "sqrt":
        return lr * math.sqrt(ratio)
    if rule == "none":
        return lr
    raise ValueError(f"unknown lr scaling {rule!r} (linear, sqrt, none; resolve 'auto' first)")


def lr_factor(
    step: int, warmup_steps: int, max_steps: int, schedule: str, min_ratio: float, decay_fraction: float = 0.2
) -> float:
    """Multiplier of the peak learning rate at optimizer step ``step`` (0-based): linear warm-up,
    then ``cosine`` down to ``min_ratio``, ``wsd`` (stable, then a 1-sqrt decay over the last
    ``decay_fraction`` of the steps, as in Toto 1.0's fine-tuning) or ``constant``."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    if schedule == "constant":
        return 1.0
    if schedule == "cosine":
        progress = min((step - warmup_steps) / max(1, max_steps - warmup_steps), 1.0)
        return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))
    if schedule == "wsd":
        decay_start = max(warmup_steps, int(max_steps * (1 - decay_fraction)))
        if step < decay_start:
            return 1.0
        progress = min((step - decay_start) / max(1, max_steps - decay_start), 1.0)
        return min_ratio + (1 - min_ratio) * (1 - math.sqrt(progress))
    raise ValueError(f"unknown schedule {schedule!r}; valid: {', '.join(SCHEDULES)}")


def clean_name(name: str) -> str:
    for prefix in _WRAPPER_PREFIXES:
        name = name.replace(prefix, "")
    return name


def param_groups(
    named: Iterable[tuple[str, nn.Parameter]],
    weight_decay: float,
    no_decay_names: set[str] | None = None,
    split_hidden: bool = False,
) -> list[dict[str, Any]]:
    """[decayed matrices, plain 1-D params] (+ [hidden matrices] with ``split_hidden``).
    ``no_decay_names`` (clean names recorded before any wrapping) overrides ndim, which sharding
    wrappers may flatten. Hidden matrices are the transformer blocks' 2-D weights (what Muon
    orthogonalises); the patch embedding and the quantile head stay with the decayed matrices,
    as in Muon's recipe."""
    decay, plain, hidden = [], [], []
    for name, p in named:
        if not p.requires_grad:
            continue
        is_plain = clean_name(name) in no_decay_names if no_decay_names is not None else p.ndim <= 1
        if is_plain:
            plain.append(p)
        elif split_hidden and p.ndim == 2 and "blocks." in clean_name(name):
            hidden.append(p)
        else:
            decay.append(p)
    # "plain" is read by build_optimizer: no weight decay, no trust ratio; "hidden": Muon's share
    groups = [
        {"params": decay, "weight_decay": weight_decay, "plain": False, "hidden": False},
        {"params": plain, "weight_decay": 0.0, "plain": True, "hidden": False},
    ]
    if split_hidden:
        groups.append({"params": hidden, "weight_decay": weight_decay, "plain": False, "hidden": True})
    return groups


def _strip(groups: list[dict[str, Any]], *keys: str) -> list[dict[str, Any]]:
    return [{k: v for k, v in g.items() if k not in ("plain", "hidden", *keys)} for g in groups]


def build_optimizer(name: str, groups: list[dict[str, Any]], lr: float) -> torch.optim.Optimizer:
    import torch

    if name == "muon":
        return muon_adamw(groups, lr)
    if name == "adamw":
        groups = _strip(groups)
        return torch.optim.AdamW(groups, lr=lr, betas=(0.9, 0.95), eps=1e-8)
    if name == "lamb":
        from pytorch_optimizer import Lamb

        # adam=True: the trust ratio is 1 for that group (Lamb reads it per group)
        groups = [{**{k: v for k, v in g.items() if k not in ("plain", "hidden")}, "adam": g["plain"]} for g in groups]
        return Lamb(groups, lr=lr, betas=(0.9, 0.95), eps=1e-6, weight_decouple=True)
    if name == "lars":
        from pytorch_optimizer import LARS

        # LARS itself uses plain SGD-momentum (no decay, no trust ratio) on ndim <= 1 tensors
        groups = _strip(groups)
        return LARS(groups, lr=lr, momentum=0.9, trust_coefficient=1e-3)
    raise ValueError(f"unknown optimizer {name!r}; valid: {', '.join(OPTIMIZERS)}")


def muon_adamw(groups: list[dict[str, Any]], lr: float) -> torch.optim.Optimizer:
    """torch's Muon on the hidden matrices (its update rescaled to AdamW's RMS, so one peak LR
    serves both), AdamW on the rest: one optimizer object, so Lightning's scheduler, clipping and
    checkpoints treat it like any other."""
    import torch

    class MuonAdamW(torch.optim.Optimizer):
        def __init__(self) -> None:
            kept = [g for g in groups if g["params"]]
            super().__init__(_strip(kept), {"lr": lr})
            hidden = [g for g, src in zip(self.param_groups, kept) if src["hidden"]]
            rest = [g for g, src in zip(self.param_groups, kept) if not src["hidden"]]
            # the inner optimizers hold these same group dicts: the scheduler's LR reaches both
            self.inner = [
                torch.optim.Muon(hidden, lr=lr, adjust_lr_fn="match_rms_adamw"),
                torch.optim.AdamW(rest, lr=lr, betas=(0.9, 0.95), eps=1e-8),
            ]
            self.param_groups = [g for opt in self.inner for g in opt.param_groups]

        @torch.no_grad()
        def step(self, closure: Callable[[], float] | None = None) -> float | None:  # type: ignore[override]  # torch overloads step on the closure
            loss = None
            if closure is not None:
                with torch.enable_grad():  # Lightning's closure runs forward and backward
                    loss = closure()
            for opt in self.inner:
                opt.step()
            return loss

        def zero_grad(self, set_to_none: bool = True) -> None:
            for opt in self.inner:
                opt.zero_grad(set_to_none=set_to_none)

        def state_dict(self) -> dict[str, Any]:
            return {"inner": [opt.state_dict() for opt in self.inner]}

        def load_state_dict(self, state_dict: dict[str, Any]) -> None:
            for opt, sd in zip(self.inner, state_dict["inner"]):
                opt.load_state_dict(sd)

    return MuonAdamW()
