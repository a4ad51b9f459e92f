"""Run modules for inference without paying for mode and device switches on every call."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch


def _on_device(module: torch.nn.Module, device: torch.device) -> bool:
    p = next(module.parameters(), None)
    return p is None or (p.device.type == device.type and device.index in (None, p.device.index))


@contextmanager
def serving_mode(modules: tuple[torch.nn.Module, ...], device: torch.device) -> Iterator[None]:
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


def check_horizon(horizon: int, trained: int) -> None:
    if not 1 <= horizon <= trained:
        raise ValueError(f"horizon {horizon} is outside what this model was trained for (1..{trained})")
