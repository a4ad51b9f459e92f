"""Lightning module for pre-training: contiguous future masking + pinball loss in asinh space."""

from __future__ import annotations

import math
from typing import Any

import lightning as L
import torch
from jaxtyping import Bool
from torch import Tensor

from models.backbone.config import BackboneConfig
from models.backbone.network import PatchBackbone
from models.backbone.scaler import normalise
from models.metrics import pinball_loss
from models.pretraining.optim import build_optimizer, lr_factor, param_groups


class PretrainModule(L.LightningModule):
    def __init__(
        self,
        config: dict[str, Any],
        future_length: int,
        lr: float = 3e-3,
        weight_decay: float = 0.01,
        warmup_steps: int = 100,
        max_steps: int = 1000,
        schedule: str = "wsd",
        min_lr_ratio: float = 0.1,
        optimizer: str = "adamw",
        grad_clip: float | None = 1.0,
        mask_origins: int = 1,
        random_context: bool = False,
        min_context_length: int | None = None,
        seed: int = 0,
    ):
        """``lr`` is the peak LR actually used (already scaled for the global batch).

        ``mask_origins`` > 1: besides the masked run at the end, each training window hides
        ``mask_origins - 1`` more runs of 1..n_future patches at random places, so one pass
        trains that many forecast origins (context after a run sees it as missing).
        ``random_context``: each training window keeps a log-uniform random share of its
        context (one patch to all of it), so short histories are as common as in use.
        ``min_context_length``: each training step first crops its windows to a context drawn
        log-uniform between this and the whole window, and keeps fewer windows the longer it is
        (batch x (min + future) / (drawn + future)), so a step costs about the same at 256 or
        2,048 steps of context and long contexts are trained without making every step long.
        Validation keeps the plain end run on the whole context, comparable across recipes."""
        super().__init__()
        # kept out of the logger: the caller's MLflow run already holds its own params
        self.save_hyperparameters(logger=False)
        self.model = PatchBackbone(BackboneConfig.from_dict(config))
        p = self.model.config.patch_size
        self.n_future = math.ceil(future_length / p)  # masked patches at the end of each window
        self.tokens_seen = 0  # patches through the model, all ranks together
        # recorded before any wrapper (FSDP flattens shards to 1-D): no decay / no trust ratio
        self.plain_param_names = {n for n, q in self.named_parameters() if q.ndim <= 1}

    def hidden_patches(
        self, shape: tuple[int, int, int], generator: torch.Generator | None
    ) -> tuple[Bool[Tensor, "batch variate patch"], Bool[Tensor, "batch variate patch"]]:
        """-> (target patches: hidden from the model and scored; dropped patches: neither seen
        nor scored). Without ``generator``: the end run alone, nothing dropped."""
        B, V, P = shape
        steps = torch.arange(P)
        target = (steps >= P - self.n_future).expand(B, V, P).clone()
        dropped = torch.zeros(B, V, P, dtype=torch.bool)
        if generator is None:
            return target, dropped
        n_ctx = P - self.n_future
        extra = self.hparams.mask_origins - 1
        if extra > 0 and n_ctx > 1:
            # runs of 1..n_future patches starting after at least one context patch
            length = torch.randint(1, self.n_future + 1, (B, V, extra, 1), generator=generator)
            start = 1 + (torch.rand(B, V, extra, 1, generator=generator) * (n_ctx - 1)).long()
            run = (steps >= start) & (steps < torch.minimum(start + length, torch.tensor(n_ctx)))
            target |= run.any(dim=2)
        if self.hparams.random_context and n_ctx > 1:
            # keep the last k context patches, k log-uniform in [1, n_ctx]
            keep = torch.exp(torch.rand(B, V, 1, generator=generator) * math.log(n_ctx + 1)).floor().clamp(1, n_ctx)
            dropped = steps < (n_ctx - keep)
            target &= ~dropped
        return target, dropped

    def crop(self, values: Tensor, observed: Tensor, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        """A step's windows cut to a random context length at a constant token budget (see
        ``min_context_length``), then stripped of leading patches no window observes."""
        p = self.model.config.patch_size
        B, _, T = values.shape
        future = self.n_future * p
        low = min(math.ceil(self.hparams.min_context_length / p) * p, T - future)
        u = float(torch.rand(1, generator=generator))
        context = min(T - future, math.ceil(low * math.exp(u * math.log((T - future) / low)) / p) * p)
        rows = max(1, round(B * (low + future) / (context + future)))
        values, observed = values[:rows, :, T - context - future :], observed[:rows, :, T - context - future :]
        seen = observed.reshape(rows, -1, values.shape[-1] // p, p).any(dim=(0, 1, 3))
        first = int(seen.to(torch.int8).argmax()) if bool(seen.any()) else 0
        first = min(first, values.shape[-1] // p - self.n_future - 1)
        return values[..., first * p :], observed[..., first * p :]

    def masked_loss(self, batch: dict[str, Tensor], generator: torch.Generator | None = None) -> tuple[Tensor, int]:
        """``batch``: values and observed ``[batch, variate, window]`` (``data.Item``s collated)
        -> (pinball loss over the hidden patches, patches through the model on this rank).
        ``generator``: draws the training-time masking (``hidden_patches``)."""
        values, observed = batch["values"], batch["observed"]
        p = self.model.config.patch_size
        if generator is not None and self.hparams.min_context_length:
            values, observed = self.crop(values, observed, generator)
        B, V, T = values.shape
        target, dropped = (
            m.to(values.device).repeat_interleave(p, dim=-1) for m in self.hidden_patches((B, V, T // p), generator)
        )
        ctx_observed = observed & ~target & ~dropped  # what the model sees
        out = self.model(torch.where(ctx_observed, values, 0.0), ctx_observed)
        # targets in the same asinh space, with the statistics the model saw (context only): a
        # hidden patch carries the statistics of the last step before it
        goal = normalise(values, out.loc, out.scale, p)  # [B, V, T]
        pred = out.knots.reshape(B, V, T, -1)  # [B, V, T, Q]
        loss = pinball_loss(pred, goal, mask=observed & target)
        return loss, out.knots.shape[0] * out.knots.shape[1] * out.knots.shape[2]

    def _generator(self, batch_idx: int) -> torch.Generator | None:
        """The masking draws of one training step: a function of (seed, step, micro-batch), so a
        resumed run masks as an uninterrupted one would."""
        hp = self.hparams
        if hp.mask_origins <= 1 and not hp.random_context and not hp.min_context_length:
            return None
        return torch.Generator().manual_seed(
            (self.hparams.seed * 1_000_003 + self.global_step * 1_009 + batch_idx) % (1 << 62)
        )

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        loss, tokens = self.masked_loss(batch, self._generator(batch_idx))
        self.tokens_seen += tokens * self.trainer.world_size  # equal batches on every rank
        self.log("train_loss", loss, prog_bar=True)
        self.log("tokens_seen", float(self.tokens_seen))
        self.log("lr", self.optimizers().param_groups[0]["lr"])
        return loss

    def validation_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        loss, _ = self.masked_loss(batch)
        self.log("val_loss", loss, sync_dist=True, batch_size=batch["values"].shape[0])

    def configure_optimizers(self):
        hp = self.hparams
        # no weight decay (and for LAMB/LARS no trust ratio) on norms' gains and biases (1-D)
        groups = param_groups(
            self.named_parameters(), hp.weight_decay, self.plain_param_names, split_hidden=hp.optimizer == "muon"
        )
        optimizer = build_optimizer(hp.optimizer, groups, hp.lr)
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer,
            lambda step: lr_factor(step, hp.warmup_steps, hp.max_steps, hp.schedule, hp.min_lr_ratio),
        )
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def configure_gradient_clipping(self, optimizer, gradient_clip_val=None, gradient_clip_algorithm=None) -> None:
        # by global norm; the FSDP root must clip itself (its shards hold parts of each gradient)
        clip = self.hparams.grad_clip
        if not clip:
            return
        root = self.trainer.strategy.model
        if hasattr(root, "clip_grad_norm_"):
            root.clip_grad_norm_(clip)
        else:
            self.clip_gradients(optimizer, gradient_clip_val=clip, gradient_clip_algorithm="norm")

    def training_flops(self, batch_size: int, n_patches: int, n_variates: int = 1) -> int:
        """FLOPs of one training step's forward + backward on batch_size x n_variates series of
        n_patches patches, counted on the meta device (no memory, no compute). The scaler's
        element-wise work is left out (FLOP counters count matmuls and attention only)."""
        from lightning.fabric.utilities.throughput import measure_flops

        c = self.model.config
        with torch.device("meta"):
            model = PatchBackbone(c)
            patches = torch.zeros(batch_size, n_variates, n_patches, 2 * c.patch_size)

        def forward() -> Tensor:
            h = model.embed(patches)
            for block in model.blocks:
                h = block(h, None)
            return model.head(model.norm(h))

        return int(measure_flops(model, forward, loss_fn=torch.Tensor.sum))

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["tokens_seen"] = self.tokens_seen

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.tokens_seen = checkpoint.get("tokens_seen", 0)
