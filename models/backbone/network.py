"""Toto-2.0-style decoder-only patch transformer with a one-pass quantile head.

values -> causal scaler + asinh -> patches -> residual-MLP embedding -> time-wise blocks
(a variate-wise block closing each group) -> RMSNorm -> 9 knots per step of each patch in
asinh space. The forecast horizon is a run of masked patches (value 0, observed False)
after the context, decoded in one pass (``models.backbone.decode``).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F
from jaxtyping import Bool, Float, Int
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from models.backbone.config import BackboneConfig
from models.backbone.decode import Forecast, decode_horizon, knots_to_quantiles
from models.backbone.layers import RMSNorm, TimeBlock, VariateBlock
from models.backbone.scaler import causal_scale


class BackboneOutput(NamedTuple):
    knots: Float[Tensor, "batch variate patch patch_size quantile"]  # asinh space, unsorted
    hidden: Float[Tensor, "batch variate patch d_model"]  # final (normed) hidden states
    loc: Float[Tensor, "batch variate patch"]  # scaler loc per patch
    scale: Float[Tensor, "batch variate patch"]  # scaler scale per patch


class ResidualMLP(nn.Module):
    """Linear skip + one SiLU hidden layer: the patch embedding and the quantile head."""

    def __init__(self, d_in: int, d_hidden: int, d_out: int):
        super().__init__()
        self.hidden = nn.Linear(d_in, d_hidden)
        self.out = nn.Linear(d_hidden, d_out)
        self.skip = nn.Linear(d_in, d_out)

    def forward(self, x: Tensor) -> Tensor:
        return self.out(F.silu(self.hidden(x))) + self.skip(x)


class PatchBackbone(nn.Module):
    def __init__(self, config: BackboneConfig):
        super().__init__()
        self.config = config
        c = config
        # input per patch: normalised values and the observed mask, side by side
        self.embed = ResidualMLP(2 * c.patch_size, c.d_ff, c.d_model)
        self.blocks = nn.ModuleList(
            (VariateBlock if c.is_variate_layer(i) else TimeBlock)(c.d_model, c.d_ff, c.n_heads, c.dropout)
            for i in range(c.n_layers)
        )
        self.norm = RMSNorm(c.d_model)
        self.head = ResidualMLP(c.d_model, c.d_ff, c.patch_size * c.n_quantiles)
        # recompute each block's activations in backward: memory for ~1/3 more compute
        self.gradient_checkpointing = False
        self._init_weights()

    def _init_weights(self) -> None:
        # GPT-2 style: small normal weights, residual output projections shrunk with depth
        # so the residual stream keeps its scale from 2 to 48 layers
        for name, module in self.named_modules():
            if isinstance(module, nn.Linear):
                std = 0.02
                if name.endswith(("attn.out", "ffn.down")):
                    std /= math.sqrt(2 * self.config.n_layers)
                nn.init.normal_(module.weight, mean=0.0, std=std)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)

    def forward(
        self,
        values: Float[Tensor, "batch variate time"],
        observed: Bool[Tensor, "batch variate time"],
        group_ids: Int[Tensor, "batch variate"] | None = None,
    ) -> BackboneOutput:
        """``time`` a multiple of patch_size; ``group_ids`` (optional) restricts variate-wise
        attention to equal ids."""
        c = self.config
        B, V, T = values.shape
        if T % c.patch_size:
            raise ValueError(f"time length {T} is not a multiple of patch_size {c.patch_size}")
        P = T // c.patch_size
        if P > c.max_patches:
            raise ValueError(f"{T} steps exceed max_context {c.max_context}")
        # unobserved values are dropped here, so whatever fills them (padding) cannot leak in
        norm, loc, scale = causal_scale(values, observed, c.patch_size, c.min_scale, c.scaler_window)
        patches = torch.cat(
            (norm.view(B, V, P, c.patch_size), observed.to(norm.dtype).view(B, V, P, c.patch_size)), dim=-1
        )  # [batch, variate, patch, 2 * patch_size]
        h = self.embed(patches)
        recompute = self.gradient_checkpointing and self.training and torch.is_grad_enabled()
        for block in self.blocks:
            h = checkpoint(block, h, group_ids, use_reentrant=False) if recompute else block(h, group_ids)
        h = self.norm(h)
        knots = self.head(h).view(B, V, P, c.patch_size, c.n_quantiles).float()
        return BackboneOutput(knots=knots, hidden=h, loc=loc, scale=scale)

    def forecast(self, context: Float[Tensor, "batch time"], horizon: int) -> Forecast:
        """Context (NaN = missing, any length) -> ``horizon`` steps of sorted quantiles.

        Gradients follow the caller's mode: wrap in torch.inference_mode() to serve.
        """
        context = context.to(dtype=torch.float32, device=self._device())
        out = decode_horizon(self, context, horizon)
        quantiles, norm_q = knots_to_quantiles(out.knots, out.loc, out.scale)
        return Forecast(quantiles, norm_q, out.loc, out.scale, out.embedding)

    def _device(self) -> torch.device:
        return next(self.parameters()).device
