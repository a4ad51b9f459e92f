"""Toto-2.0-style decoder-only patch transformer with a one-pass quantile head.

values [B, V, T] -> causal scaler + asinh -> patches [B, V, P, patch] -> residual-MLP
embedding -> time-wise blocks (a variate-wise block closing each group) -> RMSNorm ->
9 knots per step of each patch in asinh space. The forecast horizon is a run of
masked patches (value 0, observed False) after the context, decoded in one pass.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from models.layers import RMSNorm, TimeBlock, VariateBlock
from models.presets import BackboneConfig
from models.scaler import causal_scale

# knots are clamped in asinh space before sinh: sinh(20) ~ 2.4e8 scales, finite in float32
KNOT_LIMIT = 20.0


@dataclass
class BackboneOutput:
    knots: Tensor  # [B, V, P, patch, Q] quantile knots per step, normalised (asinh) space, unsorted
    hidden: Tensor  # [B, V, P, d_model] final (normed) hidden states
    loc: Tensor  # [B, V, P] scaler loc per patch
    scale: Tensor  # [B, V, P] scaler scale per patch


@dataclass
class Forecast:
    quantiles: Tensor  # [B, H, 9] raw space, sorted on the last dim
    norm_quantiles: Tensor  # [B, H, 9] (quantiles - loc) / scale
    loc: Tensor  # [B] scaler loc at the last context step
    scale: Tensor  # [B] scaler scale at the last context step
    embedding: Tensor  # [B, d_model] final hidden state of the last context patch (a kNN datastore key)


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

    def forward(self, values: Tensor, observed: Tensor, group_ids: Tensor | None = None) -> BackboneOutput:
        """values [B, V, T] float, observed [B, V, T] bool, T a multiple of patch_size;
        group_ids [B, V] (optional) restricts variate-wise attention to equal ids."""
        c = self.config
        B, V, T = values.shape
        if T % c.patch_size:
            raise ValueError(f"time length {T} is not a multiple of patch_size {c.patch_size}")
        P = T // c.patch_size
        if P > c.max_patches:
            raise ValueError(f"{T} steps exceed max_context {c.max_context}")
        # unobserved values are dropped here, so whatever fills them (padding) cannot leak in
        norm, loc, scale = causal_scale(values, observed, c.patch_size, c.min_scale)  # [B,V,T], [B,V,P] x2
        patches = torch.cat(
            (norm.view(B, V, P, c.patch_size), observed.to(norm.dtype).view(B, V, P, c.patch_size)), dim=-1
        )  # [B, V, P, 2 * patch]
        h = self.embed(patches)  # [B, V, P, d]
        recompute = self.gradient_checkpointing and self.training and torch.is_grad_enabled()
        for block in self.blocks:
            h = checkpoint(block, h, group_ids, use_reentrant=False) if recompute else block(h, group_ids)
        h = self.norm(h)
        knots = self.head(h).view(B, V, P, c.patch_size, c.n_quantiles).float()
        return BackboneOutput(knots=knots, hidden=h, loc=loc, scale=scale)

    def forecast(self, context: Tensor, horizon: int) -> Forecast:
        """context [B, T] float32 with NaN = missing (any T, even 0) -> Forecast for ``horizon`` steps.

        Gradients follow the caller's mode: wrap in torch.inference_mode() to serve.
        """
        c, p = self.config, self.config.patch_size
        context = context.to(dtype=torch.float32, device=self._device())
        B = context.shape[0]
        values, observed, n_ctx, n_future = forecast_inputs(c, context, horizon)

        out = self(values, observed)
        knots = out.knots[:, 0, n_ctx:].reshape(B, n_future * p, c.n_quantiles)[:, :horizon]  # [B, H, Q]
        norm_q = torch.sinh(knots.clamp(-KNOT_LIMIT, KNOT_LIMIT)).sort(dim=-1).values  # sinh is monotone
        loc = out.loc[:, 0, n_ctx - 1]  # [B]; the future patches carry these same statistics
        scale = out.scale[:, 0, n_ctx - 1]
        quantiles = norm_q * scale[:, None, None] + loc[:, None, None]
        return Forecast(
            quantiles=quantiles,
            norm_quantiles=norm_q,
            loc=loc,
            scale=scale,
            embedding=out.hidden[:, 0, n_ctx - 1].float(),
        )

    def _device(self) -> torch.device:
        return next(self.parameters()).device


def forecast_inputs(config: BackboneConfig, context: Tensor, horizon: int) -> tuple[Tensor, Tensor, int, int]:
    """context [B, T] float32 (NaN = missing) -> (values [B, 1, L], observed [B, 1, L],
    n_ctx, n_future): the input ``PatchBackbone.forecast`` builds, step for step."""
    p = config.patch_size
    if horizon < 1:
        raise ValueError("horizon must be >= 1")
    n_future = math.ceil(horizon / p)
    max_ctx_patches = config.max_patches - n_future
    if max_ctx_patches < 1:
        raise ValueError(f"horizon {horizon} leaves no room for context in max_context {config.max_context}")
    B, T = context.shape
    observed = ~torch.isnan(context)
    values = torch.nan_to_num(context, nan=0.0)
    # left-pad (as missing) to whole patches, keep the most recent patches that fit
    n_ctx = min(max(math.ceil(T / p), 1), max_ctx_patches)
    keep = n_ctx * p
    pad = max(keep - T, 0)
    values = F.pad(values, (pad, 0))[:, -keep:]
    observed = F.pad(observed, (pad, 0), value=False)[:, -keep:]
    # masked future patches: value 0, observed False (contiguous future masking)
    values = F.pad(values, (0, n_future * p))
    observed = F.pad(observed, (0, n_future * p), value=False)
    return values[:, None], observed[:, None], n_ctx, n_future


def save_backbone(model: PatchBackbone, directory: str | Path, state_dict: dict[str, Tensor] | None = None) -> Path:
    """Writes ``config.json`` and ``weights.pt`` (a plain state dict) into ``directory``.
    ``state_dict``: full weights gathered by the caller when ``model`` is sharded (FSDP)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "config.json").write_text(json.dumps(model.config.to_dict(), indent=2))
    state = {k: v.detach().cpu() for k, v in (state_dict if state_dict is not None else model.state_dict()).items()}
    torch.save(state, directory / "weights.pt")
    return directory


def load_backbone(directory: str | Path, map_location: str | torch.device = "cpu") -> PatchBackbone:
    """Inverse of ``save_backbone``; returns the model in eval mode."""
    directory = Path(directory)
    config = BackboneConfig.from_dict(json.loads((directory / "config.json").read_text()))
    model = PatchBackbone(config)
    state = torch.load(directory / "weights.pt", map_location=map_location, weights_only=True)
    model.load_state_dict(state)
    return model.to(map_location).eval()
