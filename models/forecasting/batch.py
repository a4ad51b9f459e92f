"""The frozen backbone over many variable-length series, in batches, in inference mode."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

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
    """Each series' last ``context_length`` points -> its ``horizon``-step forecast.

    A series is padded only up to its own length bucket (``bucket_length``), so a 100-point
    series in a 2,048-point context costs 256 steps, not 2,048, and its forecast depends on
    nothing but its own history (never on which series share its batch)."""
    if context_length < 1:
        raise ValueError("context_length must be >= 1")
    c = backbone.config
    if not len(contexts):
        q = np.zeros((0, horizon, c.n_quantiles), np.float32)
        return BackboneForecast(
            q, q.copy(), np.zeros(0, np.float32), np.zeros(0, np.float32), np.zeros((0, c.d_model), np.float32)
        )
    was_training = backbone.training
    backbone = backbone.to(device).eval()
    parts: list[list[np.ndarray]] = [[] for _ in BackboneForecast._fields]
    order: list[np.ndarray] = []
    try:
        with torch.inference_mode():
            for rows, chunk in bucketed_chunks(contexts, context_length, c.patch_size, batch_size):
                fc = backbone.forecast(torch.from_numpy(chunk).to(device), horizon)
                for out, value in zip(parts, fc):  # Forecast and BackboneForecast share their fields
                    out.append(value.float().cpu().numpy())
                order.append(rows)
    finally:
        backbone.train(was_training)
    return BackboneForecast(*(in_call_order(np.concatenate(p), order) for p in parts))


MIN_PADDED = 256  # steps: the shortest window pre-training shows the backbone (left-padded when shorter)


def bucket_length(n: int, context_length: int, patch_size: int) -> int:
    """Steps a context of ``n`` points is padded to: the next power of two of patches, at least
    MIN_PADDED, at most ``context_length``. The floor matters: the backbone learnt short series
    inside long, left-padded windows, and padding a 20-point yearly series to 32 steps instead
    of 256 took M3 yearly's relative MASE from 1.015 to 1.140 (docs/benchmarks.md)."""
    patches = max(1, -(-min(n, context_length) // patch_size))
    return min(context_length, max(MIN_PADDED, patch_size * (1 << (patches - 1).bit_length())))


def bucketed_chunks(
    contexts: Sequence[np.ndarray], context_length: int, patch_size: int, batch_size: int
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(rows, [len(rows), width] NaN-left-padded float32) chunks of at most ``batch_size`` series of
    one length bucket (``bucket_length`` of the points after any leading NaN). Every forecaster
    that runs the backbone over ragged contexts pads through here, so the same history gives
    the same forecast in any of them and beside any other series."""
    spans = [len(x) - _leading_nan(x) for x in contexts]
    buckets = np.array([bucket_length(n, context_length, patch_size) for n in spans], dtype=np.int64)
    for width in np.unique(buckets):
        rows = np.flatnonzero(buckets == width)
        for start in range(0, len(rows), batch_size):
            part = rows[start : start + batch_size]
            yield part, left_pad([contexts[i] for i in part], int(width))


def in_call_order(stacked: np.ndarray, order: list[np.ndarray]) -> np.ndarray:
    """Rows produced chunk by chunk (``order``: each chunk's rows) back in the callers' order."""
    rows = np.concatenate(order) if order else np.zeros(0, np.int64)
    out = np.empty_like(stacked)
    out[rows] = stacked
    return out


def _leading_nan(x: np.ndarray) -> int:
    observed = np.flatnonzero(~np.isnan(np.asarray(x, dtype=np.float32)))
    return int(observed[0]) if observed.size else len(x)
