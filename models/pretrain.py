"""Pre-training entry point: ``python -m models.pretrain --data corpus.parquet --out DIR ...``.

Runs alone or under torchrun / Lightning's DDP launcher (Lightning reads torchrun's env).
Rank zero writes OUT/backbone/{config.json,weights.pt}, OUT/metrics.json and
OUT/checkpoints/last.ckpt (every --checkpoint-every steps and at the end). With --resume an
existing last.ckpt is continued: same weights, optimiser, schedule and the very batches an
uninterrupted run would have drawn next. Logs to the caller's MLflow run when given
``--mlflow-tracking-uri`` and ``--mlflow-run-id`` (through Lightning's MLFlowLogger),
else to a CSV log in OUT.

Training system (Jia et al. 2018 in today's terms; see docs in each module):
- precision: bf16-mixed by default on GPU (16-mixed where bf16 is missing; 16-mixed uses
  dynamic loss scaling), 32-true on CPU.
- --optimizer adamw | lamb | lars (models/optim.py): no weight decay and no trust ratio on
  parameters with ndim <= 1.
- --lr is the peak LR at a global batch of --lr-reference-batch windows; the LR used is
  scaled to the actual global batch (per-device batch x processes x --accumulate-grad-batches)
  by --lr-scaling (auto = sqrt for adamw/lamb, linear for lars). metrics.json records both.
- warm-up then warmup-stable-decay (default) or cosine.
- DDP with --ddp-bucket-cap-mb and --ddp-comm-hook (CUDA only), FSDP for the 1b / 2.5b
  presets on several GPUs (models/strategy.py); --activation-checkpointing, --compile,
  --throughput (Lightning's ThroughputMonitor; MFU on known GPUs).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

from models.data_args import add_data_arguments, check_data_args
from models.optim import LR_SCALINGS, OPTIMIZERS, resolve_lr_scaling, scaled_lr
from models.presets import PRESETS, count_parameters, get_preset
from models.strategy import COMM_HOOKS, STRATEGIES, check_strategy, choose_strategy, device_count

PRECISIONS = ("bf16-mixed", "16-mixed", "32-true")


def parse_devices(text: str) -> str | int | list[int]:
    """'auto' | '2' | '-1' | '0,1' -> what Lightning's Trainer takes."""
    text = text.strip()
    if text == "auto":
        return text
    if "," in text:
        return [int(t) for t in text.split(",") if t.strip()]
    return int(text)


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m models.pretrain", description=__doc__.splitlines()[0])
    add_data_arguments(ap)
    ap.add_argument("--preset", default="tiny", help=f"one of {', '.join(PRESETS)}")
    ap.add_argument("--out", required=True, help="output folder")
    ap.add_argument("--max-steps", type=int, default=400)
    ap.add_argument("--batch-size", type=int, default=64, help="per device")
    ap.add_argument("--context-length", type=int, default=128)
    ap.add_argument("--horizon-length", type=int, default=32, help="masked future, rounded up to whole patches")
    ap.add_argument("--lr", type=float, default=3e-3,
                    help="peak learning rate at a global batch of --lr-reference-batch windows")
    ap.add_argument("--lr-reference-batch", type=int, default=64,
                    help="global batch at which --lr applies (default 64: one device at the default batch)")
    ap.add_argument("--lr-scaling", choices=LR_SCALINGS, default="auto",
                    help="LR vs global batch: auto = sqrt for adamw/lamb, linear for lars")
    ap.add_argument("--optimizer", choices=OPTIMIZERS, default="adamw",
                    help="lamb/lars: layer-wise trust ratios for large batches (lars wants a much larger --lr, ~1)")
    ap.add_argument("--weight-decay", type=float, default=0.01, help="on matrices only (never ndim <= 1)")
    ap.add_argument("--warmup-steps", type=int, default=40)
    ap.add_argument("--schedule", choices=["wsd", "cosine"], default="wsd",
                    help="after warm-up: warmup-stable-decay (1-sqrt over the last 20%%) or cosine")
    ap.add_argument("--accumulate-grad-batches", type=int, default=1,
                    help="micro-batches per optimizer step (the global batch grows by this factor)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--accelerator", choices=["auto", "cpu", "gpu"], default="auto")
    ap.add_argument("--devices", default="auto", help="auto, a count, or a list like 0,1")
    ap.add_argument("--strategy", choices=STRATEGIES, default="auto",
                    help="auto: one device as is, several -> ddp, or fsdp for the 1b/2.5b presets on GPUs")
    ap.add_argument("--precision", choices=PRECISIONS, default=None,
                    help="default: bf16-mixed on GPU (16-mixed without bf16 support), 32-true on CPU")
    ap.add_argument("--ddp-bucket-cap-mb", type=float, default=25.0,
                    help="DDP gradient bucket size: small gradients fused into one all-reduce")
    ap.add_argument("--ddp-comm-hook", choices=COMM_HOOKS, default="none",
                    help="DDP gradient compression (CUDA only; warned and ignored on CPU)")
    ap.add_argument("--activation-checkpointing", action="store_true",
                    help="recompute each block's activations in backward (less memory, ~1/3 more compute)")
    ap.add_argument("--compile", action="store_true", help="torch.compile the backbone")
    ap.add_argument("--throughput", action="store_true",
                    help="log samples/s, tokens/s and (on known GPUs) MFU with Lightning's ThroughputMonitor")
    ap.add_argument("--resume", action="store_true",
                    help="continue from OUT/checkpoints/last.ckpt when it exists (else start fresh)")
    ap.add_argument("--checkpoint-every", type=int, default=None,
                    help="steps between checkpoints (default max(1, max_steps // 4))")
    ap.add_argument("--log-every-n-steps", type=int, default=None,
                    help="steps between logged metrics (default max(1, min(50, max_steps // 20)))")
    ap.add_argument("--mlflow-tracking-uri", default=None)
    ap.add_argument("--mlflow-run-id", default=None)
    return ap


