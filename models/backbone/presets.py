"""Backbone sizes: Toto 2.0's presets (one recipe, 4M..2.5B) plus ``tiny`` for tests and CPU demos.

``python -m models.backbone.presets`` prints them as a table.
"""

from __future__ import annotations

from models.backbone.config import BackboneConfig

# Widths/depths from Toto 2.0 (head dim 64, context 4096, dropout 0). Patch 16, not Toto's 32:
# Toto's data is minute-level observability, ours (and most users') daily to yearly, where a
# 20-point yearly series is one 32-step token, mostly padding. On the ablation's validation windows
# (docs/benchmarks.md) patch 16 scored M3 relative MASE 0.968 against 1.007 for 32 (and 1.002 for 8).
# Variate-wise layers: one closing each group (the whole stack for the small ones, groups of 12 above).
PATCH = 16
PRESETS: dict[str, BackboneConfig] = {
    "tiny": BackboneConfig(d_model=64, d_ff=172, n_heads=4, n_layers=2, patch_size=8, max_context=512, variate_every=2),
    "4m": BackboneConfig(256, 688, 4, 4, PATCH, 4096, variate_every=4),
    "22m": BackboneConfig(512, 1368, 8, 6, PATCH, 4096, variate_every=6),
    "313m": BackboneConfig(1024, 2736, 16, 24, PATCH, 4096, variate_every=12),
    "1b": BackboneConfig(1536, 4096, 24, 36, PATCH, 4096, variate_every=12),
    "2.5b": BackboneConfig(2048, 5464, 32, 48, PATCH, 4096, variate_every=12),
}


def get_preset(name: str) -> BackboneConfig:
    """A fresh copy of a named preset (callers may edit it)."""
    if name not in PRESETS:
        raise KeyError(f"unknown preset {name!r}; valid presets: {', '.join(PRESETS)}")
    return BackboneConfig.from_dict(PRESETS[name].to_dict())


def preset_name(config: BackboneConfig) -> str:
    """The preset whose widths and depth ``config`` has (patch size and scaler may differ), else "custom":
    a continued run is named after the shape it continues, not the recipe's ``preset`` field."""
    shape = (config.d_model, config.d_ff, config.n_heads, config.n_layers)
    return next((name for name, p in PRESETS.items() if (p.d_model, p.d_ff, p.n_heads, p.n_layers) == shape), "custom")


def count_parameters(config: BackboneConfig) -> int:
    """Parameter count without allocating: the model is built on the meta device."""
    import torch  # here, not at the top: settings and argument checks read PRESETS without torch

    from models.backbone.network import PatchBackbone

    with torch.device("meta"):
        model = PatchBackbone(config)
    return sum(p.numel() for p in model.parameters())


def preset_table() -> str:
    """A markdown table of every preset's shape and parameter count."""
    rows = [
        "| preset | d_model | d_ff | heads | layers | patch | variate layers | parameters |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, c in PRESETS.items():
        n_variate = sum(c.is_variate_layer(i) for i in range(c.n_layers))
        rows.append(
            f"| {name} | {c.d_model} | {c.d_ff} | {c.n_heads} | {c.n_layers} | {c.patch_size} "
            f"| {n_variate} | {count_parameters(c):,} |"
        )
    return "\n".join(rows)


if __name__ == "__main__":
    print(preset_table())
