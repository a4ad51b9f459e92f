"""Onboard one domain onto a frozen backbone (TS-Memory), pure: no tracking, no I/O.

Order of work, and what each step may see:
  1. fit (``_fit``): receives the train parts and the validation windows only.
     train windows -> backbone embeddings + forecasts -> kNN datastore -> teacher
     targets for the training windows (overlapping rows excluded) -> adapter distilled
     with early stopping on validation -> alpha chosen on validation -> (for comparison
     only) a fully fine-tuned copy of the backbone, early-stopped on the same validation.
     Validation is every series' rolling origins (``SeriesSplit.windows("val")``), pooled.
  2. forecast (``_forecast_all``): only once the adapter and alpha are final are the
     test targets read; test contexts are train + validation.
Test targets never reach step 1: it is handed the train and validation parts, not the split.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from models.backbone.network import PatchBackbone
from models.forecasting.batch import batch_forecast
from models.forecasting.fused import FusedForecaster
from models.forecasting.inputs import left_pad
from models.forecasting.teacher import TeacherForecaster
from models.forecasting.types import BackboneForecast
from models.memory.adapter import AdapterShape, MemoryAdapter, adapter_forecast, fit_hidden
from models.memory.config import MAX_BACKBONE_CONTEXT, OnboardingConfig
from models.memory.datastore import BackboneEmbedder, array_chunks, build_datastore
from models.memory.distill import DistillSet, train_adapter
from models.memory.finetune import finetune_backbone
from models.memory.fusion import choose_alpha
from models.memory.result import OnboardingResult, PartForecasts
from models.memory.teacher import KnnTeacher
from models.memory.windows import Windows as DatastoreWindows
from models.memory.windows import overlapping_rows, sliding_windows
from models.splits import SeriesSplit, Windows


def min_context(context_length: int, horizon: int, align_points: int) -> int:
    """Shortest context a datastore window may have: enough for the level alignment
    and at least one horizon, so short series still contribute windows."""
    return min(context_length, max(align_points, horizon))


def backbone_context(cfg: OnboardingConfig, trained_context: int | None) -> int:
    """Points of history the backbone family reads: the setting, else what the backbone was
    trained on, capped at MAX_BACKBONE_CONTEXT; never shorter than the datastore's windows."""
    chosen = cfg.backbone_context or min(trained_context or cfg.context_length, MAX_BACKBONE_CONTEXT)
    return max(chosen, cfg.context_length) if cfg.backbone_context is None else chosen


