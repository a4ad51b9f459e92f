"""Full fine-tuning of the backbone on one domain: the alternative TS-Memory avoids.

Every parameter of a deep copy of the backbone is trained (the backbone passed in is
never touched) with the objective it was pre-trained on (``models.pretraining.module``):
the window's context followed by masked future patches (value 0, observed False),
pinball loss over the 9 quantile knots in the causal scaler's asinh space, on the
future steps only. The horizon is decoded by ``models.backbone.decode.decode_horizon``,
as ``PatchBackbone.forecast`` decodes it, so lowering this loss lowers the loss of what
``forecast()`` returns. NaN targets
(missing values, or futures NaN-padded on the right because a series' own horizon is
shorter) count as "no target": they add nothing to the loss or the gradient.

Validation and early stopping: step 0 (the untouched backbone) is scored first, then
every ``eval_every`` steps and at the last step; the best-scoring weights are restored,
so fine-tuning that never beats the backbone on validation returns its exact weights.
The score is chosen by ``FinetuneConfig.val_metric``:
  - ``"sCRPS"`` (default): pooled scaled CRPS (``models.metrics.scaled_crps_pooled``) of
    the raw-space quantiles that ``forecast()`` returns, the metric the fusion weight is
    chosen on;
  - ``"pinball"``: the training objective itself (pinball of the knots in each
    series' asinh-normalised space, pooled over known targets), scale-free.
Both are computed (one forward pass) and recorded in the history either way.

Pure PyTorch: no tracking or I/O (``models/`` imports no MLOps libraries).
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from jaxtyping import Float
from torch import Tensor

from models.backbone.decode import decode_horizon, knots_to_quantiles, normalised_target
from models.backbone.network import PatchBackbone
from models.forecasting.inputs import left_pad
from models.memory.config import FinetuneConfig
from models.metrics import pinball, pinball_loss, scaled_crps_pooled
from models.pretraining.optim import build_optimizer, lr_factor, param_groups


def finetune_loss(
    backbone: PatchBackbone, context: Float[Tensor, "batch context"], future: Float[Tensor, "batch horizon"]
) -> Float[Tensor, ""]:
    """Pre-training's masked pinball loss on the horizon of these windows: the 9 knots in
    asinh space, averaged over known future steps (NaN = no target; 0 when none is known)."""
    out = decode_horizon(backbone, context, future.shape[1])
    known = ~torch.isnan(future)
    target = torch.nan_to_num(normalised_target(future, out.loc, out.scale), nan=0.0)  # no NaN in the graph
    return pinball_loss(out.knots, target, mask=known)


@torch.inference_mode()
def validation_scores(
    backbone: PatchBackbone,
    contexts: Float[np.ndarray, "n context"],  # NaN-left-padded
    truth: Float[np.ndarray, "n horizon"],  # raw, NaN = no target
    batch_size: int = 256,
) -> dict[str, float]:
    """{"sCRPS": pooled scaled CRPS of forecast()'s quantiles, "pinball": the training
    objective pooled over known targets}; NaN when no target is known (or all are 0, sCRPS)."""
    was_training = backbone.training
    backbone.eval()
    device = next(backbone.parameters()).device
    quantiles, pin_sum, n_known = [], 0.0, 0
    try:
        for s in range(0, len(contexts), batch_size):
            ctx = torch.as_tensor(contexts[s : s + batch_size], device=device)
            y = torch.as_tensor(truth[s : s + batch_size], device=device)
            known = ~torch.isnan(y)
            out = decode_horizon(backbone, ctx, y.shape[1])
            quantiles.append(knots_to_quantiles(out.knots, out.loc, out.scale)[0].float().cpu().numpy())
            target = torch.nan_to_num(normalised_target(y, out.loc, out.scale), nan=0.0)
            pin_sum += float(pinball(out.knots.double(), target.double())[known].sum())
            n_known += int(known.sum())
    finally:
        backbone.train(was_training)
    if n_known == 0:
        return {"sCRPS": float("nan"), "pinball": float("nan")}
    return {"sCRPS": scaled_crps_pooled(truth, np.concatenate(quantiles)), "pinball": pin_sum / n_known}


# ---------------------------------------------------------------------------------------
# Training


def pad_futures(futures: np.ndarray, horizon: int) -> np.ndarray:
    """[N, h <= horizon] -> [N, horizon] float32, NaN-padded on the right."""
    futures = np.asarray(futures, dtype=np.float32)
    if futures.ndim != 2:
        raise ValueError(f"futures must be [N, H], got shape {futures.shape}")
    if futures.shape[1] > horizon:
        raise ValueError(f"futures have {futures.shape[1]} steps, more than horizon {horizon}")
    out = np.full((futures.shape[0], horizon), np.nan, dtype=np.float32)
    out[:, : futures.shape[1]] = futures
    return out


def finetune_backbone(
    backbone: PatchBackbone,
    train_windows: Any,
    val_contexts: list[np.ndarray],
    val_truth: np.ndarray,
    horizon: int,
    context_length: int,
    config: FinetuneConfig,
    device: str | torch.device = "cpu",
    log_fn: Callable[[dict[str, Any]], None] | None = None,
) -> tuple[PatchBackbone, list[dict[str, Any]]]:
    """Fine-tune all parameters of a copy of ``backbone`` on one domain's windows.

    train_windows: ``models.memory.windows.Windows`` (or any object with ``.context`` [N, C']
        and ``.future`` [N, h]) or a ``(contexts, futures)`` pair of such arrays; contexts
        NaN-left-padded, futures NaN = no target (NaN-padded on the right when h < horizon).
        Each context is cut/padded to its last ``context_length`` points, as at inference.
        Train windows only: validation and test targets must not be among them.
    val_contexts: per series, the history before its validation targets (any length).
    val_truth: [V, horizon] raw validation targets, NaN = no target.

    Returns (the fine-tuned copy in eval mode on ``device`` holding the best validation
    weights, history). History rows, one per validation, step 0 = the untouched backbone:
    {"step", "lr", "train_loss" (mean over the steps since the previous row; None at
    step 0), "val_sCRPS", "val_pinball", "val_score" (the one selected on), "seconds"
    (training time so far), "best" (exactly one row is True)}. ``log_fn`` gets each row
    as it is made (its "best" is then provisional: the best so far).
    """
    cfg = config
    train_ctx, train_fut, val_ctx, val_y = _arrays(train_windows, val_contexts, val_truth, horizon, context_length)
    device = torch.device(device)
    model = copy.deepcopy(backbone).to(device)
    for p in model.parameters():
        p.requires_grad_(True)
    train_ctx_t = torch.from_numpy(train_ctx).to(device)
    train_fut_t = torch.from_numpy(train_fut).to(device)
    best = _BestOnValidation(val_ctx, val_y, cfg, log_fn)

    fork_devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=fork_devices):  # dropout seeded, caller's RNG untouched
        torch.manual_seed(cfg.seed)
        gen = torch.Generator().manual_seed(cfg.seed)  # batch order (CPU generator, any device)
        best.record(model, 0, 0.0, [], 0.0)
        optimizer = build_optimizer("adamw", param_groups(model.named_parameters(), cfg.weight_decay), cfg.lr)
        n = len(train_ctx_t)
        perm, pos = torch.randperm(n, generator=gen), 0
        losses: list[float] = []
        stale, seconds = 0, 0.0
        for step in range(cfg.max_steps):
            started = time.perf_counter()
            lr = cfg.lr * lr_factor(step, cfg.warmup_steps, cfg.max_steps, cfg.schedule, cfg.min_lr_ratio)
            # epochs of reshuffled windows; a batch never repeats a window
            if pos + min(cfg.batch_size, n) > n:
                perm, pos = torch.randperm(n, generator=gen), 0
            idx = perm[pos : pos + cfg.batch_size].to(device)
            pos += len(idx)
            losses.append(_train_step(model, optimizer, lr, train_ctx_t[idx], train_fut_t[idx], cfg.grad_clip))
            seconds += time.perf_counter() - started
            done = step + 1
            if done % cfg.eval_every == 0 or done == cfg.max_steps:
                improved = best.record(model, done, lr, losses, seconds)
                losses = []
                stale = 0 if improved else stale + 1
                if stale >= cfg.patience:
                    break

    best.restore(model)
    for p_new, p_old in zip(model.parameters(), backbone.parameters()):
        p_new.requires_grad_(p_old.requires_grad)
    return model.eval(), best.history


def _arrays(
    train_windows: Any, val_contexts: Any, val_truth: Any, horizon: int, context_length: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(train contexts [N, C], train futures [N, H], validation contexts [V, C], validation truth
    [V, H]) as the model sees them; windows with nothing to learn from are dropped."""
    if context_length < 1 or horizon < 1:
        raise ValueError(f"context_length and horizon must be >= 1, got {context_length} and {horizon}")
    if isinstance(train_windows, tuple):
        contexts, futures = train_windows
    else:
        contexts, futures = train_windows.context, train_windows.future
    if len(contexts) != len(futures):
        raise ValueError(f"{len(contexts)} train contexts but {len(futures)} futures")
    train_ctx = left_pad(contexts, context_length)
    train_fut = pad_futures(futures, horizon)
    usable = np.isfinite(train_fut).any(axis=1) & ~np.isnan(train_ctx).all(axis=1)
    train_ctx, train_fut = train_ctx[usable], train_fut[usable]
    if len(train_ctx) == 0:
        raise ValueError("no training window with a known future target and an observed context")
    val_ctx = left_pad(val_contexts, context_length)
    val_truth = np.asarray(val_truth, dtype=np.float32)
    if val_truth.ndim != 2 or len(val_truth) != len(val_ctx):
        raise ValueError(
            f"val_truth must be [{len(val_ctx)}, H] (one row per validation context), got shape {val_truth.shape}"
        )
    val_y = pad_futures(val_truth, horizon)
    if not np.isfinite(val_y).any():
        raise ValueError("validation has no known target: nothing to early-stop on")
    return train_ctx, train_fut, val_ctx, val_y


def _train_step(
    model: PatchBackbone,
    optimizer: torch.optim.Optimizer,
    lr: float,
    context: Tensor,
    future: Tensor,
    grad_clip: float | None,
) -> float:
    """One optimizer step at ``lr``; a non-finite batch loss is skipped, not stepped on."""
    model.train()
    for g in optimizer.param_groups:
        g["lr"] = lr
    loss = finetune_loss(model, context, future)
    optimizer.zero_grad(set_to_none=True)
    if torch.isfinite(loss):
        loss.backward()
        if grad_clip:
            torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
        optimizer.step()
    return float(loss.detach())


class _BestOnValidation:
    """Validation scores after each stretch of training, and the weights of the best one
    (strictly better wins: ties keep the earlier weights, so step 0 = the untouched backbone)."""

    def __init__(
        self,
        val_ctx: np.ndarray,
        val_y: np.ndarray,
        cfg: FinetuneConfig,
        log_fn: Callable[[dict[str, Any]], None] | None,
    ):
        self.val_ctx, self.val_y, self.cfg, self.log_fn = val_ctx, val_y, cfg, log_fn
        self.history: list[dict[str, Any]] = []
        self.best_step, self.best_score = 0, math.inf
        self.best_state: dict[str, Tensor] = {}

    def record(self, model: PatchBackbone, step: int, lr: float, losses: list[float], seconds: float) -> bool:
        """Score ``model`` now; True when it is the best so far."""
        scores = validation_scores(model, self.val_ctx, self.val_y, self.cfg.eval_batch_size)
        row: dict[str, Any] = {
            "step": step,
            "lr": lr,
            "train_loss": float(np.mean(losses)) if losses else None,
            "val_sCRPS": scores["sCRPS"],
            "val_pinball": scores["pinball"],
            "val_score": scores[self.cfg.val_metric],
            "seconds": seconds,
            "best": False,
        }
        score = row["val_score"] if math.isfinite(row["val_score"]) else math.inf
        if step == 0 or score < self.best_score:
            self.best_step, self.best_score = step, score
            self.best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        row["best"] = step == self.best_step
        self.history.append(row)
        if self.log_fn is not None:
            self.log_fn(dict(row))
        return row["best"]

    def restore(self, model: PatchBackbone) -> None:
        model.load_state_dict(self.best_state)
        for row in self.history:
            row["best"] = row["step"] == self.best_step
