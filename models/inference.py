"""Batched one-pass forecasting over a list of variable-length series."""
from __future__ import annotations

import numpy as np
import torch

from models.backbone import PatchBackbone

KEYS = ("quantiles", "norm_quantiles", "loc", "scale", "embedding")


def _left_pad(series: np.ndarray, length: int) -> np.ndarray:
    """Last ``length`` points of a 1-D series, NaN-left-padded when shorter."""
    tail = np.asarray(series, dtype=np.float32).reshape(-1)[-length:]
    out = np.full(length, np.nan, dtype=np.float32)
    if len(tail):
        out[-len(tail):] = tail
    return out


def batch_forecast(
    backbone: PatchBackbone,
    contexts: list[np.ndarray],
    horizon: int,
    context_length: int,
    batch_size: int = 256,
    device: str | torch.device = "cpu",
) -> dict[str, np.ndarray]:
    """-> quantiles/norm_quantiles [N, H, 9], loc/scale [N], embedding [N, d_model] (float32)."""
    if context_length < 1:
        raise ValueError("context_length must be >= 1")
    c = backbone.config
    if not contexts:
        shapes = {"quantiles": (0, horizon, c.n_quantiles), "norm_quantiles": (0, horizon, c.n_quantiles),
                  "loc": (0,), "scale": (0,), "embedding": (0, c.d_model)}
        return {k: np.zeros(s, dtype=np.float32) for k, s in shapes.items()}
    was_training = backbone.training
    backbone = backbone.to(device).eval()
    parts: dict[str, list[np.ndarray]] = {k: [] for k in KEYS}
    try:
        with torch.inference_mode():
            for start in range(0, len(contexts), batch_size):
                chunk = np.stack([_left_pad(s, context_length) for s in contexts[start:start + batch_size]])
                fc = backbone.forecast(torch.from_numpy(chunk).to(device), horizon)
                for k in KEYS:
                    parts[k].append(getattr(fc, k).float().cpu().numpy())
    finally:
        backbone.train(was_training)
    return {k: np.concatenate(v) for k, v in parts.items()}
