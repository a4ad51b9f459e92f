"""The kNN teacher queried at inference (retrieval on every request), registered as
``teacher-<domain>`` to compare against the fused model, which needs no search.

Folder: ``backbone/``, ``teacher/`` (datastore + index) and ``teacher_forecaster.json``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from models.backbone.io import load_backbone, save_backbone
from models.backbone.network import PatchBackbone
from models.forecasting.batch import bucketed_chunks, in_call_order
from models.forecasting.inputs import left_pad
from models.forecasting.mode import check_horizon, serving_mode
from models.forecasting.tiny import guarded
from models.forecasting.types import QuantileForecast
from models.memory.teacher import KnnTeacher

CONFIG_FILE, BACKBONE_DIR, TEACHER_DIR = "teacher_forecaster.json", "backbone", "teacher"
PARTS_WITHOUT_BACKBONE = (CONFIG_FILE, TEACHER_DIR)  # what a loader with the backbone already in memory needs


class TeacherForecaster:
    def __init__(
        self,
        backbone: PatchBackbone,
        teacher: KnnTeacher,
        context_length: int,
        horizon: int,
        device: str = "cpu",
        batch_size: int = 256,
    ):
        if teacher.horizon != horizon or teacher.contexts.shape[1] != context_length:
            raise ValueError("teacher datastore does not match context_length/horizon")
        self.backbone, self.teacher = backbone, teacher
        self.context_length, self.horizon = int(context_length), int(horizon)
        self.device, self.batch_size = device, batch_size

    def predict(
        self, contexts: Sequence[np.ndarray], horizon: int, ids: Sequence[str] | None = None
    ) -> QuantileForecast:
        """Retrieval from the train datastore (queries are not in it: nothing to exclude); a series of
        fewer than ``tiny.MIN_NEURAL_CONTEXT`` points gets the naive answer."""
        check_horizon(horizon, self.horizon)
        return guarded(self._predict, contexts, horizon)

    def _predict(self, contexts: Sequence[np.ndarray], horizon: int) -> QuantileForecast:
        padded = left_pad(contexts, self.context_length)  # NaN = missing; the teacher aligns on these
        device = torch.device(self.device)
        keys = [np.zeros((0, self.backbone.config.d_model), np.float32)]
        base = [np.zeros((0, self.horizon, self.backbone.config.n_quantiles), np.float32)]
        order = [np.zeros(0, np.int64)]
        with serving_mode((self.backbone,), device):
            for rows, chunk in bucketed_chunks(
                contexts, self.context_length, self.backbone.config.patch_size, self.batch_size
            ):
                fc = self.backbone.forecast(torch.from_numpy(chunk).to(device), self.horizon)
                keys.append(fc.embedding.float().cpu().numpy())
                base.append(fc.quantiles.float().cpu().numpy())
                order.append(rows)
        keys_all, base_all = in_call_order(np.concatenate(keys), order), in_call_order(np.concatenate(base), order)
        q = self.teacher.query(keys_all, padded).quantiles
        # a step no retrieved future reaches (short-horizon series in the store, or nothing
        # retrievable at all) is answered by the backbone instead of NaN
        missing = np.isnan(q)
        q[missing] = base_all[missing]
        return QuantileForecast(q[:, :horizon])

    def save(self, directory: str | Path) -> Path:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        save_backbone(self.backbone, directory / BACKBONE_DIR)
        self.teacher.save(directory / TEACHER_DIR)
        meta = {"context_length": self.context_length, "horizon": self.horizon}
        (directory / CONFIG_FILE).write_text(json.dumps(meta, indent=2))
        return directory

    @classmethod
    def load(
        cls, directory: str | Path, device: str = "cpu", backbone: PatchBackbone | None = None
    ) -> TeacherForecaster:
        """``backbone``: one already in memory (its folder then need not be there)."""
        directory = Path(directory)
        meta = json.loads((directory / CONFIG_FILE).read_text())
        backbone = backbone if backbone is not None else load_backbone(directory / BACKBONE_DIR, map_location=device)
        return cls(backbone, KnnTeacher.load(directory / TEACHER_DIR), device=device, **meta)
