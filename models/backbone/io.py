"""A backbone on disk: ``config.json`` and ``weights.pt`` (a plain state dict) in one folder."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from models.backbone.config import BackboneConfig
from models.backbone.network import PatchBackbone

CONFIG_FILE, WEIGHTS_FILE = "config.json", "weights.pt"
# the backbones shipped in the repository (weights in bf16, config, card.json and MODEL_CARD.md): the
# default, and a long-context one (2,048 steps, daily and sub-daily data in its corpus) that onboarding
# offers to domains of daily or finer data
SHIPPED_DIR = Path(__file__).with_name("shipped")
SHIPPED_LONG_DIR = Path(__file__).with_name("shipped_long")
CARD_FILE = "card.json"


def shipped_backbone(directory: Path | None = None) -> Path | None:
    """A shipped backbone's folder (the default one unless ``directory``), None when this checkout has none."""
    folder = SHIPPED_DIR if directory is None else directory  # read at call time: tests point it elsewhere
    return folder if (folder / CONFIG_FILE).is_file() and (folder / WEIGHTS_FILE).is_file() else None


def ship_backbone(source: str | Path, card: dict[str, Any], directory: str | Path = SHIPPED_DIR) -> Path:
    """Copy a saved backbone into ``directory`` with its weights in bf16 (half the bytes; the
    forecast of a bf16-rounded model differs from the fp32 one by well under its own noise) and
    its card (what it was trained on, how long, how it scores)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    state = torch.load(Path(source) / WEIGHTS_FILE, map_location="cpu", weights_only=True)
    torch.save(
        {k: v.to(torch.bfloat16) if v.is_floating_point() else v for k, v in state.items()}, directory / WEIGHTS_FILE
    )
    (directory / CONFIG_FILE).write_text((Path(source) / CONFIG_FILE).read_text())
    (directory / CARD_FILE).write_text(json.dumps(card, indent=2))
    return directory


def save_backbone(model: PatchBackbone, directory: str | Path, state_dict: dict[str, Tensor] | None = None) -> Path:
    """``state_dict``: full weights gathered by the caller when ``model`` is sharded (FSDP)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / CONFIG_FILE).write_text(json.dumps(model.config.to_dict(), indent=2))
    state = {k: v.detach().cpu() for k, v in (state_dict if state_dict is not None else model.state_dict()).items()}
    torch.save(state, directory / WEIGHTS_FILE)
    return directory


def load_backbone(directory: str | Path, map_location: str | torch.device = "cpu") -> PatchBackbone:
    """Inverse of ``save_backbone``; returns the model in eval mode."""
    directory = Path(directory)
    config = BackboneConfig.from_dict(json.loads((directory / CONFIG_FILE).read_text()))
    model = PatchBackbone(config)
    state = torch.load(directory / WEIGHTS_FILE, map_location=map_location, weights_only=True)
    model.load_state_dict(state)  # bf16 weights (the shipped backbone) are cast to the model's fp32
    return model.to(map_location).eval()
