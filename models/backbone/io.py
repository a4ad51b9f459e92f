"""A backbone on disk: ``config.json`` and ``weights.pt`` (a plain state dict) in one folder."""
from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import Tensor

from models.backbone.config import BackboneConfig
from models.backbone.network import PatchBackbone

CONFIG_FILE, WEIGHTS_FILE = "config.json", "weights.pt"


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
    model.load_state_dict(state)
    return model.to(map_location).eval()
