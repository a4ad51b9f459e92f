"""Confidence-gated distillation of the kNN teacher into the memory adapter.

Everything lives in the backbone's normalised space ((x - loc) / scale), so one
loss scale serves series of any magnitude. Per training query i:

    beta_i = 0.2 + 0.6 * confidence_i
    loss_i = (1 - beta_i) * pinball(q_mem, y) + beta_i * align_i
    align_i = huber(tails of q_mem, teacher tails)
            + gate_i * huber(median of q_mem, teacher median)   gate_i: teacher's median beat
                                                                the backbone's on this query
plus 0.3 * (1 - confidence_i) * huber(median of q_mem, backbone median)   (anchor)
plus 0.05 * mean relu(q_j - q_{j+1})                                       (crossing)
"""
from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from models.adapter import MemoryAdapter
from models.quantiles import QUANTILES

MEDIAN = len(QUANTILES) // 2


@dataclass(frozen=True)
class DistillWeights:
    beta_min: float = 0.2
    beta_span: float = 0.6
    anchor: float = 0.3
    crossing: float = 0.05
    weight_decay: float = 0.01


def beta_from_confidence(confidence: torch.Tensor, w: DistillWeights = DistillWeights()) -> torch.Tensor:
    """[batch] -> [batch] in [beta_min, beta_min + beta_span]."""
    return w.beta_min + w.beta_span * confidence.clamp(0.0, 1.0)


def pinball_per_sample(q: torch.Tensor, y: torch.Tensor, levels=QUANTILES) -> torch.Tensor:
    """Mean pinball loss per sample: q [batch, horizon, quantile], y [batch, horizon] (NaN = no target) -> [batch]."""
    tau = torch.as_tensor(levels, dtype=q.dtype, device=q.device)
    known = ~torch.isnan(y)
    diff = torch.where(known, y, 0.0).unsqueeze(-1) - q
    loss = torch.maximum(tau * diff, (tau - 1.0) * diff).mean(-1)  # [batch, horizon]
    return (loss * known).sum(-1) / known.sum(-1).clamp(min=1)


def median_gate(y: torch.Tensor, base_med: torch.Tensor, teacher_med: torch.Tensor) -> torch.Tensor:
    """1 where the teacher's median has a lower MAE than the backbone's on this query, else 0: [batch]."""
    known = ~torch.isnan(y)
    y0 = torch.where(known, y, 0.0)
    n = known.sum(-1).clamp(min=1)
    err_t = ((y0 - teacher_med).abs() * known).sum(-1) / n
    err_b = ((y0 - base_med).abs() * known).sum(-1) / n
    return (err_t < err_b).to(y.dtype)


def _huber(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Mean smooth-L1 per sample over all non-batch axes: [batch]."""
    return F.smooth_l1_loss(a, b, reduction="none").reshape(a.shape[0], -1).mean(-1)


def distill_loss(
    q_mem: torch.Tensor,  # [batch, horizon, quantile] adapter output before sorting
    y: torch.Tensor,  # [batch, horizon] normalised truth
    q_teacher: torch.Tensor,  # [batch, horizon, quantile] normalised teacher
    q_base: torch.Tensor,  # [batch, horizon, quantile] normalised backbone
    confidence: torch.Tensor,  # [batch] teacher max weight
    w: DistillWeights = DistillWeights(),
) -> tuple[torch.Tensor, dict[str, float]]:
    beta = beta_from_confidence(confidence, w)
    pin = pinball_per_sample(q_mem, y)
    tails = [i for i in range(q_mem.shape[-1]) if i != MEDIAN]
    gate = median_gate(y, q_base[..., MEDIAN], q_teacher[..., MEDIAN])
    align = _huber(q_mem[..., tails], q_teacher[..., tails]) + gate * _huber(
        q_mem[..., MEDIAN], q_teacher[..., MEDIAN]
    )
    anchor = (1.0 - confidence.clamp(0.0, 1.0)) * _huber(q_mem[..., MEDIAN], q_base[..., MEDIAN])
    crossing = F.relu(q_mem[..., :-1] - q_mem[..., 1:]).mean()
    loss = ((1.0 - beta) * pin + beta * align + w.anchor * anchor).mean() + w.crossing * crossing
    parts = {
        name: float(v.detach().mean())
        for name, v in (
            ("pinball", pin),
            ("align", align),
            ("anchor", anchor),
            ("crossing", crossing),
            ("beta", beta),
            ("median_gate", gate),
        )
    }
    return loss, parts


@torch.no_grad()
def val_pinball(adapter: MemoryAdapter, val: dict[str, torch.Tensor], batch_size: int) -> float:
    """Mean pinball of the sorted adapter output on validation queries (normalised space)."""
    adapter.eval()
    n, total = len(val["y"]), 0.0
    for s in range(0, n, batch_size):
        q = adapter(val["embedding"][s : s + batch_size], val["base"][s : s + batch_size])
        total += float(pinball_per_sample(q, val["y"][s : s + batch_size]).sum())
    return total / max(n, 1)


def train_adapter(
    adapter: MemoryAdapter,
    train: dict[str, torch.Tensor],  # embedding [N, d], base/teacher [N, H, Q], y [N, H], confidence [N]
    val: dict[str, torch.Tensor],  # embedding [V, d], base [V, H, Q], y [V, H]
    epochs: int,
    batch_size: int,
    lr: float,
    patience: int,
    seed: int,
    weights: DistillWeights = DistillWeights(),
) -> list[dict]:
    """AdamW on the distillation loss; early stopping on validation pinball; restores the best weights.

    Epoch 0 in the history is the untrained adapter (= the backbone), so training
    that never beats the backbone on validation leaves the backbone in place.
    """
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(adapter.parameters(), lr=lr, weight_decay=weights.weight_decay)
    best = val_pinball(adapter, val, batch_size)
    best_state = copy.deepcopy(adapter.state_dict())
    history = [{"epoch": 0, "val_pinball": best}]
    best_epoch, stale, n = 0, 0, len(train["y"])
    for epoch in range(1, epochs + 1):
        adapter.train()
        sums: dict[str, float] = {}
        perm = torch.randperm(n, generator=gen)
        for s in range(0, n, batch_size):
            idx = perm[s : s + batch_size]
            q_mem = adapter.forward_unsorted(train["embedding"][idx], train["base"][idx])
            loss, parts = distill_loss(
                q_mem, train["y"][idx], train["teacher"][idx], train["base"][idx], train["confidence"][idx], weights
            )
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(adapter.parameters(), 1.0)
            opt.step()
            for key, v in {"loss": float(loss.detach()), **parts}.items():
                sums[key] = sums.get(key, 0.0) + v * len(idx)
        score = val_pinball(adapter, val, batch_size)
        history.append({"epoch": epoch, **{f"train_{k}": v / n for k, v in sums.items()}, "val_pinball": score})
        if score < best:
            best, best_epoch, stale = score, epoch, 0
            best_state = copy.deepcopy(adapter.state_dict())
        else:
            stale += 1
            if stale >= patience:
                break
    adapter.load_state_dict(best_state)
    adapter.eval()
    for h in history:
        h["best"] = h["epoch"] == best_epoch
    return history


def to_tensors(arrays: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    """float32 tensors from numpy arrays (no copy where already float32)."""
    return {k: torch.as_tensor(np.asarray(v, dtype=np.float32)) for k, v in arrays.items()}
