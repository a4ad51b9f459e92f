"""Fusion of backbone and memory-adapter quantiles, and the two servable forecasters.

``FusedForecaster``: one backbone forward + one adapter forward, no search
(the TS-Memory inference path). ``TeacherForecaster``: the kNN teacher queried at
inference (registered as ``teacher-<domain>`` for comparison).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from models.adapter import MemoryAdapter
from models.backbone import PatchBackbone, load_backbone, save_backbone
from models.inference import batch_forecast
from models.quantiles import QUANTILES
from models.teacher import KnnTeacher
from models.windows import left_pad

_LEVELS = np.asarray(QUANTILES, dtype=np.float64)


def fuse(q_base: np.ndarray, q_mem: np.ndarray, alpha: float) -> np.ndarray:
    """q_base + alpha * (q_mem - q_base), sorted along the last (quantile) axis: [..., Q]."""
    return np.sort(q_base + alpha * (q_mem - q_base), axis=-1)


def scaled_crps(q: np.ndarray, y: np.ndarray) -> float:
    """Pooled scaled CRPS: mean over known targets of 2*pinball, over mean |y|.

    q [N, H, Q], y [N, H] (NaN = no target). Equals GIFT-Eval's weighted quantile loss.
    """
    y = np.asarray(y, dtype=np.float64)
    known = ~np.isnan(y)
    diff = np.where(known, y, 0.0)[..., None] - np.asarray(q, dtype=np.float64)
    loss = 2.0 * np.maximum(_LEVELS * diff, (_LEVELS - 1.0) * diff).mean(-1)
    denom = np.abs(y[known]).mean()
    return float(loss[known].mean() / denom) if denom > 0 else float("nan")


def choose_alpha(
    q_base_val: np.ndarray,  # [N, H, Q] raw space
    q_mem_val: np.ndarray,  # [N, H, Q] raw space
    y_val: np.ndarray,  # [N, H]
    grid,
) -> tuple[float, list[dict]]:
    """Alpha of the grid with the lowest validation sCRPS; ties go to the smaller alpha
    (less departure from the backbone)."""
    table = [{"alpha": float(a), "sCRPS": scaled_crps(fuse(q_base_val, q_mem_val, a), y_val)} for a in sorted(grid)]
    best = table[0]
    for row in table[1:]:
        if row["sCRPS"] < best["sCRPS"] - 1e-12 * abs(best["sCRPS"]):
            best = row
    return best["alpha"], table


def _check_horizon(horizon: int, trained: int) -> None:
    if not 1 <= horizon <= trained:
        raise ValueError(f"horizon {horizon} is outside what this model was trained for (1..{trained})")


class FusedForecaster:
    def __init__(
        self,
        backbone: PatchBackbone,
        adapter: MemoryAdapter,
        alpha: float,
        context_length: int,
        horizon: int,
        device: str = "cpu",
        batch_size: int = 256,
    ):
        self.backbone, self.adapter = backbone, adapter.eval()
        self.alpha, self.context_length, self.horizon = float(alpha), int(context_length), int(horizon)
        self.device, self.batch_size = device, batch_size

    def components(self, contexts: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """Backbone and adapter quantiles at the trained horizon, raw space: ([N, H, Q], [N, H, Q])."""
        base = batch_forecast(
            self.backbone, contexts, self.horizon, self.context_length, batch_size=self.batch_size, device=self.device
        )
        q_mem_norm = adapter_forecast(self.adapter, base["embedding"], base["norm_quantiles"], self.batch_size)
        q_mem = q_mem_norm * base["scale"][:, None, None] + base["loc"][:, None, None]
        return np.asarray(base["quantiles"], dtype=np.float32), q_mem.astype(np.float32)

    def predict(self, contexts: list[np.ndarray], horizon: int) -> np.ndarray:
        """[N, horizon, Q] raw space; fused in raw space so alpha = 0 is the backbone bit for bit."""
        _check_horizon(horizon, self.horizon)
        q_base, q_mem = self.components(contexts)
        return fuse(q_base, q_mem, self.alpha)[:, :horizon]

    def save(self, directory: str | Path) -> Path:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        save_backbone(self.backbone, directory / "backbone")
        self.adapter.save(directory / "adapter")
        meta = {"alpha": self.alpha, "context_length": self.context_length, "horizon": self.horizon}
        (directory / "fused.json").write_text(json.dumps(meta, indent=2))
        return directory

    @classmethod
    def load(cls, directory: str | Path, device: str = "cpu") -> FusedForecaster:
        directory = Path(directory)
        meta = json.loads((directory / "fused.json").read_text())
        backbone = load_backbone(directory / "backbone")
        return cls(backbone, MemoryAdapter.load(directory / "adapter"), device=device, **meta)


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

    def predict(self, contexts: list[np.ndarray], horizon: int) -> np.ndarray:
        """[N, horizon, Q] raw space from retrieval (no self-exclusion: queries are not in the store)."""
        _check_horizon(horizon, self.horizon)
        base = batch_forecast(
            self.backbone, contexts, self.horizon, self.context_length, batch_size=self.batch_size, device=self.device
        )
        out = self.teacher.query(base["embedding"], left_pad(contexts, self.context_length))
        return out.quantiles[:, :horizon]

    def save(self, directory: str | Path) -> Path:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        save_backbone(self.backbone, directory / "backbone")
        self.teacher.save(directory / "teacher")
        meta = {"context_length": self.context_length, "horizon": self.horizon}
        (directory / "teacher_forecaster.json").write_text(json.dumps(meta, indent=2))
        return directory

    @classmethod
    def load(cls, directory: str | Path, device: str = "cpu") -> TeacherForecaster:
        directory = Path(directory)
        meta = json.loads((directory / "teacher_forecaster.json").read_text())
        return cls(load_backbone(directory / "backbone"), KnnTeacher.load(directory / "teacher"), device=device, **meta)


@torch.no_grad()
def adapter_forecast(
    adapter: MemoryAdapter,
    embedding: np.ndarray,  # [N, d_model]
    base_norm: np.ndarray,  # [N, H, Q]
    batch_size: int = 256,
) -> np.ndarray:  # [N, H, Q] normalised space
    adapter.eval()
    device = next(adapter.parameters()).device
    out = []
    for s in range(0, len(embedding), batch_size):
        e = torch.as_tensor(np.asarray(embedding[s : s + batch_size], dtype=np.float32), device=device)
        b = torch.as_tensor(np.asarray(base_norm[s : s + batch_size], dtype=np.float32), device=device)
        out.append(adapter(e, b).cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, *base_norm.shape[1:]), np.float32)
