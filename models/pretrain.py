"""Pre-training entry point: ``python -m models.pretrain --data corpus.parquet --out DIR ...``.

Runs alone or under torchrun / Lightning's DDP launcher (Lightning reads torchrun's env).
Rank zero writes OUT/backbone/{config.json,weights.pt}, OUT/metrics.json and
OUT/checkpoints/last.ckpt (every --checkpoint-every steps and at the end). With --resume an
existing last.ckpt is continued: same weights, optimiser, schedule and the very batches an
uninterrupted run would have drawn next. Logs to the caller's MLflow run when given
``--mlflow-tracking-uri`` and ``--mlflow-run-id`` (through Lightning's MLFlowLogger),
else to a CSV log in OUT.
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
from models.presets import PRESETS, count_parameters, get_preset


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
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--weight-decay", type=float, default=0.01)
    ap.add_argument("--warmup-steps", type=int, default=40)
    ap.add_argument("--schedule", choices=["cosine", "wsd"], default="cosine")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--accelerator", choices=["auto", "cpu", "gpu"], default="auto")
    ap.add_argument("--devices", default="auto", help="auto, a count, or a list like 0,1")
    ap.add_argument("--strategy", default="auto", help="auto, ddp, ddp_spawn, fsdp, ...")
    ap.add_argument("--precision", default=None, help="default: bf16-mixed on GPU, 32-true on CPU")
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


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    error = check_args(args)
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
    return train(args, config, data, future_length)


def train(args: argparse.Namespace, config, data, future_length: int) -> int:
    import lightning as L
    import torch
    from lightning.pytorch.callbacks import ModelCheckpoint
    from lightning.pytorch.loggers import CSVLogger, MLFlowLogger
    from lightning.pytorch.plugins import TorchCheckpointIO

    from models.backbone import save_backbone
    from models.pretrain_module import PretrainModule, ProgressPrinter

    started = time.time()  # wall_seconds: the training itself, after the data are loaded
    out = Path(args.out)
    L.seed_everything(args.seed, workers=True, verbose=False)
    on_gpu = args.accelerator == "gpu" or (args.accelerator == "auto" and torch.cuda.is_available())
    precision = args.precision or ("bf16-mixed" if on_gpu else "32-true")
    if args.mlflow_run_id:
        logger = MLFlowLogger(tracking_uri=args.mlflow_tracking_uri, run_id=args.mlflow_run_id)
    else:
        logger = CSVLogger(save_dir=str(out), name="logs", version=0)

    module = PretrainModule(
        config.to_dict(), future_length=future_length, lr=args.lr, weight_decay=args.weight_decay,
        warmup_steps=args.warmup_steps, max_steps=args.max_steps, schedule=args.schedule,
    )
    progress = ProgressPrinter(args.max_steps)
    has_val = data.val_set is not None
    devices = parse_devices(args.devices)
    if devices == "auto" and "LOCAL_WORLD_SIZE" in os.environ:
        # under torchrun, "auto" means one device per process torchrun started (CPU's auto is 1)
        devices = int(os.environ["LOCAL_WORLD_SIZE"])

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
    trainer = L.Trainer(
        accelerator=args.accelerator, devices=devices, strategy=args.strategy,
        precision=precision, max_steps=args.max_steps, logger=logger,
        callbacks=[
            progress,
            ModelCheckpoint(dirpath=out / "checkpoints", save_last=True, save_top_k=0,
                            every_n_train_steps=checkpoint_every),
        ],
        plugins=[AtomicCheckpointIO()],
        log_every_n_steps=log_every,
        val_check_interval=max(1, args.max_steps // 4) if has_val else None,
        check_val_every_n_epoch=None, limit_val_batches=1.0 if has_val else 0,
        num_sanity_val_steps=0, enable_progress_bar=False, enable_model_summary=False,
        gradient_clip_val=1.0, use_distributed_sampler=True,
    )
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

    if trainer.is_global_zero:
        save_backbone(module.model, out / "backbone")
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
        }
        (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
        print(f"done: {json.dumps(metrics)}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
