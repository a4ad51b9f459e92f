"""The frozen backbone alone behind the same ``predict`` as the fused forecaster."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from models.backbone import PatchBackbone, load_backbone, save_backbone
from models.inference import batch_forecast


class BackboneForecaster:
    def __init__(self, backbone: PatchBackbone, context_length: int):
        self.backbone = backbone.eval()
        self.context_length = context_length

    def predict(self, contexts: list[np.ndarray], horizon: int) -> np.ndarray:
        """contexts: one 1-D array per series -> quantiles [N, horizon, 9]."""
        out = batch_forecast(self.backbone, contexts, horizon, self.context_length)
        return out["quantiles"]

    def save(self, directory: str | Path) -> None:
        directory = Path(directory)
        save_backbone(self.backbone, directory / "backbone")
        (directory / "backbone_forecaster.json").write_text(json.dumps({"context_length": self.context_length}))

    @classmethod
    def load(cls, directory: str | Path) -> "BackboneForecaster":
        directory = Path(directory)
        cfg = json.loads((directory / "backbone_forecaster.json").read_text())
        return cls(load_backbone(directory / "backbone"), cfg["context_length"])
