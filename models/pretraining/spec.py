"""The pre-training job, one pydantic model; the trainer's flags are generated from it.

``TrainingRecipe`` holds every setting of how a backbone is trained, with its default,
once: the settings schema (``infra.settings.PretrainParams``) extends it with the domains to
train on, and ``TrainerJob`` with what one run needs (its data files, its output folder).
``python -m models.pretraining --help`` lists a flag per field (``max_steps`` ->
``--max-steps``) whose default is the field's; ``TrainerJob.to_argv`` writes the flags back.

Light on purpose (pydantic only): bad input fails in about a second, before torch or
Lightning are imported.
"""

from __future__ import annotations

import argparse
import math
import types
import typing
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from models.backbone.presets import PRESETS, get_preset
from models.validation import messages

PROG = "python -m models.pretraining"


def parse_devices(text: str) -> str | int | list[int]:
    """'auto' | '2' | '-1' | '0,1' -> what Lightning's Trainer takes."""
    text = text.strip()
    if text == "auto":
        return text
    if "," in text:
        return [int(t) for t in text.split(",") if t.strip()]
    return int(text)


class TrainingRecipe(BaseModel):
    """How a backbone is trained: size, objective window, optimiser, data mixture, hardware."""

    model_config = ConfigDict(extra="forbid")

    preset: str = Field("tiny", description=f"backbone size: {', '.join(PRESETS)}")
    max_steps: int = Field(2000, ge=1, description="optimizer steps")
    batch_size: int = Field(64, ge=1, description="windows per device and micro-batch")
    accumulate_grad_batches: int = Field(
        1, ge=1, description="micro-batches per optimizer step (the global batch grows by this factor)"
    )
    context_length: int = Field(128, ge=8, description="context points per training window")
    horizon_length: int = Field(
        32, ge=1, description="masked future the model learns to fill, rounded up to whole patches"
    )
    patch_size: int | None = Field(
        None,
        ge=1,
        description="time steps per token; None: the preset's "
        "(a patch must fit the series it forecasts: monthly/yearly data want 8 or 16)",
    )
    scaler_window: int = Field(
        0, ge=0, description="causal scaler statistics over the last this many patches; 0: from the first observation"
    )
    # 4 origins and random context lengths: each alone took M3 relative MASE on validation windows from
    # 1.00 to 0.87 / 0.90 under the same CPU budget, together with patch 16 to 0.85 (docs/benchmarks.md)
    mask_origins: int = Field(
        4,
        ge=1,
        le=64,
        description="forecast origins trained per window: the masked "
        "run at the end plus mask_origins - 1 runs at random places",
    )
    random_context: bool = Field(
        True,
        description="train on log-uniform random context lengths (one patch "
        "to context_length) instead of always the whole context",
    )
    min_context_length: int | None = Field(
        None,
        ge=8,
        description="train long contexts at a constant cost: each step crops its windows to a "
        "context drawn log-uniform between this and context_length and keeps proportionally fewer windows; "
        "None: every step uses the whole context_length",
    )
    optimizer: Literal["adamw", "lamb", "lars", "muon"] = Field(
        "adamw",
        description="lamb/lars: layer-wise trust ratios for large batches (lars wants lr ~1); "
        "muon: orthogonalised updates for the blocks' hidden matrices, AdamW for the rest",
    )
    lr: float = Field(3e-3, gt=0, description="peak LR at a global batch of lr_reference_batch windows")
    lr_reference_batch: int = Field(
        64, ge=1, description="global batch (devices x batch x accumulation) at which lr applies"
    )
    lr_scaling: Literal["auto", "linear", "sqrt", "none"] = Field(
        "auto", description="LR vs global batch: auto = sqrt for adamw/lamb, linear for lars"
    )
    weight_decay: float = Field(0.01, ge=0, description="on matrices only, never on norms or biases")
    warmup_steps: int = Field(40, ge=0)
    schedule: Literal["wsd", "cosine"] = Field(
        "wsd", description="after warm-up: warmup-stable-decay (1-sqrt over the last 20%) or cosine"
    )
    seed: int = 0
    init: str | None = Field(
        None,
        description="continue pre-training from: default (the backbone shipped with "
        "tsfm), a registered model URI (models:/backbone@champion) or a saved backbone folder; "
        "its shape replaces the preset's; None: random weights",
    )
    tsmixup_prob: float = Field(
        0.0, ge=0, le=1, description="share of training windows that are TSMixups of several sources' windows"
    )
    tsmixup_max_series: int = Field(3, ge=2, description="at most this many windows in one TSMixup")
    kernelsynth_prob: float = Field(
        0.0, ge=0, le=1, description="share of training windows drawn fresh from KernelSynth"
    )
    samples_per_epoch: int = Field(
        1 << 16, ge=1, description="training items per (virtual) epoch, split between the sources by their weights"
    )
    num_workers: int = Field(0, ge=0, description="DataLoader worker processes")
    accelerator: Literal["auto", "cpu", "gpu"] = "auto"
    devices: str = Field("auto", description="auto, a count, or a list like 0,1")
    strategy: Literal["auto", "ddp", "ddp_spawn", "fsdp"] = Field(
        "auto", description="auto: one device as is, several -> ddp, or fsdp for the 1b/2.5b presets on GPUs"
    )
    precision: Literal["bf16-mixed", "16-mixed", "32-true"] | None = Field(
        None, description="None: bf16-mixed on GPU (16-mixed without bf16 support), 32-true on CPU"
    )
    ddp_bucket_cap_mb: float = Field(
        25.0, gt=0, description="DDP gradient bucket size: small gradients fused into one all-reduce"
    )
    ddp_comm_hook: Literal["none", "bf16", "fp16", "powersgd"] = Field(
        "none", description="DDP gradient compression (CUDA only; warned and ignored on CPU)"
    )
    activation_checkpointing: bool = Field(
        False, description="recompute each block's activations in backward (less memory, ~1/3 more compute)"
    )
    compile: bool = Field(False, description="torch.compile the backbone")
    throughput: bool = Field(False, description="log samples/s, tokens/s and (on known GPUs) MFU")
    checkpoint_every: int | None = Field(
        None, ge=1, description="steps between checkpoints; None: max(1, max_steps // 4)"
    )
    snapshot_every: int | None = Field(
        None,
        ge=1,
        description="steps between exports of the backbone's weights to OUT/snapshots/ (learning curves); None: none",
    )
    log_every_n_steps: int | None = Field(
        None, ge=1, description="steps between logged metrics; None: max(1, min(50, max_steps // 20))"
    )

    @field_validator("preset")
    @classmethod
    def _known_preset(cls, v: str) -> str:
        if v not in PRESETS:
            raise ValueError(f"unknown preset {v!r}; valid presets: {', '.join(PRESETS)}")
        return v

    @field_validator("devices")
    @classmethod
    def _devices(cls, v: str) -> str:
        try:
            parse_devices(v)
        except ValueError:
            raise ValueError(f"bad devices {v!r}: use auto, a count, or a list like 0,1") from None
        return v

    @field_validator("init")
    @classmethod
    def _saved_backbone(cls, v: str | None) -> str | None:
        if v and v != "default" and not v.startswith("models:/") and not (Path(v) / "config.json").is_file():
            raise ValueError(
                f"init {v!r} is not a saved backbone folder (no config.json there), 'default' or a models:/ URI"
            )
        return v

    @model_validator(mode="after")
    def _fits(self) -> TrainingRecipe:
        if self.tsmixup_prob + self.kernelsynth_prob > 1:
            raise ValueError("tsmixup_prob + kernelsynth_prob must be <= 1")
        config = self.backbone_config()
        p = config.patch_size
        window = math.ceil(self.context_length / p) * p + math.ceil(self.horizon_length / p) * p
        if window > config.max_context:
            raise ValueError(
                f"context + horizon ({window} after rounding to patches of {p}) exceed max_context {config.max_context}"
            )
        return self

    def backbone_config(self):
        """The preset with this recipe's patch size and scaler window (``BackboneConfig``); with
        ``init``, the saved backbone's own shape."""
        folder = self.init
        if folder == "default":
            from models.backbone.io import SHIPPED_DIR

            folder = str(SHIPPED_DIR)
        if folder and (Path(folder) / "config.json").is_file():  # a registered URI: its shape is known once resolved
            import json

            from models.backbone.config import BackboneConfig

            return BackboneConfig.from_dict(json.loads((Path(folder) / "config.json").read_text()))
        config = get_preset(self.preset)
        if self.patch_size:
            config.patch_size = self.patch_size
            config.max_context = config.max_context // self.patch_size * self.patch_size
        config.scaler_window = self.scaler_window
        return type(config).from_dict(config.to_dict())  # validated again


