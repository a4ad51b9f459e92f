"""Full fine-tuning of the backbone on one domain: the alternative TS-Memory avoids.

Every parameter of a deep copy of the backbone is trained (the backbone passed in is
never touched) with the objective it was pre-trained on (``models.pretrain_module``):
the window's context followed by masked future patches (value 0, observed False),
pinball loss over the 9 quantile knots in the causal scaler's asinh space, on the
future steps only. The input is built exactly as ``PatchBackbone.forecast`` builds it
(context left-padded to whole patches, the most recent patches that fit, then
``ceil(horizon / patch)`` masked patches, one pass, the first ``horizon`` steps read),
so lowering this loss lowers the loss of what ``forecast()`` returns. NaN targets
(missing values, or futures NaN-padded on the right because a series' own horizon is
shorter) count as "no target": they add nothing to the loss or the gradient.

Validation and early stopping: step 0 (the untouched backbone) is scored first, then
every ``eval_every`` steps and at the last step; the best-scoring weights are restored,
so fine-tuning that never beats the backbone on validation returns its exact weights.
The score is chosen by ``FinetuneConfig.val_metric``:
  - ``"sCRPS"`` (default): pooled scaled CRPS of the raw-space quantiles that
    ``forecast()`` returns (mean over known targets of 2 * pinball over mean |y|,
    as ``models.fused.scaled_crps`` and GIFT-Eval), the metric the domain
    comparison reports and the fusion weight is chosen on;
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
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from models.backbone import KNOT_LIMIT, PatchBackbone, forecast_inputs
from models.optim import build_optimizer, param_groups
from models.quantiles import QUANTILES, pinball_loss
from models.windows import left_pad

VAL_METRICS = ("sCRPS", "pinball")
SCHEDULES = ("cosine", "constant")


@dataclass(frozen=True)
class FinetuneConfig:
    max_steps: int = 300
    batch_size: int = 64
    lr: float = 1e-4  # peak learning rate (AdamW, betas (0.9, 0.95) as in pre-training)
    weight_decay: float = 0.01  # on matrices only; norm gains and biases get none
    warmup_steps: int = 20  # linear warm-up from lr / warmup_steps to lr
    schedule: str = "cosine"  # after warm-up: "cosine" down to min_lr_ratio * lr, or "constant"
    min_lr_ratio: float = 0.1
    eval_every: int = 50  # optimizer steps between validation scores (and the last step)
    patience: int = 3  # validations in a row without improvement before stopping
    seed: int = 0  # batch order and dropout; the caller's global RNG is left as it was
    grad_clip: float | None = 1.0  # global gradient norm; None or 0 = no clipping
    val_metric: str = "sCRPS"  # "sCRPS" or "pinball" (see the module docstring)
    eval_batch_size: int = 256

    def __post_init__(self) -> None:
        if self.max_steps < 0:
            raise ValueError(f"max_steps must be >= 0, got {self.max_steps}")
        if self.batch_size < 1 or self.eval_batch_size < 1:
            raise ValueError("batch sizes must be >= 1")
        if self.eval_every < 1 or self.patience < 1:
            raise ValueError("eval_every and patience must be >= 1")
        if self.warmup_steps < 0 or self.lr < 0:
            raise ValueError("warmup_steps and lr must be >= 0")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"unknown schedule {self.schedule!r}; valid: {', '.join(SCHEDULES)}")
        if self.val_metric not in VAL_METRICS:
            raise ValueError(f"unknown val_metric {self.val_metric!r}; valid: {', '.join(VAL_METRICS)}")


def lr_factor(step: int, config: FinetuneConfig) -> float:
    """Multiplier of the peak LR at optimizer step ``step`` (0-based)."""
    if step < config.warmup_steps:
        return (step + 1) / config.warmup_steps
    if config.schedule == "constant":
        return 1.0
    progress = min((step - config.warmup_steps) / max(1, config.max_steps - config.warmup_steps), 1.0)
    return config.min_lr_ratio + (1 - config.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


# ---------------------------------------------------------------------------------------
# The horizon as forecast() decodes it, with gradients


def horizon_knots(backbone: PatchBackbone, context: Tensor, horizon: int) -> tuple[Tensor, Tensor, Tensor]:
    """context [B, T] (NaN = missing) -> (knots [B, H, Q] asinh space, unsorted; loc [B];
    scale [B]). Gradients follow the caller's mode."""
    c = backbone.config
    values, observed, n_ctx, n_future = forecast_inputs(c, context, horizon)
    out = backbone(values, observed)
    B = context.shape[0]
    knots = out.knots[:, 0, n_ctx:].reshape(B, n_future * c.patch_size, c.n_quantiles)[:, :horizon]
    # the masked future patches carry the statistics of the last context step
    return knots, out.loc[:, 0, n_ctx - 1], out.scale[:, 0, n_ctx - 1]


