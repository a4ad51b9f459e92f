"""The frozen backbone alone, as a forecaster. Folder: ``backbone/`` + ``backbone_forecaster.json``."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from models.backbone.io import load_backbone, save_backbone
from models.backbone.network import PatchBackbone
from models.forecasting.batch import batch_forecast
from models.forecasting.tiny import guarded
from models.forecasting.types import QuantileForecast

CONFIG_FILE, BACKBONE_DIR = "backbone_forecaster.json", "backbone"
PARTS_WITHOUT_BACKBONE = (CONFIG_FILE,)  # what a loader with the backbone already in memory needs


class BackboneForecaster:
    def __init__(self, backbone: PatchBackbone, context_length: int):
        self.backbone = backbone.eval()
        self.context_length = context_length

    def predict(
        self, contexts: Sequence[np.ndarray], horizon: int, ids: Sequence[str] | None = None
    ) -> QuantileForecast:
        """One 1-D array per series (NaN = missing) -> ``horizon`` steps of quantiles; a series of fewer
        than ``tiny.MIN_NEURAL_CONTEXT`` points gets the naive answer."""
        return guarded(self._predict, contexts, horizon)

    def _predict(self, contexts: Sequence[np.ndarray], horizon: int) -> QuantileForecast:
        return QuantileForecast(batch_forecast(self.backbone, contexts, horizon, self.context_length).quantiles)

    def save(self, directory: str | Path) -> Path:
        directory = Path(directory)
        save_backbone(self.backbone, directory / BACKBONE_DIR)
        (directory / CONFIG_FILE).write_text(json.dumps({"context_length": self.context_length}))
        return directory

    @classmethod
    def load(
        cls, directory: str | Path, device: str = "cpu", backbone: PatchBackbone | None = None
    ) -> BackboneForecaster:
        """``backbone``: one already in memory (its folder then need not be there)."""
        directory = Path(directory)
        cfg = json.loads((directory / CONFIG_FILE).read_text())
        backbone = backbone if backbone is not None else load_backbone(directory / BACKBONE_DIR, map_location=device)
        return cls(backbone, cfg["context_length"])


def trained_context(backbone_dir: str | Path) -> int | None:
    """The context a registered backbone was trained on: its forecaster's setting, stored beside
    the ``backbone/`` folder; None where there is none."""
    config = Path(backbone_dir).parent / CONFIG_FILE
    return int(json.loads(config.read_text())["context_length"]) if config.is_file() else None
