"""Lightning module for pre-training: contiguous future masking + pinball loss in asinh space."""
from __future__ import annotations

import math

import lightning as L
import torch
from torch import Tensor

from models.backbone.config import BackboneConfig
from models.backbone.network import PatchBackbone
from models.backbone.scaler import normalise
from models.metrics import pinball_loss
from models.pretraining.optim import build_optimizer, lr_factor, param_groups


class PretrainModule(L.LightningModule):
    def __init__(
        self,
        config: dict,
        future_length: int,
        lr: float = 3e-3,
        weight_decay: float = 0.01,
        warmup_steps: int = 100,
        max_steps: int = 1000,
        schedule: str = "wsd",
        min_lr_ratio: float = 0.1,
        optimizer: str = "adamw",
        grad_clip: float | None = 1.0,
    ):
        """``lr`` is the peak LR actually used (already scaled for the global batch)."""
        super().__init__()
        # kept out of the logger: the caller's MLflow run already holds its own params
        self.save_hyperparameters(logger=False)
        self.model = PatchBackbone(BackboneConfig.from_dict(config))
        p = self.model.config.patch_size
        self.n_future = math.ceil(future_length / p)  # masked patches at the end of each window
        self.tokens_seen = 0  # patches through the model, all ranks together
        # recorded before any wrapper (FSDP flattens shards to 1-D): no decay / no trust ratio
        self.plain_param_names = {n for n, q in self.named_parameters() if q.ndim <= 1}

    def masked_loss(self, batch: dict[str, Tensor]) -> tuple[Tensor, int]:
        """``batch``: values and observed ``[batch, variate, window]`` (``data.Item``s collated)
        -> (pinball loss over the masked future, patches through the model on this rank)."""
        values, observed = batch["values"], batch["observed"]
        p = self.model.config.patch_size
        future = self.n_future * p
        ctx_observed = observed.clone()
        ctx_observed[..., -future:] = False  # contiguous masking: the future is hidden
        out = self.model(torch.where(ctx_observed, values, 0.0), ctx_observed)
        # targets in the same asinh space, with the statistics the model saw (context only)
        target = normalise(values, out.loc, out.scale, p)[..., -future:]  # [B, V, future]
        B, V, _ = values.shape
        pred = out.knots[:, :, -self.n_future:].reshape(B, V, future, -1)  # [B, V, future, Q]
        loss = pinball_loss(pred, target, mask=observed[..., -future:])
        return loss, out.knots.shape[0] * out.knots.shape[1] * out.knots.shape[2]

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        loss, tokens = self.masked_loss(batch)
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
        groups = param_groups(self.named_parameters(), hp.weight_decay, self.plain_param_names)
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

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["tokens_seen"] = self.tokens_seen

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        self.tokens_seen = checkpoint.get("tokens_seen", 0)
