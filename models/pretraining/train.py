"""Pre-training entry point: ``python -m models.pretraining --data corpus.parquet --out DIR ...``
(``--help`` lists every flag: one per field of ``models.pretraining.spec.TrainerJob``).

Runs alone or under torchrun / Lightning's DDP launcher (Lightning reads torchrun's env).
Rank zero writes OUT/backbone/{config.json,weights.pt}, OUT/metrics.json and
OUT/checkpoints/last.ckpt (every checkpoint_every steps and at the end). With --resume an
existing last.ckpt is continued: same weights, optimiser, schedule and the very batches an
uninterrupted run would have drawn next. Logs to the caller's MLflow run when given
``--mlflow-tracking-uri`` and ``--mlflow-run-id`` (through Lightning's MLFlowLogger),
else to a CSV log in OUT.

Training system (Jia et al. 2018 in today's terms):
- precision: bf16-mixed by default on GPU (16-mixed where bf16 is missing; 16-mixed uses
  dynamic loss scaling), 32-true on CPU.
- optimizer adamw | lamb | lars (``optim``): no weight decay and no trust ratio on
  parameters with ndim <= 1.
- lr is the peak LR at a global batch of lr_reference_batch windows; the LR used is scaled
  to the actual global batch (per-device batch x processes x accumulate_grad_batches) by
  lr_scaling (auto = sqrt for adamw/lamb, linear for lars). metrics.json records both.
- warm-up then warmup-stable-decay (default) or cosine.
- DDP with ddp_bucket_cap_mb and ddp_comm_hook (CUDA only), FSDP for the 1b / 2.5b
  presets on several GPUs (``strategy``); activation checkpointing, torch.compile,
  throughput (Lightning's ThroughputMonitor; MFU on known GPUs).
"""

from __future__ import annotations

import functools
import json
import math
import os
import sys
import time
from pathlib import Path
from typing import Any

from models.backbone.presets import count_parameters, preset_name
from models.pretraining.optim import resolve_lr_scaling, scaled_lr
from models.pretraining.spec import SpecError, TrainerJob, parse_devices
from models.pretraining.strategy import check_strategy, choose_strategy, device_count


