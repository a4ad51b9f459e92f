"""Every setting of a domain's onboarding, with its default, once.

Light on purpose (pydantic only): the settings schema (``infra.settings.OnboardParams``)
extends ``OnboardingConfig``, so params.yaml, ``tsfm onboard --set teacher.k=10``, the
Prefect form and ``models.memory.onboarding.onboard`` all read these same fields.
"""

from __future__ import annotations

import math
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

INDEX_TYPES = ("auto", "flat", "ivf", "hnsw")


class Section(BaseModel):
    # a misspelt key fails loudly instead of silently keeping the default
    model_config = ConfigDict(extra="forbid", frozen=True)


class TeacherConfig(Section):
    """The kNN teacher: retrieval, re-ranking, weighting, and the faiss index of the datastore."""

    top_k_candidates: int = Field(50, ge=1, description="neighbours taken by embedding, before re-ranking")
    k: int = Field(20, ge=1, description="neighbours kept after re-ranking by L1 distance in raw space")
    temperature: float = Field(0.12, gt=0, description="weights = softmax(-sqrt(distance) / temperature)")
    align_points: int = Field(16, ge=1, description="last points whose mean is each window's level")
    index_type: Literal["auto", "flat", "ivf", "hnsw"] = Field(
        "auto", description="auto = exact (flat) up to exact_max windows, IVF past it"
    )
    exact_max: int = Field(50_000, ge=1, description="largest datastore searched exactly under auto")
    nlist: int | None = Field(None, ge=1, description="IVF lists; None: round(4 sqrt(N)) capped at nlist_max")
    nlist_max: int = Field(4096, ge=1)
    train_per_list: int = Field(64, ge=1, description="IVF k-means sample: at most this many keys per list")
    nprobe: int = Field(64, ge=1, description="IVF lists searched per query")
    hnsw_m: int = Field(32, ge=2)
    ef_search: int = Field(128, ge=1, description="HNSW search beam")
    use_gpu: bool | None = Field(None, description="None: on the GPU when faiss-gpu sees a CUDA device")
    seed: int = Field(0, description="IVF training sample and k-means")

    def resolve_index_type(self, n: int) -> str:
        """The index a store of ``n`` rows gets."""
        if self.index_type == "auto":
            return "flat" if n <= self.exact_max else "ivf"
        return self.index_type

    def resolve_nlist(self, n: int) -> int:
        nlist = self.nlist if self.nlist is not None else min(self.nlist_max, max(1, round(4 * math.sqrt(n))))
        return int(max(1, min(nlist, n)))


class AdapterConfig(Section):
    """The memory adapter and its confidence-gated distillation from the teacher."""

    hidden: int = Field(64, ge=4, description="hidden width (narrowed to fit 5% of the backbone)")
    epochs: int = Field(20, ge=1)
    batch_size: int = Field(256, ge=1)
    lr: float = Field(3e-4, gt=0)
    weight_decay: float = Field(0.01, ge=0)
    patience: int = Field(3, ge=1, description="epochs without a better validation pinball before stopping")
    beta_min: float = Field(0.2, ge=0, le=1, description="teacher weight at confidence 0")
    beta_span: float = Field(0.6, ge=0, le=1, description="added teacher weight at confidence 1")
    anchor: float = Field(0.3, ge=0, description="pull of the median to the backbone's when unconfident")
    crossing: float = Field(0.05, ge=0, description="penalty on crossing quantiles")


class FusionConfig(Section):
    """q = q_backbone + alpha * (q_adapter - q_backbone), alpha chosen on validation."""

    alpha_grid: list[float] = Field(default_factory=lambda: [round(0.1 * i, 1) for i in range(11)])

    @field_validator("alpha_grid")
    @classmethod
    def _grid_in_unit_interval(cls, v: list[float]) -> list[float]:
        if not v or any(a < 0 or a > 1 for a in v):
            raise ValueError("alpha_grid needs values in [0, 1]")
        return sorted(set(v))


class FinetuneConfig(Section):
    """Full fine-tuning of a backbone copy: scored next to the fused model, never served."""

    max_steps: int = Field(0, ge=0, description="optimizer steps; 0 = no fine-tuning")
    batch_size: int = Field(64, ge=1)
    lr: float = Field(1e-4, ge=0, description="peak learning rate (AdamW, betas 0.9/0.95)")
    weight_decay: float = Field(0.01, ge=0, description="on matrices only")
    warmup_steps: int = Field(20, ge=0)
    schedule: Literal["cosine", "constant"] = Field("cosine", description="after warm-up")
    min_lr_ratio: float = Field(0.1, ge=0, le=1)
    eval_every: int = Field(50, ge=1, description="steps between validation scores (and the last step)")
    patience: int = Field(3, ge=1, description="validations in a row without improvement before stopping")
    seed: int = 0
    grad_clip: float | None = Field(1.0, description="global gradient norm; None or 0 = no clipping")
    val_metric: Literal["sCRPS", "pinball"] = Field("sCRPS", description="selected on")
    eval_batch_size: int = Field(256, ge=1)


MAX_BACKBONE_CONTEXT = 2048  # 128 patches of 16: the longest context pre-training draws


class OnboardingConfig(Section):
    """The frozen backbone's view of the domain and each stage's settings."""

    context_length: int = Field(
        64,
        ge=8,
        description="points of history of each datastore window: what the "
        "teacher, the adapter and the fused model see (longer costs a backbone pass "
        "over that many points per window)",
    )
    backbone_context: int | None = Field(
        None,
        ge=8,
        description="points of history the frozen backbone family "
        "reads; None: the context the backbone was trained on (its card), at "
        f"most {MAX_BACKBONE_CONTEXT}",
    )
    stride: int = Field(1, ge=1, description="between datastore windows")
    batch_size: int = Field(256, ge=1, description="series per backbone forward pass")
    seed: int = Field(0, description="adapter initialisation and batch order")
    teacher: TeacherConfig = TeacherConfig()
    adapter: AdapterConfig = AdapterConfig()
    fusion: FusionConfig = FusionConfig()
    finetune: FinetuneConfig = FinetuneConfig()