class SpecError(ValueError):
    """A job that cannot run (one line per problem, named as flags)."""


class TrainerJob(TrainingRecipe):
    """One run of the trainer: a recipe, the data files (train parts only) and where to write."""

    data: list[str] = Field(..., min_length=1, description="long-format Parquet, one file per source (repeatable)")
    data_weights: list[float] | None = Field(
        None,
        description="mixture weight per data file, comma separated "
        "in the same order; None: in proportion to each file's windows",
    )
    data_cache: str | None = Field(
        None,
        description="folder for the memory-mapped caches of the data files (default: .tsfm-cache next to each file)",
    )
    out: str = Field(..., description="output folder: backbone/, metrics.json, checkpoints/")
    resume: bool = Field(False, description="continue from OUT/checkpoints/last.ckpt when it exists")
    mlflow_tracking_uri: str | None = Field(
        None, description="log to this MLflow run (with mlflow_run_id) instead of a CSV log in OUT"
    )
    mlflow_run_id: str | None = None

    @field_validator("data_weights", mode="before")
    @classmethod
    def _comma_separated(cls, v):
        return [t for t in v.split(",") if t.strip()] if isinstance(v, str) else v

    @model_validator(mode="after")
    def _init_is_a_folder(self) -> TrainerJob:
        if self.init and not (Path(self.init) / "config.json").is_file():
            raise ValueError(
                f"init {self.init!r}: the trainer starts from a saved backbone folder only (the "
                "pipeline resolves 'default' and models:/ URIs to one)"
            )
        return self

    @model_validator(mode="after")
    def _run_inputs(self) -> TrainerJob:
        missing = [p for p in self.data if not Path(p).is_file()]
        if missing:
            raise ValueError(f"data file not found: {missing[0]}")
        if self.data_weights is not None:
            w = self.data_weights
            if len(w) != len(self.data):
                raise ValueError(f"data_weights has {len(w)} values for {len(self.data)} data files")
            if any(x < 0 for x in w) or sum(w) <= 0:
                raise ValueError("data_weights must be >= 0 with a positive sum")
        if bool(self.mlflow_tracking_uri) != bool(self.mlflow_run_id):
            raise ValueError("mlflow_tracking_uri and mlflow_run_id go together")
        return self

    def normalised_weights(self) -> list[float] | None:
        if self.data_weights is None:
            return None
        total = sum(self.data_weights)
        return [w / total for w in self.data_weights]

    # ----------------------------------------------------------------- flags
    @classmethod
    def parser(cls) -> argparse.ArgumentParser:
        """One flag per field; absent flags keep the field's default (argparse sets none)."""
        ap = argparse.ArgumentParser(
            prog=PROG, description=(__doc__ or "").splitlines()[0], argument_default=argparse.SUPPRESS
        )
        for name, field in cls.model_fields.items():
            flag, kind, choices = _flag(name), *_kind(field.annotation)
            help_ = field.description or ""
            if not field.is_required():
                help_ += f" (default: {field.default})"
            help_ = help_.replace("%", "%%")  # argparse formats help strings
            if kind is bool:
                ap.add_argument(flag, action=argparse.BooleanOptionalAction, help=help_)
            elif kind is list and name == "data":
                ap.add_argument(flag, action="append", required=field.is_required(), help=help_)
            else:
                ap.add_argument(flag, choices=choices, required=field.is_required(), help=help_)
        return ap

    @classmethod
    def from_argv(cls, argv: list[str] | None = None) -> TrainerJob:
        """Flags -> a validated job; raises ``SpecError`` naming the flags at fault."""
        given = vars(cls.parser().parse_args(argv))
        try:
            return cls(**given)
        except ValidationError as e:
            raise SpecError("\n".join(messages(e, lambda loc: _flag(str(loc[0])) if loc else ""))) from None

    def to_argv(self) -> list[str]:
        """The flags that rebuild this job (only values that differ from the defaults)."""
        argv: list[str] = []
        for name, field in type(self).model_fields.items():
            value = getattr(self, name)
            if not field.is_required() and value == field.default:
                continue
            flag = _flag(name)
            if isinstance(value, bool):
                argv.append(flag if value else f"--no-{flag[2:]}")
            elif name == "data":
                argv += [a for path in value for a in (flag, str(path))]
            elif isinstance(value, list):
                argv += [flag, ",".join(str(v) for v in value)]
            elif value is not None:
                argv += [flag, str(value)]
        return argv


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _kind(annotation) -> tuple[type, list[str] | None]:
    """(bool | list | str, choices) of a field's annotation (Optional unwrapped)."""
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if typing.get_origin(annotation) in (typing.Union, types.UnionType) and len(args) == 1:
        annotation = args[0]
    if annotation is bool:
        return bool, None
    if typing.get_origin(annotation) is Literal:
        return str, [str(a) for a in typing.get_args(annotation)]
    if typing.get_origin(annotation) is list:
        return list, None
    return str, None
