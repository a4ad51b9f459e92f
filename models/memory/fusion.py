"""Fusing the backbone's and the memory adapter's quantiles, and choosing the weight on validation."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
import torch
from jaxtyping import Float

from models.metrics import scaled_crps_pooled

Q = Float[np.ndarray, "n horizon quantile"]


def fuse(q_base: Q, q_mem: Q, alpha: float) -> Q:
    """q_base + alpha * (q_mem - q_base), sorted along the quantile axis."""
    return np.sort(q_base + alpha * (q_mem - q_base), axis=-1)


def fuse_torch(q_base: torch.Tensor, q_mem: torch.Tensor, alpha: float) -> torch.Tensor:
    """``fuse`` on tensors (same float32 arithmetic and result; stays on the tensors' device)."""
    return torch.sort(q_base + alpha * (q_mem - q_base), dim=-1).values


def choose_alpha(
    q_base_val: Q, q_mem_val: Q, y_val: Float[np.ndarray, "n horizon"], grid: Iterable[float]
) -> tuple[float, list[dict[str, Any]]]:
    """The alpha of ``grid`` with the lowest pooled validation sCRPS (raw space); ties go to
    the smaller alpha (less departure from the backbone). Returns it and the whole table."""
    table = [
        {"alpha": float(a), "sCRPS": scaled_crps_pooled(y_val, fuse(q_base_val, q_mem_val, a))} for a in sorted(grid)
    ]
    best = table[0]
    for row in table[1:]:
        if row["sCRPS"] < best["sCRPS"] - 1e-12 * abs(best["sCRPS"]):
            best = row
    return best["alpha"], table
