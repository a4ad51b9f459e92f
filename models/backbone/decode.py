"""How a forecast is read out of the backbone: the input of one pass (context, then masked
future patches) and the decoding of its horizon into sorted quantiles.

Forecasting and fine-tuning both go through ``decode_horizon``, so what fine-tuning lowers
is exactly what ``PatchBackbone.forecast`` returns.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, NamedTuple

import torch
import torch.nn.functional as F
from jaxtyping import Bool, Float
from torch import Tensor

from models.backbone.config import BackboneConfig

if TYPE_CHECKING:
    from models.backbone.network import PatchBackbone

# knots are clamped in asinh space before sinh: sinh(20) ~ 2.4e8 scales, finite in float32
KNOT_LIMIT = 20.0


class ForecastInputs(NamedTuple):
    values: Float[Tensor, "batch 1 time"]  # 0 where missing or masked
    observed: Bool[Tensor, "batch 1 time"]
    n_ctx: int  # context patches
    n_future: int  # masked future patches


class Horizon(NamedTuple):
    knots: Float[Tensor, "batch horizon quantile"]  # asinh space, unsorted
    loc: Float[Tensor, " batch"]  # scaler loc at the last context step
    scale: Float[Tensor, " batch"]
    embedding: Float[Tensor, "batch d_model"]  # hidden state of the last context patch


class Forecast(NamedTuple):
    quantiles: Float[Tensor, "batch horizon quantile"]  # raw space, sorted on the last axis
    norm_quantiles: Float[Tensor, "batch horizon quantile"]  # (quantiles - loc) / scale
    loc: Float[Tensor, " batch"]
    scale: Float[Tensor, " batch"]
    embedding: Float[Tensor, "batch d_model"]  # a kNN datastore key


def forecast_inputs(config: BackboneConfig, context: Float[Tensor, "batch time"], horizon: int) -> ForecastInputs:
    """context (NaN = missing, any length, even 0) -> the input of one forecasting pass:
    left-padded (as missing) to whole patches, the most recent patches that fit, then
    ``ceil(horizon / patch)`` masked patches (value 0, observed False)."""
    p = config.patch_size
    if horizon < 1:
        raise ValueError("horizon must be >= 1")
    n_future = math.ceil(horizon / p)
    max_ctx_patches = config.max_patches - n_future
    if max_ctx_patches < 1:
        raise ValueError(f"horizon {horizon} leaves no room for context in max_context {config.max_context}")
    T = context.shape[1]
    observed = ~torch.isnan(context)
    values = torch.nan_to_num(context, nan=0.0)
    n_ctx = min(max(math.ceil(T / p), 1), max_ctx_patches)
    keep = n_ctx * p
    pad = max(keep - T, 0)
    values = F.pad(values, (pad, 0))[:, -keep:]
    observed = F.pad(observed, (pad, 0), value=False)[:, -keep:]
    values = F.pad(values, (0, n_future * p))
    observed = F.pad(observed, (0, n_future * p), value=False)
    return ForecastInputs(values[:, None], observed[:, None], n_ctx, n_future)


def decode_horizon(backbone: PatchBackbone, context: Float[Tensor, "batch time"], horizon: int) -> Horizon:
    """One pass over context + masked future; the horizon's knots and the statistics that
    map them back. Gradients follow the caller's mode."""
    c = backbone.config
    inputs = forecast_inputs(c, context, horizon)
    out = backbone(inputs.values, inputs.observed)
    B, last = context.shape[0], inputs.n_ctx - 1
    knots = out.knots[:, 0, inputs.n_ctx :].reshape(B, inputs.n_future * c.patch_size, c.n_quantiles)[:, :horizon]
    # the masked future patches carry the statistics of the last context step
    return Horizon(knots, out.loc[:, 0, last], out.scale[:, 0, last], out.hidden[:, 0, last].float())


def knots_to_quantiles(
    knots: Float[Tensor, "batch horizon quantile"], loc: Float[Tensor, " batch"], scale: Float[Tensor, " batch"]
) -> tuple[Float[Tensor, "batch horizon quantile"], Float[Tensor, "batch horizon quantile"]]:
    """-> (raw quantiles, normalised quantiles), both sorted (sinh is monotone)."""
    norm_q = torch.sinh(knots.clamp(-KNOT_LIMIT, KNOT_LIMIT)).sort(dim=-1).values
    return norm_q * scale[:, None, None] + loc[:, None, None], norm_q


def normalised_target(
    future: Float[Tensor, "batch horizon"], loc: Float[Tensor, " batch"], scale: Float[Tensor, " batch"]
) -> Float[Tensor, "batch horizon"]:
    """Raw future -> asinh((y - loc) / scale) in float32 (float64 inside, like the scaler); NaN stays NaN."""
    y = (future.to(torch.float64) - loc.to(torch.float64)[:, None]) / scale.to(torch.float64)[:, None]
    return torch.asinh(y).to(torch.float32)