def check_args(args: argparse.Namespace) -> str | None:
    """A message for the first bad input, else None (checked before any heavy import)."""
    if args.preset not in PRESETS:
        return f"unknown preset {args.preset!r}; valid presets: {', '.join(PRESETS)}"
    error = check_data_args(args)
    if error:
        return error
    for name in ("max_steps", "batch_size", "context_length", "horizon_length"):
        if getattr(args, name) < 1:
            return f"--{name.replace('_', '-')} must be >= 1"
    for name in ("checkpoint_every", "log_every_n_steps"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            return f"--{name.replace('_', '-')} must be >= 1"
    if args.warmup_steps < 0:
        return "--warmup-steps must be >= 0"
    for name in ("accumulate_grad_batches", "lr_reference_batch"):
        if getattr(args, name) < 1:
            return f"--{name.replace('_', '-')} must be >= 1"
    for name in ("lr", "ddp_bucket_cap_mb"):
        if not getattr(args, name) > 0:
            return f"--{name.replace('_', '-')} must be > 0"
    if args.weight_decay < 0:
        return "--weight-decay must be >= 0"
    if bool(args.mlflow_tracking_uri) != bool(args.mlflow_run_id):
        return "--mlflow-tracking-uri and --mlflow-run-id go together"
    try:
        parse_devices(args.devices)
    except ValueError:
        return f"bad --devices {args.devices!r}: use auto, a count, or a list like 0,1"
    config = get_preset(args.preset)
    p = config.patch_size
    window = math.ceil(args.context_length / p) * p + math.ceil(args.horizon_length / p) * p
    if window > config.max_context:
        return f"context + horizon ({window} after rounding to patches of {p}) exceed max_context {config.max_context}"
    return None


def torchrun_nodes() -> int:
    """Nodes of a torchrun world (WORLD_SIZE / LOCAL_WORLD_SIZE), else 1: Lightning needs
    devices x num_nodes == WORLD_SIZE, or each node would train alone."""
    if "LOCAL_WORLD_SIZE" in os.environ and "WORLD_SIZE" in os.environ and "TORCHELASTIC_RUN_ID" in os.environ:
        return max(1, int(os.environ["WORLD_SIZE"]) // int(os.environ["LOCAL_WORLD_SIZE"]))
    return 1


def resolve_runtime(args: argparse.Namespace) -> tuple[bool, int, str]:
    """-> (on_gpu, devices per node, strategy kind) from the flags and the machine."""
    import torch

    on_gpu = args.accelerator == "gpu" or (args.accelerator == "auto" and torch.cuda.is_available())
    devices = parse_devices(args.devices)
    if devices == "auto" and "LOCAL_WORLD_SIZE" in os.environ:
        devices = int(os.environ["LOCAL_WORLD_SIZE"])
    n_devices = device_count(devices, on_gpu, torch.cuda.device_count() if on_gpu else 0)
    n_devices = max(n_devices, int(os.environ.get("WORLD_SIZE", 1)))  # torchrun across nodes
    return on_gpu, n_devices, choose_strategy(args.strategy, args.preset, on_gpu, n_devices)


def check_runtime(args: argparse.Namespace, on_gpu: bool, kind: str) -> str | None:
    """A message when the flags cannot run on this machine, else None."""
    if args.precision == "16-mixed" and not on_gpu:
        return "--precision 16-mixed (fp16 with loss scaling) needs a GPU; use bf16-mixed or 32-true on CPU"
    return check_strategy(kind, on_gpu, args.optimizer)


def default_precision(on_gpu: bool) -> str:
    import torch

    if not on_gpu:
        return "32-true"
    # fp32 master weights either way; fp16 (with loss scaling) only where bf16 is missing
    return "bf16-mixed" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "16-mixed"


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    error = check_args(args)
    if not error:
        runtime = resolve_runtime(args)
        error = check_runtime(args, runtime[0], runtime[2])
    if error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    # Lightning is imported only now: bad input above fails in ~1 s instead of ~10 s
    from models.pretrain_data import PretrainDataModule

    config = get_preset(args.preset)
    p = config.patch_size
    context_length = math.ceil(args.context_length / p) * p
    future_length = math.ceil(args.horizon_length / p) * p
    try:
        data = PretrainDataModule.from_args(args, context_length, future_length)
    except (ValueError, OSError) as exc:
        print(f"error: bad training data: {exc}", file=sys.stderr)
        return 2
    # a resumed run consumed global_step * accumulate micro-batches per rank: the data side
    # multiplies its start batch by this (PretrainDataModule.train_dataloader)
    data.batches_per_step = args.accumulate_grad_batches
    on_gpu, _, kind = runtime
    return train(args, config, data, future_length, on_gpu, kind)


def batch_size_of(batch: dict) -> int:
    """Windows in a batch (module level: picklable for ddp_spawn)."""
    return int(batch["values"].shape[0])


def tokens_in_batch(batch: dict, patch_size: int) -> int:
    """Patches in a batch: values [B, V, W] -> B * V * W / patch."""
    B, V, W = batch["values"].shape
    return int(B * V * (W // patch_size))


def backbone_weights(state: dict) -> dict:
    """The LightningModule's state dict -> the backbone's (drops 'model.' and wrapper prefixes)."""
    from models.optim import clean_name

    return {clean_name(k)[len("model."):]: v for k, v in state.items() if clean_name(k).startswith("model.")}


def train(args: argparse.Namespace, config, data, future_length: int, on_gpu: bool, kind: str) -> int:
    """``kind``: the strategy from ``resolve_runtime`` (auto, ddp, ddp_spawn or fsdp)."""
    import functools

    import lightning as L
    from lightning.pytorch.callbacks import ModelCheckpoint, ThroughputMonitor
    from lightning.pytorch.loggers import CSVLogger, MLFlowLogger
    from lightning.pytorch.plugins import TorchCheckpointIO

    from models.backbone import save_backbone
    from models.pretrain_module import PretrainModule, ProgressPrinter
    from models.strategy import build_strategy

    started = time.time()  # wall_seconds: the training itself, after the data are loaded
    out = Path(args.out)
    L.seed_everything(args.seed, workers=True, verbose=False)
    precision = args.precision or default_precision(on_gpu)
    if args.mlflow_run_id:
        logger = MLFlowLogger(tracking_uri=args.mlflow_tracking_uri, run_id=args.mlflow_run_id)
    else:
        logger = CSVLogger(save_dir=str(out), name="logs", version=0)

    progress = ProgressPrinter(args.max_steps)
    has_val = data.val_set is not None
    devices = parse_devices(args.devices)
    if devices == "auto" and "LOCAL_WORLD_SIZE" in os.environ:
        # under torchrun, "auto" means one device per process torchrun started (CPU's auto is 1)
        devices = int(os.environ["LOCAL_WORLD_SIZE"])
    strategy = build_strategy(kind, on_gpu=on_gpu, bucket_cap_mb=args.ddp_bucket_cap_mb,
                              comm_hook=args.ddp_comm_hook, activation_checkpointing=args.activation_checkpointing,
                              powersgd_start_iter=max(args.warmup_steps, args.max_steps // 10))

    class AtomicCheckpointIO(TorchCheckpointIO):
        """Writes next to the target, then renames: a run killed mid-save leaves the old last.ckpt."""

        def save_checkpoint(self, checkpoint, path, storage_options=None) -> None:
            path = Path(path)
            tmp = path.with_name(path.name + ".tmp")
            super().save_checkpoint(checkpoint, tmp, storage_options)
            os.replace(tmp, path)

    last_ckpt = out / "checkpoints" / "last.ckpt"
    ckpt_path = str(last_ckpt) if args.resume and last_ckpt.is_file() else None
    checkpoint_every = args.checkpoint_every or max(1, args.max_steps // 4)
    log_every = args.log_every_n_steps or max(1, min(50, args.max_steps // 20))
    accumulate = args.accumulate_grad_batches
    callbacks = [progress, ModelCheckpoint(dirpath=out / "checkpoints", save_last=True, save_top_k=0,
                                           every_n_train_steps=checkpoint_every)]
    if args.throughput:
        callbacks.append(ThroughputMonitor(
            batch_size_fn=batch_size_of, length_fn=functools.partial(tokens_in_batch, patch_size=config.patch_size)))
    trainer = L.Trainer(
        accelerator=args.accelerator, devices=devices, num_nodes=torchrun_nodes(), strategy=strategy,
        precision=precision, max_steps=args.max_steps, logger=logger, callbacks=callbacks,
        plugins=[AtomicCheckpointIO()],
        log_every_n_steps=log_every, accumulate_grad_batches=accumulate,
        # counted in micro-batches: validate ~4 times per run whatever the accumulation
        val_check_interval=max(1, args.max_steps // 4) * accumulate if has_val else None,
        check_val_every_n_epoch=None, limit_val_batches=1.0 if has_val else 0,
        num_sanity_val_steps=0, enable_progress_bar=False, enable_model_summary=False,
        # clipping by global norm 1.0 lives in PretrainModule.configure_gradient_clipping (FSDP-aware)
        gradient_clip_val=None, use_distributed_sampler=True,
    )
    # the LR follows the global batch: windows per optimizer step over all processes
    global_batch = args.batch_size * trainer.world_size * accumulate
    lr_scaling = resolve_lr_scaling(args.lr_scaling, args.optimizer)
    effective_lr = scaled_lr(args.lr, global_batch, args.lr_reference_batch, lr_scaling)
    module = PretrainModule(
        config.to_dict(), future_length=future_length, lr=effective_lr, weight_decay=args.weight_decay,
        warmup_steps=args.warmup_steps, max_steps=args.max_steps, schedule=args.schedule,
        optimizer=args.optimizer, grad_clip=1.0,
    )
    if args.activation_checkpointing and kind != "fsdp":  # FSDP wraps the blocks itself
        module.model.gradient_checkpointing = True
    if args.compile:
        module.model.compile()  # in place: parameter names (checkpoints) stay as they are
    if args.throughput:
        n_patches = data.length // config.patch_size
        module.flops_per_batch = module.training_flops(args.batch_size, n_patches)  # read by ThroughputMonitor
    if trainer.is_global_zero:
        print(f"strategy {kind}, precision {precision}, optimizer {args.optimizer}, global batch {global_batch}, "
              f"peak lr {effective_lr:.3g} ({lr_scaling} scaling of {args.lr:g} at {args.lr_reference_batch})",
              flush=True)
    if ckpt_path and trainer.is_global_zero:
        print(f"resuming from {ckpt_path}", flush=True)
    # the data side resumes through the restored global step (see PretrainDataModule.train_dataloader)
    trainer.fit(module, datamodule=data, ckpt_path=ckpt_path)
    val_loss = None
    if has_val:
        # a final validation at max_steps (the last periodic one may be earlier)
        result = trainer.validate(module, datamodule=data, verbose=False)
        val_loss = float(result[0]["val_loss"]) if result else None
    trainer.save_checkpoint(last_ckpt, weights_only=False)  # collective; rank zero writes
    # whole tensors on rank zero: under FSDP a collective gather, elsewhere the module's own
    state = trainer.strategy.lightning_module_state_dict()

    if trainer.is_global_zero:
        save_backbone(module.model, out / "backbone", state_dict=backbone_weights(state))
        metrics = {
            "preset": args.preset,
            "n_params": count_parameters(config),
            "steps": int(trainer.global_step),
            "tokens_seen": int(module.tokens_seen),
            "initial_train_loss": progress.initial_loss(),
            "final_train_loss": progress.final_loss(),
            "val_loss": val_loss,
            "wall_seconds": round(time.time() - started, 2),
            "devices": int(trainer.world_size),
            # tokens of this process's training (a resumed run counts only its own part) per second
            "tokens_per_second": progress.tokens_per_second(module.tokens_seen),
            "optimizer": args.optimizer,
            "global_batch": global_batch,
            "accumulate_grad_batches": accumulate,
            "base_lr": args.lr,
            "lr_reference_batch": args.lr_reference_batch,
            "lr_scaling": lr_scaling,
            "effective_lr": effective_lr,
            "schedule": args.schedule,
            "precision": precision,
            "strategy": kind,
        }
        (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
        print(f"done: {json.dumps(metrics)}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