def knots_to_quantiles(knots: Tensor, loc: Tensor, scale: Tensor) -> tuple[Tensor, Tensor]:
    """-> (quantiles, norm_quantiles) [B, H, Q] exactly as ``forecast()`` post-processes."""
    norm_q = torch.sinh(knots.clamp(-KNOT_LIMIT, KNOT_LIMIT)).sort(dim=-1).values
    return norm_q * scale[:, None, None] + loc[:, None, None], norm_q


def normalised_target(future: Tensor, loc: Tensor, scale: Tensor) -> Tensor:
    """Raw future [B, H] -> asinh((y - loc) / scale) [B, H] float32 (float64 inside, as
    ``models.scaler.normalise``); NaN stays NaN."""
    y = (future.to(torch.float64) - loc.to(torch.float64)[:, None]) / scale.to(torch.float64)[:, None]
    return torch.asinh(y).to(torch.float32)


def finetune_loss(backbone: PatchBackbone, context: Tensor, future: Tensor) -> Tensor:
    """Pre-training's masked pinball loss on the horizon of these windows.

    context [B, C] (NaN = missing, left padding included), future [B, H] raw values
    (NaN = no target) -> scalar: pinball over the 9 knots in asinh space, averaged over
    known future steps of the batch (0 when none is known)."""
    horizon = future.shape[1]
    knots, loc, scale = horizon_knots(backbone, context, horizon)
    known = ~torch.isnan(future)
    target = torch.nan_to_num(normalised_target(future, loc, scale), nan=0.0)  # no NaN in the graph
    return pinball_loss(knots, target, QUANTILES, mask=known)