def torchrun_nodes() -> int:
    """Nodes of a torchrun world (WORLD_SIZE / LOCAL_WORLD_SIZE), else 1: Lightning needs
    devices x num_nodes == WORLD_SIZE, or each node would train alone."""
    if "LOCAL_WORLD_SIZE" in os.environ and "WORLD_SIZE" in os.environ and "TORCHELASTIC_RUN_ID" in os.environ:
        return max(1, int(os.environ["WORLD_SIZE"]) // int(os.environ["LOCAL_WORLD_SIZE"]))
    return 1


def lightning_devices(job: TrainerJob) -> str | int | list[int]:
    """What Lightning's Trainer gets: under torchrun "auto" means one device per process
    torchrun started (Lightning's CPU "auto" is 1)."""
    devices = parse_devices(job.devices)
    if devices == "auto" and "LOCAL_WORLD_SIZE" in os.environ:
        return int(os.environ["LOCAL_WORLD_SIZE"])
    return devices


def resolve_runtime(job: TrainerJob) -> tuple[bool, int, str]:
    """-> (on_gpu, devices per node, strategy kind) from the job and the machine."""
    import torch

    on_gpu = job.accelerator == "gpu" or (job.accelerator == "auto" and torch.cuda.is_available())
    n_devices = device_count(lightning_devices(job), on_gpu, torch.cuda.device_count() if on_gpu else 0)
    n_devices = max(n_devices, int(os.environ.get("WORLD_SIZE", 1)))  # torchrun across nodes
    return on_gpu, n_devices, choose_strategy(job.strategy, job.preset, on_gpu, n_devices)


def check_runtime(job: TrainerJob, on_gpu: bool, kind: str) -> str | None:
    """A message when the job cannot run on this machine, else None."""
    if job.precision == "16-mixed" and not on_gpu:
        return "--precision 16-mixed (fp16 with loss scaling) needs a GPU; use bf16-mixed or 32-true on CPU"
    return check_strategy(kind, on_gpu, job.optimizer)


def default_precision(on_gpu: bool) -> str:
    import torch

    if not on_gpu:
        return "32-true"
    # fp32 master weights either way; fp16 (with loss scaling) only where bf16 is missing
    return "bf16-mixed" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "16-mixed"


def _quiet_lightning() -> None:
    """Lightning's advice to its own users (install a logger, a deprecation inside Lightning itself)
    is not news to tsfm's: the log keeps the hardware lines and the training progress."""
    import logging
    import warnings

    warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)` is deprecated.*")
    noise = ("💡 Tip", "`Trainer(limit_val_batches=")

    class _Advice(logging.Filter):
        def filter(self, record: logging.LogRecord) -> bool:
            return not str(record.getMessage()).startswith(noise)

    for name in ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero"):
        logging.getLogger(name).addFilter(_Advice())


def main(argv: list[str] | None = None) -> int:
    try:
        job = TrainerJob.from_argv(argv)
        on_gpu, _, kind = resolve_runtime(job)
        error = check_runtime(job, on_gpu, kind)
        if error:
            raise SpecError(error)
    except SpecError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    # Lightning is imported only now: bad input above fails in ~1 s instead of ~10 s
    _quiet_lightning()
    from models.pretraining.data import PretrainDataModule

    p = job.backbone_config().patch_size
    context_length = math.ceil(job.context_length / p) * p
    future_length = math.ceil(job.horizon_length / p) * p
    try:
        data = PretrainDataModule.from_job(job, context_length, future_length)
    except (ValueError, OSError) as exc:
        print(f"error: bad training data: {exc}", file=sys.stderr)
        return 2
    return train(job, data, future_length, on_gpu, kind)


def batch_size_of(batch: dict[str, Any]) -> int:
    """Windows in a batch (module level: picklable for ddp_spawn)."""
    return int(batch["values"].shape[0])


def tokens_in_batch(batch: dict[str, Any], patch_size: int) -> int:
    """Patches in a batch: values [B, V, W] -> B * V * W / patch."""
    B, V, W = batch["values"].shape
    return int(B * V * (W // patch_size))


def backbone_weights(state: dict[str, Any]) -> dict[str, Any]:
    """The LightningModule's state dict -> the backbone's (drops 'model.' and wrapper prefixes)."""
    from models.pretraining.optim import clean_name

    return {clean_name(k)[len("model.") :]: v for k, v in state.items() if clean_name(k).startswith("model.")}


def build_trainer(
    job: TrainerJob, out: Path, kind: str, on_gpu: bool, precision: str, has_val: bool, callbacks: list[Any]
):
    """The Lightning Trainer of a run: strategy, precision, logging, checkpoints, validation cadence."""
    import lightning as L
    from lightning.pytorch.callbacks import ModelCheckpoint
    from lightning.pytorch.loggers import CSVLogger, MLFlowLogger

    from models.pretraining.callbacks import AtomicCheckpointIO
    from models.pretraining.strategy import build_strategy

    if job.mlflow_run_id:
        logger = MLFlowLogger(tracking_uri=job.mlflow_tracking_uri, run_id=job.mlflow_run_id)
    else:
        # a resumed run logs to the next version folder (CSVLogger deletes an existing metrics.csv), and
        # every logged row is written at once, so a killed run's log reaches its last checkpoint
        logger = CSVLogger(
            save_dir=str(out), name="logs", version=None if job.resume else 0, flush_logs_every_n_steps=1
        )
    strategy = build_strategy(
        kind,
        on_gpu=on_gpu,
        bucket_cap_mb=job.ddp_bucket_cap_mb,
        comm_hook=job.ddp_comm_hook,
        activation_checkpointing=job.activation_checkpointing,
        powersgd_start_iter=max(job.warmup_steps, job.max_steps // 10),
    )
    checkpoint_every = job.checkpoint_every or max(1, job.max_steps // 4)
    accumulate = job.accumulate_grad_batches
    callbacks = [
        *callbacks,
        ModelCheckpoint(
            dirpath=out / "checkpoints", save_last=True, save_top_k=0, every_n_train_steps=checkpoint_every
        ),
    ]
    return L.Trainer(
        accelerator=job.accelerator,
        devices=lightning_devices(job),
        num_nodes=torchrun_nodes(),
        strategy=strategy,
        precision=precision,
        max_steps=job.max_steps,
        logger=logger,
        callbacks=callbacks,
        plugins=[AtomicCheckpointIO()],
        log_every_n_steps=job.log_every_n_steps or max(1, min(50, job.max_steps // 20)),
        accumulate_grad_batches=accumulate,
        # counted in micro-batches: validate ~4 times per run whatever the accumulation
        val_check_interval=max(1, job.max_steps // 4) * accumulate if has_val else None,
        check_val_every_n_epoch=None,
        limit_val_batches=1.0 if has_val else 0,
        num_sanity_val_steps=0,
        enable_progress_bar=False,
        enable_model_summary=False,
        # clipping by global norm 1.0 lives in PretrainModule.configure_gradient_clipping (FSDP-aware)
        gradient_clip_val=None,
        use_distributed_sampler=True,
    )


def train(job: TrainerJob, data, future_length: int, on_gpu: bool, kind: str) -> int:
    """``kind``: the strategy from ``resolve_runtime`` (auto, ddp, ddp_spawn or fsdp)."""
    import lightning as L
    from lightning.pytorch.callbacks import ThroughputMonitor

    from models.pretraining.callbacks import ProgressPrinter
    from models.pretraining.module import PretrainModule

    started = time.time()  # wall_seconds: the training itself, after the data are loaded
    out = Path(job.out)
    config = job.backbone_config()
    L.seed_everything(job.seed, workers=True, verbose=False)
    precision = job.precision or default_precision(on_gpu)
    # a resumed run consumed global_step * accumulate micro-batches per rank: the data side
    # multiplies its start batch by this (PretrainDataModule.train_dataloader)
    data.batches_per_step = job.accumulate_grad_batches
    progress = ProgressPrinter(job.max_steps)
    callbacks = [progress]
    if job.snapshot_every and kind != "fsdp":
        from models.pretraining.callbacks import BackboneSnapshots

        callbacks.append(BackboneSnapshots(out / "snapshots", job.snapshot_every))
    if job.throughput:
        callbacks.append(
            ThroughputMonitor(
                batch_size_fn=batch_size_of, length_fn=functools.partial(tokens_in_batch, patch_size=config.patch_size)
            )
        )
    has_val = data.val_set is not None
    trainer = build_trainer(job, out, kind, on_gpu, precision, has_val, callbacks)
    last_ckpt = out / "checkpoints" / "last.ckpt"
    ckpt_path = str(last_ckpt) if job.resume and last_ckpt.is_file() else None

    # the LR follows the global batch: windows per optimizer step over all processes
    global_batch = job.batch_size * trainer.world_size * job.accumulate_grad_batches
    lr_scaling = resolve_lr_scaling(job.lr_scaling, job.optimizer)
    effective_lr = scaled_lr(job.lr, global_batch, job.lr_reference_batch, lr_scaling)
    module = PretrainModule(
        config.to_dict(),
        future_length=future_length,
        lr=effective_lr,
        weight_decay=job.weight_decay,
        warmup_steps=job.warmup_steps,
        max_steps=job.max_steps,
        schedule=job.schedule,
        optimizer=job.optimizer,
        grad_clip=1.0,
        mask_origins=job.mask_origins,
        random_context=job.random_context,
        min_context_length=job.min_context_length,
        seed=job.seed,
    )
    if job.init and not ckpt_path:  # continued pre-training: the saved weights, a fresh optimizer
        import torch

        from models.backbone.io import WEIGHTS_FILE

        module.model.load_state_dict(torch.load(Path(job.init) / WEIGHTS_FILE, map_location="cpu", weights_only=True))
    if job.activation_checkpointing and kind != "fsdp":  # FSDP wraps the blocks itself
        module.model.gradient_checkpointing = True
    if job.compile:
        module.model.compile()  # in place: parameter names (checkpoints) stay as they are
    if job.throughput:
        module.flops_per_batch = module.training_flops(job.batch_size, data.length // config.patch_size)
    if trainer.is_global_zero:
        print(
            f"strategy {kind}, precision {precision}, optimizer {job.optimizer}, global batch {global_batch}, "
            f"peak lr {effective_lr:.3g} ({lr_scaling} scaling of {job.lr:g} at {job.lr_reference_batch})",
            flush=True,
        )
        if ckpt_path:
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
        run = {
            "steps": int(trainer.global_step),
            "tokens_seen": int(module.tokens_seen),
            "val_loss": val_loss,
            "devices": int(trainer.world_size),
            "global_batch": global_batch,
            "lr_scaling": lr_scaling,
            "effective_lr": effective_lr,
            "precision": precision,
            "strategy": kind,
        }
        write_outputs(job, module, state, progress, run, time.time() - started)
    return 0


def write_outputs(
    job: TrainerJob, module, state: dict[str, Any], progress, run: dict[str, Any], seconds: float
) -> None:
    """OUT/backbone (the weights alone) and OUT/metrics.json (what the run did), on rank zero."""
    from models.backbone.io import save_backbone

    out = Path(job.out)
    save_backbone(module.model, out / "backbone", state_dict=backbone_weights(state))
    metrics = {
        "preset": preset_name(job.backbone_config()) if job.init else job.preset,
        "n_params": count_parameters(job.backbone_config()),
        "patch_size": module.model.config.patch_size,
        "scaler_window": job.scaler_window,
        "mask_origins": job.mask_origins,
        "random_context": job.random_context,
        "min_context_length": job.min_context_length,
        "steps": run["steps"],
        "tokens_seen": run["tokens_seen"],
        "initial_train_loss": progress.initial_loss(),
        "final_train_loss": progress.final_loss(),
        "val_loss": run["val_loss"],
        "wall_seconds": round(seconds, 2),
        "devices": run["devices"],
        # tokens of this process's training (a resumed run counts only its own part) per second
        "tokens_per_second": progress.tokens_per_second(run["tokens_seen"]),
        "optimizer": job.optimizer,
        "global_batch": run["global_batch"],
        "accumulate_grad_batches": job.accumulate_grad_batches,
        "base_lr": job.lr,
        "lr_reference_batch": job.lr_reference_batch,
        "lr_scaling": run["lr_scaling"],
        "effective_lr": run["effective_lr"],
        "schedule": job.schedule,
        "precision": run["precision"],
        "strategy": run["strategy"],
    }
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    print(f"done: {json.dumps(metrics)}", flush=True)
