"""Training callbacks and checkpoint I/O of the pre-training run."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.plugins import TorchCheckpointIO
from torch import Tensor


class AtomicCheckpointIO(TorchCheckpointIO):
    """Writes next to the target, then renames: a run killed mid-save leaves the old last.ckpt."""

    def save_checkpoint(self, checkpoint, path, storage_options=None) -> None:
        path = Path(path)
        tmp = path.with_name(path.name + ".tmp")
        super().save_checkpoint(checkpoint, tmp, storage_options)
        os.replace(tmp, path)


class ProgressPrinter(L.Callback):
    """One stdout line per ~10% of the steps (rank zero) and the mean train loss over the
    first and last ~10% of the steps (less noisy than single steps)."""

    def __init__(self, max_steps: int):
        self.max_steps = max_steps
        self.every = max(1, max_steps // 10)
        self.window = max(1, min(50, max_steps // 10))
        self.first: list[float] = []
        self.last: list[float] = []
        self.started = self.ended = 0.0
        self.start_tokens = 0
        self.step = 0
        self.pending: list[Tensor] = []

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.started = time.time()
        self.start_tokens = pl_module.tokens_seen  # restored on resume
        self.step = trainer.global_step
        self.pending = []

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.ended = time.time()

    def tokens_per_second(self, tokens_seen: int) -> float | None:
        """Patches per second (all ranks) over this process's training, from fit start to end."""
        seconds = self.ended - self.started
        return round((tokens_seen - self.start_tokens) / seconds, 1) if seconds > 0 else None

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        # Lightning hands back loss / accumulate_grad_batches: the micro-batches' sum is the step's mean
        self.pending.append(outputs["loss"].detach())
        if trainer.global_step == self.step:
            return  # gradient accumulation: the optimizer step has not happened yet
        self.step = step = trainer.global_step
        pending, self.pending = self.pending, []
        if not trainer.is_global_zero:
            return
        printing = step % self.every == 0 or step == self.max_steps
        # .item() syncs with the device: only for the steps we keep or print
        if step <= self.window or step > self.max_steps - self.window or printing:
            loss = float(torch.stack(pending).float().sum().item())
            if step <= self.window:
                self.first.append(loss)
            if step > self.max_steps - self.window:
                self.last.append(loss)
            if printing:
                lr = trainer.optimizers[0].param_groups[0]["lr"]
                elapsed = time.time() - self.started
                print(
                    f"step {step}/{self.max_steps} ({100 * step // self.max_steps}%) train_loss {loss:.4f} "
                    f"lr {lr:.2e} tokens {pl_module.tokens_seen} elapsed {elapsed:.1f}s",
                    flush=True,
                )

    def state_dict(self) -> dict[str, Any]:
        # saved in checkpoints, so a resumed run reports the same initial/final losses
        return {"first": list(self.first), "last": list(self.last)}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.first = list(state_dict.get("first", []))
        self.last = list(state_dict.get("last", []))

    def initial_loss(self) -> float | None:
        return sum(self.first) / len(self.first) if self.first else None

    def final_loss(self) -> float | None:
        return sum(self.last) / len(self.last) if self.last else None


class BackboneSnapshots(L.Callback):
    """Every ``every`` optimizer steps, the backbone's weights alone to OUT/snapshots/step-<N>/
    (rank zero; with ``tokens.json``): the points of a learning curve, scored after the run.
    Not under FSDP (the weights are sharded; use the checkpoints)."""

    def __init__(self, out: Path, every: int):
        self.out, self.every = Path(out), every

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        step = trainer.global_step
        if step == 0 or step % self.every or not trainer.is_global_zero:
            return
        folder = self.out / f"step-{step:07d}"
        if folder.is_dir():  # accumulation: one batch end per micro-batch of the same step
            return
        from models.backbone.io import save_backbone

        tmp = folder.with_name(folder.name + ".tmp")
        save_backbone(pl_module.model, tmp)
        (tmp / "tokens.json").write_text(f'{{"step": {step}, "tokens_seen": {int(pl_module.tokens_seen)}}}')
        os.replace(tmp, folder)
