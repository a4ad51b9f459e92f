"""The fixed quantile levels every model here predicts, and their pinball loss."""
from __future__ import annotations

import torch
from torch import Tensor

# 0.1 .. 0.9: the 9 levels of the scaled-CRPS metric and of the kNN teacher
QUANTILES: tuple[float, ...] = tuple(round(0.1 * i, 1) for i in range(1, 10))


def pinball_loss(
    pred: Tensor,
    target: Tensor,
    quantiles: tuple[float, ...] = QUANTILES,
    mask: Tensor | None = None,
) -> Tensor:
    """Quantile (pinball) loss, averaged over quantile levels and valid elements.

    pred: [..., Q]; target: [...]; mask: [...] bool (True = counts), broadcastable to target.
    Returns a scalar; 0 when no element is valid (so an all-missing batch adds no gradient).
    """
    if pred.shape[-1] != len(quantiles):
        raise ValueError(f"pred has {pred.shape[-1]} quantiles, expected {len(quantiles)}")
    q = torch.tensor(quantiles, dtype=pred.dtype, device=pred.device)  # [Q]
    diff = target.unsqueeze(-1).to(pred.dtype) - pred  # [..., Q]
    loss = torch.maximum(q * diff, (q - 1.0) * diff).mean(dim=-1)  # [...]
    if mask is None:
        return loss.mean()
    weight = mask.to(loss.dtype).expand_as(loss)
    # where() keeps NaN/inf at masked-out targets from leaking into the sum
    return torch.where(weight > 0, loss, 0.0).sum() / weight.sum().clamp_min(1.0)