@torch.inference_mode()
def validation_scores(
    backbone: PatchBackbone,
    contexts: np.ndarray,  # [V, C] float32, NaN-left-padded
    truth: np.ndarray,  # [V, H] raw, NaN = no target
    batch_size: int = 256,
) -> dict[str, float]:
    """{"sCRPS": pooled scaled CRPS of forecast()'s quantiles, "pinball": the training
    objective pooled over known targets}; NaN when no target is known (or all are 0, sCRPS)."""
    was_training = backbone.training
    backbone.eval()
    device = next(backbone.parameters()).device
    levels = torch.tensor(QUANTILES, dtype=torch.float64, device=device)
    crps_num = abs_sum = pin_sum = 0.0
    n_known = 0
    try:
        for s in range(0, len(contexts), batch_size):
            ctx = torch.as_tensor(contexts[s : s + batch_size], device=device)
            y = torch.as_tensor(truth[s : s + batch_size], device=device)
            known = ~torch.isnan(y)
            knots, loc, scale = horizon_knots(backbone, ctx, y.shape[1])
            quantiles, _ = knots_to_quantiles(knots, loc, scale)
            y0 = torch.where(known, y, 0.0).to(torch.float64)
            diff = y0[..., None] - quantiles.to(torch.float64)
            crps = 2.0 * torch.maximum(levels * diff, (levels - 1.0) * diff).mean(-1)  # [b, H]
            crps_num += float(crps[known].sum())
            abs_sum += float(y0.abs()[known].sum())
            target = torch.nan_to_num(normalised_target(y, loc, scale), nan=0.0).to(torch.float64)
            d = target[..., None] - knots.to(torch.float64)
            pin = torch.maximum(levels * d, (levels - 1.0) * d).mean(-1)
            pin_sum += float(pin[known].sum())
            n_known += int(known.sum())
    finally:
        backbone.train(was_training)
    if n_known == 0:
        return {"sCRPS": float("nan"), "pinball": float("nan")}
    return {"sCRPS": crps_num / abs_sum if abs_sum > 0 else float("nan"), "pinball": pin_sum / n_known}


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
    train_windows,
    val_contexts: list[np.ndarray],
    val_truth: np.ndarray,
    horizon: int,
    context_length: int,
    config: FinetuneConfig = FinetuneConfig(),
    device: str | torch.device = "cpu",
    log_fn: Callable[[dict], None] | None = None,
) -> tuple[PatchBackbone, list[dict]]:
    """Fine-tune all parameters of a copy of ``backbone`` on one domain's windows.

    train_windows: ``models.windows.Windows`` (or any object with ``.context`` [N, C']
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
        raise ValueError(f"val_truth must be [{len(val_ctx)}, H] (one row per validation context), "
                         f"got shape {val_truth.shape}")
    val_y = pad_futures(val_truth, horizon)
    if not np.isfinite(val_y).any():
        raise ValueError("validation has no known target: nothing to early-stop on")

    device = torch.device(device)
    model = copy.deepcopy(backbone).to(device)
    for p in model.parameters():
        p.requires_grad_(True)
    train_ctx_t = torch.from_numpy(train_ctx).to(device)
    train_fut_t = torch.from_numpy(train_fut).to(device)

    history: list[dict] = []
    best_step = 0
    best_score = math.inf

    def record(step: int, lr: float, losses: list[float], seconds: float) -> None:
        nonlocal best_step, best_score, best_state
        scores = validation_scores(model, val_ctx, val_y, cfg.eval_batch_size)
        row = {
            "step": step,
            "lr": lr,
            "train_loss": float(np.mean(losses)) if losses else None,
            "val_sCRPS": scores["sCRPS"],
            "val_pinball": scores["pinball"],
            "val_score": scores[cfg.val_metric],
            "seconds": seconds,
            "best": False,
        }
        score = row["val_score"] if math.isfinite(row["val_score"]) else math.inf
        if step == 0 or score < best_score:  # strictly better: ties keep the earlier weights
            best_step, best_score = step, score
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        row["best"] = step == best_step
        history.append(row)
        if log_fn is not None:
            log_fn(dict(row))

    best_state: dict[str, Tensor] = {}
    fork_devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=fork_devices):  # dropout seeded, caller's RNG untouched
        torch.manual_seed(cfg.seed)
        gen = torch.Generator().manual_seed(cfg.seed)  # batch order (CPU generator, any device)
        record(0, 0.0, [], 0.0)
        groups = param_groups(model.named_parameters(), cfg.weight_decay)
        optimizer = build_optimizer("adamw", groups, cfg.lr)
        n = len(train_ctx_t)
        perm, pos = torch.randperm(n, generator=gen), 0
        losses: list[float] = []
        stale, seconds = 0, 0.0
        for step in range(cfg.max_steps):
            started = time.perf_counter()
            model.train()
            lr = cfg.lr * lr_factor(step, cfg)
            for g in optimizer.param_groups:
                g["lr"] = lr
            # epochs of reshuffled windows; a batch never repeats a window
            if pos + min(cfg.batch_size, n) > n:
                perm, pos = torch.randperm(n, generator=gen), 0
            idx = perm[pos : pos + cfg.batch_size].to(device)
            pos += len(idx)
            loss = finetune_loss(model, train_ctx_t[idx], train_fut_t[idx])
            optimizer.zero_grad(set_to_none=True)
            if torch.isfinite(loss):  # a non-finite batch loss is skipped, not stepped on
                loss.backward()
                if cfg.grad_clip:
                    torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
                optimizer.step()
            losses.append(float(loss.detach()))
            seconds += time.perf_counter() - started
            done = step + 1
            if done % cfg.eval_every == 0 or done == cfg.max_steps:
                record(done, lr, losses, seconds)
                losses = []
                stale = 0 if history[-1]["best"] else stale + 1
                if stale >= cfg.patience:
                    break

    model.load_state_dict(best_state)
    for row in history:
        row["best"] = row["step"] == best_step
    for p_new, p_old in zip(model.parameters(), backbone.parameters()):
        p_new.requires_grad_(p_old.requires_grad)
    return model.eval(), history
