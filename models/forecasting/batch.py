"""The frozen backbone over many variable-length series, in batches, in inference mode."""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from models.backbone.network import PatchBackbone
from models.forecasting.inputs import left_pad
from models.forecasting.types import BackboneForecast


def batch_forecast(
    backbone: PatchBackbone,
    contexts: Sequence[np.ndarray],  # one 1-D array per series, NaN = missing
    horizon: int,
    context_length: int,
    batch_size: int = 256,
    device: str | torch.device = "cpu",
) -> BackboneForecast:
    """Each series' last ``context_length`` points -> its ``horizon``-step forecast."""
    if context_length < 1:
        raise ValueError("context_length must be >= 1")
    c = backbone.config
    if not len(contexts):
        q = np.zeros((0, horizon, c.n_quantiles), np.float32)
        return BackboneForecast(q, q.copy(), np.zeros(0, np.float32), np.zeros(0, np.float32),
                                np.zeros((0, c.d_model), np.float32))
    was_training = backbone.training
    backbone = backbone.to(device).eval()
    parts: list[list[np.ndarray]] = [[] for _ in BackboneForecast._fields]
    try:
        with torch.inference_mode():
            for start in range(0, len(contexts), batch_size):
                chunk = left_pad(contexts[start:start + batch_size], context_length)
                fc = backbone.forecast(torch.from_numpy(chunk).to(device), horizon)
                for out, value in zip(parts, fc):  # Forecast and BackboneForecast share their fields
                    out.append(value.float().cpu().numpy())
    finally:
        backbone.train(was_training)
    return BackboneForecast(*(np.concatenate(p) for p in parts))
