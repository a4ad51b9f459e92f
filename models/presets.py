"""Backbone sizes: Toto 2.0's presets (one recipe, 4M..2.5B) plus ``tiny`` for tests/CPU demos."""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields

import torch


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
    n_quantiles: int = 9

    def __post_init__(self) -> None:
        if self.d_model % self.n_heads:
            raise ValueError(f"d_model {self.d_model} is not a multiple of n_heads {self.n_heads}")
        if (self.d_model // self.n_heads) % 4:
            raise ValueError("head dim must be a multiple of 4 (rotary on half the head dims)")
        if self.max_context % self.patch_size:
            raise ValueError(f"max_context {self.max_context} is not a multiple of patch_size {self.patch_size}")
        if self.variate_every < 0 or self.variate_every > self.n_layers:
            raise ValueError(f"variate_every must be in 0..n_layers, got {self.variate_every}")

    @property
    def max_patches(self) -> int:
        return self.max_context // self.patch_size

    def is_variate_layer(self, index: int) -> bool:
        """Layer ``index`` (0-based) is variate-wise when it closes a group of ``variate_every``."""
        return self.variate_every > 0 and (index + 1) % self.variate_every == 0

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "BackboneConfig":
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown BackboneConfig keys: {sorted(unknown)}")
        return cls(**data)


# Widths/depths from Toto 2.0 (head dim 64, patch 32, context 4096, dropout 0).
# Variate-wise layers: one closing each group (the whole stack for the small ones, groups of 12 above).
PRESETS: dict[str, BackboneConfig] = {
    "tiny": BackboneConfig(d_model=64, d_ff=172, n_heads=4, n_layers=2, patch_size=8, max_context=512,
                           variate_every=2),
    "4m": BackboneConfig(256, 688, 4, 4, 32, 4096, variate_every=4),
    "22m": BackboneConfig(512, 1368, 8, 6, 32, 4096, variate_every=6),
    "313m": BackboneConfig(1024, 2736, 16, 24, 32, 4096, variate_every=12),
    "1b": BackboneConfig(1536, 4096, 24, 36, 32, 4096, variate_every=12),
    "2.5b": BackboneConfig(2048, 5464, 32, 48, 32, 4096, variate_every=12),
}


def get_preset(name: str) -> BackboneConfig:
    """A fresh copy of a named preset (callers may edit it)."""
    if name not in PRESETS:
        raise KeyError(f"unknown preset {name!r}; valid presets: {', '.join(PRESETS)}")
    return BackboneConfig.from_dict(PRESETS[name].to_dict())


def count_parameters(config: BackboneConfig) -> int:
    """Parameter count without allocating: the model is built on the meta device."""
    from models.backbone import PatchBackbone  # backbone imports this module

    with torch.device("meta"):
        model = PatchBackbone(config)
    return sum(p.numel() for p in model.parameters())


def preset_table() -> str:
    """A markdown table of every preset's shape and parameter count."""
    rows = ["| preset | d_model | d_ff | heads | layers | patch | variate layers | parameters |",
            "|---|---|---|---|---|---|---|---|"]
    for name, c in PRESETS.items():
        n_variate = sum(c.is_variate_layer(i) for i in range(c.n_layers))
        rows.append(f"| {name} | {c.d_model} | {c.d_ff} | {c.n_heads} | {c.n_layers} | {c.patch_size} "
                    f"| {n_variate} | {count_parameters(c):,} |")
    return "\n".join(rows)


if __name__ == "__main__":  # python -m models.presets
    print(preset_table())