def short_windows(
    train_parts: list[np.ndarray], c: int, h: int, series_h: np.ndarray, stride: int, min_ctx: int
) -> DatastoreWindows:
    """Datastore windows for train parts shorter than a context plus a horizon (a long horizon on
    short series): half of each part as context at most, the rest as a future NaN-padded to ``h``.
    The teacher then knows the first steps only and the backbone answers the others."""
    lengths = np.array([len(x) for x in train_parts])
    ctx = max(1, min(min_ctx, int(lengths.max()) // 2))
    future = np.clip(lengths - ctx, 1, series_h)
    return sliding_windows(train_parts, c, h, stride, ctx, min_future=future)


def onboard(
    backbone: PatchBackbone,
    split: SeriesSplit,
    cfg: OnboardingConfig,
    device: str = "cpu",
    trained_context: int | None = None,
) -> OnboardingResult:
    """Fit on ``split``'s train and validation parts, then forecast validation and test.

    Models forecast ``split.horizon`` (the longest own horizon); every truth array is
    NaN-padded past a series' own horizon (NaN = no target, which losses and metrics skip).
    The backbone family reads ``backbone_context(cfg, trained_context)`` points; the datastore,
    adapter and fused model ``cfg.context_length``.
    """
    timings: dict[str, float] = {}
    fit = _fit(backbone, split.train, split.windows("val"), split.horizons, cfg, device, timings)
    fit.backbone_context = backbone_context(cfg, trained_context)
    t = time.perf_counter()
    val = _forecast_all(fit, split.history("val"), cfg, device, timings, "val")
    timings["val_forecasts"] = time.perf_counter() - t

    # Fitting is final; only now are the test targets looked at.
    t = time.perf_counter()
    test = _forecast_all(fit, split.history("test"), cfg, device, timings, "test")
    timings["test_forecasts"] = time.perf_counter() - t
    return OnboardingResult(
        split=split,
        alpha=fit.alpha,
        alpha_table=fit.alpha_table,
        history=fit.history,
        val=val,
        test=test,
        n_windows=fit.teacher.size,
        timings=timings,
        teacher_confidence={"train": fit.conf_train, "val": fit.conf_val},
        finetune_history=fit.finetune_history,
        adapter_parameters=fit.adapter.n_parameters(),
        backbone_parameters=sum(p.numel() for p in backbone.parameters()),
        fused=fit.fused,
        teacher_forecaster=fit.teacher_forecaster,
        finetuned=fit.finetuned,
        backbone_context=fit.backbone_context,
    )


@dataclass
class _Fit:
    teacher: KnnTeacher
    adapter: MemoryAdapter
    fused: FusedForecaster
    teacher_forecaster: TeacherForecaster
    alpha: float
    alpha_table: list[dict[str, Any]]
    history: list[dict[str, Any]]
    conf_train: float
    conf_val: float
    finetuned: PatchBackbone | None = None
    backbone_context: int = 0  # set by ``onboard`` before forecasting
    finetune_history: list[dict[str, Any]] = field(default_factory=list)


def _fit(
    backbone: PatchBackbone,
    train_parts: list[np.ndarray],  # per series, train part only
    val: Windows,  # the validation windows: contexts and targets
    series_h: np.ndarray,  # [N] each series' own horizon; the models forecast H = max
    cfg: OnboardingConfig,
    device: str,
    timings: dict[str, float],
) -> _Fit:
    """Everything that is learned or selected. Sees train and validation, nothing else."""
    c, h = cfg.context_length, int(series_h.max())
    min_ctx = min_context(c, int(series_h.min()), cfg.teacher.align_points)

    t = time.perf_counter()
    mixed = bool((series_h != h).any())
    win = sliding_windows(train_parts, c, h, cfg.stride, min_ctx, min_future=series_h if mixed else None)
    if len(win) < 2:  # train parts too short for a whole horizon after a context: shorter futures, NaN-padded
        win = short_windows(train_parts, c, h, series_h, cfg.stride, min_ctx)
    if len(win) < 1:
        raise ValueError(
            f"only {len(win)} training windows: train parts are too short for horizon {h} and min context {min_ctx}"
        )
    timings["windows"] = time.perf_counter() - t

    # one backbone pass gives the datastore keys and the adapter's inputs; the store is
    # built chunk by chunk (exact index up to exact_max windows, IVF past it; GPU when present)
    t = time.perf_counter()
    embed = BackboneEmbedder(backbone, h, cfg.batch_size, device, keep=True)
    teacher = build_datastore(
        embed, array_chunks(win.context, win.future), cfg.teacher, n_windows=len(win), timings=timings
    )
    base_tr = embed.outputs(teacher.keys)
    timings["embed_train"] = timings.get("embed_s", 0.0)  # the backbone's share of the build
    timings["teacher_build"] = time.perf_counter() - t - timings["embed_train"]

    t = time.perf_counter()
    t_tr = teacher.query(base_tr.embedding, win.context, exclude=overlapping_rows(win, h))
    timings["teacher_train_targets"] = time.perf_counter() - t

    t = time.perf_counter()
    base_val = batch_forecast(backbone, val.contexts, h, c, batch_size=cfg.batch_size, device=device)
    t_val = teacher.query(base_val.embedding, left_pad(val.contexts, c))
    val_truth = val.truth  # NaN past a series' own horizon
    timings["val_queries"] = time.perf_counter() - t

    t = time.perf_counter()
    adapter = _new_adapter(backbone, h, cfg)
    train = DistillSet.from_numpy(
        embedding=base_tr.embedding,
        base=base_tr.norm_quantiles,
        y=base_tr.normalise(win.future),
        teacher=_to_backbone_space(t_tr.quantiles, base_tr),
        confidence=t_tr.confidence,
    )
    val_set = DistillSet.from_numpy(
        embedding=base_val.embedding, base=base_val.norm_quantiles, y=base_val.normalise(val_truth)
    )
    history = train_adapter(adapter, train, val_set, cfg.adapter, cfg.seed)
    timings["adapter_train"] = time.perf_counter() - t

    t = time.perf_counter()
    q_mem_val = base_val.denormalise(
        adapter_forecast(adapter, base_val.embedding, base_val.norm_quantiles, cfg.batch_size)
    )
    alpha, table = choose_alpha(base_val.quantiles, q_mem_val, val_truth, cfg.fusion.alpha_grid)
    fused = FusedForecaster(backbone, adapter, alpha, c, h, device=device, batch_size=cfg.batch_size)
    timings["alpha"] = time.perf_counter() - t

    # the parametric alternative, for the comparison table: same windows, same validation
    finetuned: PatchBackbone | None
    ft_history: list[dict[str, Any]]
    finetuned, ft_history = None, []
    if cfg.finetune.max_steps > 0:
        t = time.perf_counter()
        finetuned, ft_history = finetune_backbone(backbone, win, val.contexts, val_truth, h, c, cfg.finetune, device)
        timings["finetune"] = time.perf_counter() - t

    return _Fit(
        teacher=teacher,
        adapter=adapter,
        fused=fused,
        teacher_forecaster=TeacherForecaster(backbone, teacher, c, h, device=device, batch_size=cfg.batch_size),
        alpha=alpha,
        alpha_table=table,
        history=history,
        conf_train=float(t_tr.confidence.mean()),
        conf_val=float(t_val.confidence.mean()),
        finetuned=finetuned,
        finetune_history=ft_history,
    )


def _new_adapter(backbone: PatchBackbone, horizon: int, cfg: OnboardingConfig) -> MemoryAdapter:
    """At most 5% of the backbone's parameters: narrower than asked where the default would not fit."""
    bc = backbone.config
    n_backbone = sum(p.numel() for p in backbone.parameters())
    hidden = fit_hidden(bc.d_model, horizon, bc.n_quantiles, n_backbone, cfg.adapter.hidden)
    with torch.random.fork_rng(devices=[]):  # seeded init without touching the caller's RNG
        torch.manual_seed(cfg.seed)
        return MemoryAdapter(AdapterShape(bc.d_model, horizon, hidden=hidden))


def _forecast_all(
    fit: _Fit, contexts: list[np.ndarray], cfg: OnboardingConfig, device: str, timings: dict[str, float], part: str
) -> PartForecasts:
    """Forecasts of the final, servable objects (what gets registered is what is scored).

    Records each model's wall time in ``timings`` as ``latency_<part>_<model>`` (seconds for
    all N series, in batches of ``cfg.batch_size``): the comparison table's latency column.
    """
    h = fit.fused.horizon

    def backbone_of(model: PatchBackbone) -> Callable[[], np.ndarray]:
        return lambda: batch_forecast(model, contexts, h, fit.backbone_context, cfg.batch_size, device).quantiles

    predictors: dict[str, Callable[[], np.ndarray]] = {
        "backbone": backbone_of(fit.fused.backbone),
        "teacher": lambda: fit.teacher_forecaster.predict(contexts, h).quantiles,
        "fused": lambda: fit.fused.predict(contexts, h).quantiles,
    }
    if fit.finetuned is not None:
        predictors["finetuned"] = backbone_of(fit.finetuned)
    out = {}
    for name, predict in predictors.items():
        t = time.perf_counter()
        out[name] = np.asarray(predict(), np.float32)
        timings[f"latency_{part}_{name}"] = time.perf_counter() - t
    return PartForecasts(**out)


def _to_backbone_space(q_teacher: np.ndarray, base: BackboneForecast) -> np.ndarray:
    """Teacher quantiles (raw) in the backbone's normalised space; a query with no retrievable
    neighbour (at a step) gets the backbone's own quantiles there (alignment is then a no-op)."""
    q = base.normalise(q_teacher)
    # elementwise: a step no neighbour's future reaches (short series' windows are NaN-padded)
    missing = np.isnan(q)
    q[missing] = base.norm_quantiles[missing]
    return q
