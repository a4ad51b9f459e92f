"""The backbone's shape: one dataclass, saved as ``config.json`` next to the weights."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any


@dataclass
class BackboneConfig:
    d_model: int
    d_ff: int
    n_heads: int
    n_layers: int
    patch_size: int
    max_context: int  # in time steps, context + masked future
    # one variate-wise (cross-series) layer per group of this many layers, last in the group; 0 = none
    variate_every: int
    dropout: float = 0.0
    min_scale: float = 1e-3  # floor of the causal scaler's std (flat / all-zero series)
    scaler_window: int = 0  # causal scaler statistics over the last this many patches; 0 = the whole history
    n_quantiles: int = 9

    def __post_init__(self) -> None:
        if self.d_model % self.n_heads:
            raise ValueError(f"d_model {self.d_model} is not a multiple of n_heads {self.n_heads}")
        if (self.d_model // self.n_heads) % 4:
            raise ValueError("head dim must be a multiple of 4 (rotary on half the head dims)")
        if self.max_context % self.patch_size:
            raise ValueError(f"max_context {self.max_context} is not a multiple of patch_size {self.patch_size}")
        if self.scaler_window < 0:
            raise ValueError(f"scaler_window must be >= 0, got {self.scaler_window}")
        if self.variate_every < 0 or self.variate_every > self.n_layers:
            raise ValueError(f"variate_every must be in 0..n_layers, got {self.variate_every}")

    @property
    def max_patches(self) -> int:
        return self.max_context // self.patch_size

    def is_variate_layer(self, index: int) -> bool:
        """Layer ``index`` (0-based) is variate-wise when it closes a group of ``variate_every``."""
        return self.variate_every > 0 and (index + 1) % self.variate_every == 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "BackboneConfig":
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown BackboneConfig keys: {sorted(unknown)}")
        return cls(**data)
