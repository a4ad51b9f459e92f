"""Fusion of backbone and memory-adapter quantiles, and the two servable forecasters.

``FusedForecaster``: one backbone forward + one adapter forward, no search
(the TS-Memory inference path). ``TeacherForecaster``: the kNN teacher queried at
inference (registered as ``teacher-<domain>`` for comparison).
"""
from __future__ import annotations

import json
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch

from models.adapter import MemoryAdapter
from models.backbone import PatchBackbone, load_backbone, save_backbone
from models.quantiles import QUANTILES
from models.teacher import KnnTeacher
from models.windows import left_pad

_LEVELS = np.asarray(QUANTILES, dtype=np.float64)


def fuse(q_base: np.ndarray, q_mem: np.ndarray, alpha: float) -> np.ndarray:
    """q_base + alpha * (q_mem - q_base), sorted along the last (quantile) axis: [..., Q]."""
    return np.sort(q_base + alpha * (q_mem - q_base), axis=-1)


def fuse_torch(q_base: torch.Tensor, q_mem: torch.Tensor, alpha: float) -> torch.Tensor:
    """``fuse`` on tensors (same float32 arithmetic and result; stays on the tensors' device): [..., Q]."""
    return torch.sort(q_base + alpha * (q_mem - q_base), dim=-1).values


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
    """Frozen backbone + memory adapter behind ``predict(contexts, horizon)``.

    One call is one ``torch.inference_mode`` pass per chunk of ``batch_size`` series:
    backbone forward, adapter forward on the backbone's tensors (embedding, normalised
    quantiles), de-normalisation and the alpha mix in torch; numpy only pads the input
    and receives the output, whose 9-wide rows it sorts in place (about twice as fast
    as ``torch.sort`` on a CPU). The extra cost over the backbone is the adapter's
    small MLP per series (``models.adapter.adapter_flops``): no search, no datastore.
    """

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

    def _run(self, contexts: list[np.ndarray], finish: Callable[[torch.Tensor, torch.Tensor], object]) -> list:
        """``finish(q_base, q_mem)`` of each chunk of ``batch_size`` series, where q_base and q_mem
        are the raw-space quantiles [b, H, Q] (torch, on ``device``) at the trained horizon.
        Everything, ``finish`` included, runs in one inference-mode pass with the modules in eval mode."""
        padded = left_pad(contexts, self.context_length)  # [N, C], NaN = missing
        device = torch.device(self.device)
        out = []
        with _serving((self.backbone, self.adapter), device):
            for start in range(0, len(padded), self.batch_size):
                chunk = torch.from_numpy(padded[start : start + self.batch_size]).to(device)
                fc = self.backbone.forecast(chunk, self.horizon)
                q_mem_norm = self.adapter(fc.embedding, fc.norm_quantiles)  # [b, H, Q], sorted
                q_mem = q_mem_norm * fc.scale[:, None, None] + fc.loc[:, None, None]
                out.append(finish(fc.quantiles, q_mem))
        return out

    def components(self, contexts: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """Backbone and adapter quantiles at the trained horizon, raw space: ([N, H, Q], [N, H, Q])."""
        parts = self._run(contexts, lambda q_base, q_mem: (_numpy(q_base), _numpy(q_mem)))
        if not parts:
            return self._empty(self.horizon), self._empty(self.horizon)
        if len(parts) == 1:
            return parts[0]
        return np.concatenate([b for b, _ in parts]), np.concatenate([m for _, m in parts])

    def predict(self, contexts: list[np.ndarray], horizon: int) -> np.ndarray:
        """[N, horizon, Q] raw space; fused in raw space so alpha = 0 is the backbone bit for bit."""
        _check_horizon(horizon, self.horizon)
        alpha = self.alpha

        def finish(q_base: torch.Tensor, q_mem: torch.Tensor) -> np.ndarray:
            q_base, q_mem = q_base[:, :horizon], q_mem[:, :horizon]
            q = _numpy(q_base + alpha * (q_mem - q_base))
            q.sort(axis=-1)  # in place: equals fuse(); see the class docstring for why numpy
            return q

        parts = self._run(contexts, finish)
        if not parts:
            return self._empty(horizon)
        return parts[0] if len(parts) == 1 else np.concatenate(parts)

    def _empty(self, horizon: int) -> np.ndarray:
        return np.zeros((0, horizon, self.adapter.config.n_quantiles), np.float32)

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


def _numpy(x: torch.Tensor) -> np.ndarray:
    return x.float().cpu().numpy()


def _on_device(module: torch.nn.Module, device: torch.device) -> bool:
    p = next(module.parameters(), None)
    return p is None or (p.device.type == device.type and device.index in (None, p.device.index))


@contextmanager
def _serving(modules: tuple[torch.nn.Module, ...], device: torch.device):
    """The block runs in inference mode with ``modules`` on ``device`` and in eval mode; their
    training modes are given back after. A module is moved or switched only when it has to be:
    ``Module.to``/``eval``/``train`` walk every submodule, about 1 ms together per call for the
    4m backbone on a CPU, which at batch 1 is a sizeable part of the forward itself."""
    was_training = [m.training for m in modules]
    try:
        for m in modules:
            if not _on_device(m, device):
                m.to(device)
            if m.training:
                m.eval()
        with torch.inference_mode():
            yield
    finally:
        for m, mode in zip(modules, was_training):
            if m.training != mode:
                m.train(mode)


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
        padded = left_pad(contexts, self.context_length)  # [N, C], NaN = missing
        device = torch.device(self.device)
        keys = [np.zeros((0, self.backbone.config.d_model), np.float32)]
        base = [np.zeros((0, self.horizon, self.backbone.config.n_quantiles), np.float32)]
        with _serving((self.backbone,), device):
            for start in range(0, len(padded), self.batch_size):
                chunk = torch.from_numpy(padded[start : start + self.batch_size]).to(device)
                fc = self.backbone.forecast(chunk, self.horizon)
                keys.append(_numpy(fc.embedding))
                base.append(_numpy(fc.quantiles))
        q = self.teacher.query(np.concatenate(keys), padded).quantiles
        # a step no retrieved future reaches (short-horizon series in the store, or nothing
        # retrievable at all) is answered by the backbone instead of NaN
        missing = np.isnan(q)
        q[missing] = np.concatenate(base)[missing]
        return q[:, :horizon]

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


@torch.inference_mode()
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
