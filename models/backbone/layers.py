"""Transformer building blocks: RMSNorm, SwiGLU, rotary positions, time-wise and
variate-wise attention blocks (pre-norm). Activations are [batch, variate, patch, d_model]."""

from __future__ import annotations

from typing import Any, cast

import torch
import torch.nn.functional as F
from jaxtyping import Bool, Float, Int
from torch import Tensor, nn


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float = 1e-6):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: Float[Tensor, "*batch dim"]) -> Float[Tensor, "*batch dim"]:
        # statistics in float32 even under bf16 autocast
        x32 = x.float()
        out = x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + self.eps)
        return (out * self.weight).to(x.dtype)


class SwiGLU(nn.Module):
    def __init__(self, d_model: int, d_ff: int, dropout: float = 0.0):
        super().__init__()
        self.gate_up = nn.Linear(d_model, 2 * d_ff, bias=False)
        self.down = nn.Linear(d_ff, d_model, bias=False)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Float[Tensor, "*batch d_model"]) -> Float[Tensor, "*batch d_model"]:
        gate, up = self.gate_up(x).chunk(2, dim=-1)
        return self.dropout(self.down(F.silu(gate) * up))


class Rotary(nn.Module):
    """Rotary position embedding on the first half of the head dims (the rest stays
    position-free, as in Toto 2.0); positions are patch indices."""

    def __init__(self, head_dim: int, base: float = 10000.0):
        super().__init__()
        self.rot_dim = head_dim // 2
        inv_freq = 1.0 / base ** (torch.arange(0, self.rot_dim, 2, dtype=torch.float32) / self.rot_dim)
        self.register_buffer("inv_freq", inv_freq, persistent=False)

    def forward(self, x: Float[Tensor, "n heads length head_dim"]) -> Float[Tensor, "n heads length head_dim"]:
        """Rotated by position along ``length``."""
        L = x.shape[-2]
        pos = torch.arange(L, device=x.device, dtype=torch.float32)
        angles = torch.outer(pos, cast(Tensor, self.inv_freq).to(x.device))  # [L, rot_dim / 2]
        cos, sin = angles.cos().to(x.dtype), angles.sin().to(x.dtype)
        rot, rest = x[..., : self.rot_dim], x[..., self.rot_dim :]
        x1, x2 = rot[..., 0::2], rot[..., 1::2]
        rotated = torch.stack((x1 * cos - x2 * sin, x1 * sin + x2 * cos), dim=-1).flatten(-2)
        return torch.cat((rotated, rest), dim=-1)


class Attention(nn.Module):
    def __init__(self, d_model: int, n_heads: int, dropout: float = 0.0, rotary: bool = False):
        super().__init__()
        self.n_heads = n_heads
        self.qkv = nn.Linear(d_model, 3 * d_model, bias=False)
        self.out = nn.Linear(d_model, d_model, bias=False)
        self.rotary = Rotary(d_model // n_heads) if rotary else None
        self.dropout = dropout

    def forward(
        self,
        x: Float[Tensor, "n length d_model"],
        attn_mask: Bool[Tensor, "n 1 length length"] | None = None,
        is_causal: bool = False,
    ) -> Float[Tensor, "n length d_model"]:
        """``attn_mask``: True = may attend."""
        N, L, d = x.shape
        q, k, v = self.qkv(x).view(N, L, 3, self.n_heads, d // self.n_heads).permute(2, 0, 3, 1, 4)
        if self.rotary is not None:
            q, k = self.rotary(q), self.rotary(k)
        y = F.scaled_dot_product_attention(
            q,
            k,
            v,
            attn_mask=attn_mask,
            is_causal=is_causal,
            dropout_p=self.dropout if self.training else 0.0,
        )  # [N, heads, L, head_dim]
        return self.out(y.transpose(1, 2).reshape(N, L, d))


class _PreNormBlock(nn.Module):
    """Pre-norm attention + SwiGLU feed-forward, each with a residual; subclasses choose the
    axis attention runs along."""

    rotary = False

    def __init__(self, d_model: int, d_ff: int, n_heads: int, dropout: float = 0.0):
        super().__init__()
        self.norm1, self.norm2 = RMSNorm(d_model), RMSNorm(d_model)
        self.attn = Attention(d_model, n_heads, dropout, rotary=self.rotary)
        self.ffn = SwiGLU(d_model, d_ff, dropout)
        self.drop = nn.Dropout(dropout)

    def _residual(self, h: Tensor, **attn_args: Any) -> Tensor:
        h = h + self.drop(self.attn(self.norm1(h), **attn_args))
        return h + self.ffn(self.norm2(h))


class TimeBlock(_PreNormBlock):
    """Causal self-attention along the patch axis of each series, rotary positions."""

    rotary = True

    def forward(
        self, x: Float[Tensor, "batch variate patch d_model"], group_ids: Int[Tensor, "batch variate"] | None = None
    ) -> Float[Tensor, "batch variate patch d_model"]:
        """``group_ids`` unused (the blocks share one interface)."""
        B, V, P, d = x.shape
        return self._residual(x.reshape(B * V, P, d), is_causal=True).view(B, V, P, d)


class VariateBlock(_PreNormBlock):
    """Attention across series (the V axis) at each patch; no position code, so the
    order of variates does not matter. group_ids [B, V]: only equal ids attend."""

    def forward(
        self, x: Float[Tensor, "batch variate patch d_model"], group_ids: Int[Tensor, "batch variate"] | None = None
    ) -> Float[Tensor, "batch variate patch d_model"]:
        B, V, P, d = x.shape
        h = x.transpose(1, 2).reshape(B * P, V, d)  # [B*P, V, d]
        mask = None
        if group_ids is not None:
            same = group_ids[:, :, None] == group_ids[:, None, :]  # [B, V, V]
            mask = same.repeat_interleave(P, dim=0).unsqueeze(1)  # [B*P, 1, V, V]
        return self._residual(h, attn_mask=mask).view(B, P, V, d).transpose(1, 2)
