"""Confidence-gated distillation of the kNN teacher into the memory adapter.

Everything lives in the backbone's normalised space ((x - loc) / scale), so one
loss scale serves series of any magnitude. Per training query i:

    beta_i = beta_min + beta_span * confidence_i
    loss_i = (1 - beta_i) * pinball(q_mem, y) + beta_i * align_i
    align_i = huber(tails of q_mem, teacher tails)
            + gate_i * huber(median of q_mem, teacher median)   gate_i: teacher's median beat
                                                                the backbone's on this query
plus anchor * (1 - confidence_i) * huber(median of q_mem, backbone median)
plus crossing * mean relu(q_j - q_{j+1})
(weights in ``models.memory.config.AdapterConfig``).
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any, NamedTuple, cast

import numpy as np
import torch
import torch.nn.functional as F
from jaxtyping import Float
from torch import Tensor

from models.memory.adapter import MemoryAdapter
from models.memory.config import AdapterConfig
from models.metrics import MEDIAN, pinball_per_sample


class DistillSet(NamedTuple):
    """Queries in the backbone's normalised space (float32 tensors)."""

    embedding: Float[Tensor, "n d_model"]
    base: Float[Tensor, "n horizon quantile"]  # the backbone's quantiles
    y: Float[Tensor, "n horizon"]  # truth, NaN = no target
    teacher: Float[Tensor, "n horizon quantile"] | None = None  # training queries only
    confidence: Float[Tensor, " n"] | None = None

    @classmethod
    def from_numpy(cls, **arrays: np.ndarray) -> DistillSet:
        return cls(**{k: torch.as_tensor(np.asarray(v, dtype=np.float32)) for k, v in arrays.items()})

    def take(self, idx: Tensor) -> DistillSet:
        return DistillSet(*cast(Iterator[Tensor], (None if t is None else t[idx] for t in self)))


def beta_from_confidence(confidence: Float[Tensor, " batch"], w: AdapterConfig) -> Float[Tensor, " batch"]:
    """In [beta_min, beta_min + beta_span]."""
    return w.beta_min + w.beta_span * confidence.clamp(0.0, 1.0)


def median_gate(
    y: Float[Tensor, "batch horizon"],
    base_med: Float[Tensor, "batch horizon"],
    teacher_med: Float[Tensor, "batch horizon"],
) -> Float[Tensor, " batch"]:
    """1 where the teacher's median has a lower MAE than the backbone's on this query, else 0."""
    known = ~torch.isnan(y)
    y0 = torch.where(known, y, 0.0)
    n = known.sum(-1).clamp(min=1)
    err_t = ((y0 - teacher_med).abs() * known).sum(-1) / n
    err_b = ((y0 - base_med).abs() * known).sum(-1) / n
    return (err_t < err_b).to(y.dtype)


def _huber(a: Tensor, b: Tensor) -> Float[Tensor, " batch"]:
    """Mean smooth-L1 per sample over all non-batch axes."""
    return F.smooth_l1_loss(a, b, reduction="none").reshape(a.shape[0], -1).mean(-1)


def distill_loss(
    q_mem: Float[Tensor, "batch horizon quantile"],  # adapter output before sorting
    batch: DistillSet,
    w: AdapterConfig,
) -> tuple[Float[Tensor, ""], dict[str, float]]:
    assert batch.confidence is not None and batch.teacher is not None  # training queries carry both
    confidence = batch.confidence.clamp(0.0, 1.0)
    beta = beta_from_confidence(confidence, w)
    pin = pinball_per_sample(q_mem, batch.y)
    tails = [i for i in range(q_mem.shape[-1]) if i != MEDIAN]
    gate = median_gate(batch.y, batch.base[..., MEDIAN], batch.teacher[..., MEDIAN])
    align = _huber(q_mem[..., tails], batch.teacher[..., tails]) + gate * _huber(
        q_mem[..., MEDIAN], batch.teacher[..., MEDIAN]
    )
    anchor = (1.0 - confidence) * _huber(q_mem[..., MEDIAN], batch.base[..., MEDIAN])
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
def val_pinball(adapter: MemoryAdapter, val: DistillSet, batch_size: int) -> float:
    """Mean pinball of the sorted adapter output on validation queries (normalised space)."""
    adapter.eval()
    n, total = len(val.y), 0.0
    for s in range(0, n, batch_size):
        q = adapter(val.embedding[s : s + batch_size], val.base[s : s + batch_size])
        total += float(pinball_per_sample(q, val.y[s : s + batch_size]).sum())
    return total / max(n, 1)


def train_adapter(
    adapter: MemoryAdapter, train: DistillSet, val: DistillSet, config: AdapterConfig, seed: int
) -> list[dict[str, Any]]:
    """AdamW on the distillation loss; early stopping on validation pinball; restores the best weights.

    Epoch 0 in the history is the untrained adapter (= the backbone), so training
    that never beats the backbone on validation leaves the backbone in place.
    """
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(adapter.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    best = val_pinball(adapter, val, config.batch_size)
    best_state = copy.deepcopy(adapter.state_dict())
    history = [{"epoch": 0, "val_pinball": best}]
    best_epoch, stale, n = 0, 0, len(train.y)
    for epoch in range(1, config.epochs + 1):
        adapter.train()
        sums: dict[str, float] = {}
        perm = torch.randperm(n, generator=gen)
        for s in range(0, n, config.batch_size):
            idx = perm[s : s + config.batch_size]
            batch = train.take(idx)
            loss, parts = distill_loss(adapter.forward_unsorted(batch.embedding, batch.base), batch, config)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(adapter.parameters(), 1.0)
            opt.step()
            for key, v in {"loss": float(loss.detach()), **parts}.items():
                sums[key] = sums.get(key, 0.0) + v * len(idx)
        score = val_pinball(adapter, val, config.batch_size)
        history.append({"epoch": epoch, **{f"train_{k}": v / n for k, v in sums.items()}, "val_pinball": score})
        if score < best:
            best, best_epoch, stale = score, epoch, 0
            best_state = copy.deepcopy(adapter.state_dict())
        else:
            stale += 1
            if stale >= config.patience:
                break
    adapter.load_state_dict(best_state)
    adapter.eval()
    for h in history:
        h["best"] = h["epoch"] == best_epoch
    return history
