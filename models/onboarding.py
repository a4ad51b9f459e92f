"""Onboard one domain onto a frozen backbone (TS-Memory), pure: no tracking, no I/O.

Order of work, and what each step may see:
  1. fit (``_fit``): receives the train parts and the validation parts only.
     train windows -> backbone embeddings + forecasts -> kNN datastore -> teacher
     targets for the training windows (own row excluded) -> adapter distilled with
     early stopping on validation -> alpha chosen on validation -> (for comparison only)
     a fully fine-tuned copy of the backbone, early-stopped on the same validation.
  2. evaluate (``_forecast_all``): only once the adapter and alpha are final are the
     test targets sliced out of the split; test contexts are train + validation.
Test targets never reach step 1: it is not handed the frame or the split.
"""
from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch

from models.adapter import AdapterConfig, MemoryAdapter, fit_hidden
from models.backbone import PatchBackbone
from models.datastore import BackboneEmbedder, array_chunks, build_datastore
from models.distill import to_tensors, train_adapter
from models.finetune import FinetuneConfig, finetune_backbone
from models.fused import FusedForecaster, TeacherForecaster, adapter_forecast, choose_alpha
from models.inference import batch_forecast
from models.splits import split_frame, to_arrays
from models.teacher import KnnTeacher, TeacherConfig
from models.windows import Windows, left_pad, sliding_windows


@dataclass
class OnboardResult:
    teacher: KnnTeacher
    adapter: MemoryAdapter
    fused: FusedForecaster
    teacher_forecaster: TeacherForecaster
    alpha: float
    alpha_table: list[dict]  # [{"alpha", "sCRPS"}] on validation
    history: list[dict]  # adapter epochs; epoch 0 = untrained (= backbone)
    series_ids: list[str]
    val_truth: np.ndarray  # [N, H]
    test_truth: np.ndarray  # [N, H]
    val_insample: list[np.ndarray]  # train parts (MASE scale, DESIGN.md)
    test_insample: list[np.ndarray]  # train parts too: the MASE scale never moves
    forecasts_val: dict[str, np.ndarray]  # name -> [N, H, Q] raw space
    forecasts_test: dict[str, np.ndarray]
    n_windows: int
    timings: dict[str, float] = field(default_factory=dict)  # seconds per step
    skipped_ids: list[str] = field(default_factory=list)  # too short for train + val + test
    teacher_confidence: dict[str, float] = field(default_factory=dict)  # mean max weight per query set
    finetuned: PatchBackbone | None = None  # full fine-tuning, for comparison only (cfg.finetune_steps)
    finetune_history: list[dict] = field(default_factory=list)
    horizons: np.ndarray | None = None  # [N] each series' own horizon (truths are NaN past it)
    horizon: int = 0  # what the models forecast: the longest of ``horizons``


def min_context(context_length: int, horizon: int, align_points: int) -> int:
    """Shortest context a datastore window may have: enough for the level alignment
    and at least one horizon, so short series still contribute windows."""
    return min(context_length, max(align_points, horizon))


def onboard(
    backbone: PatchBackbone,
    df: pd.DataFrame,
    cfg,
    device: str = "cpu",
    horizons: Mapping[str, int] | None = None,
) -> OnboardResult:
    """``df``: canonical store (unique_id, ds, y). ``cfg``: OnboardParams or any object with its fields.

    ``horizons``: each series' own horizon (M3 categories mix 6, 8 and 18). The models
    then forecast the longest, and every truth array is NaN-padded past a series' own
    horizon (NaN = no target, which every loss and metric skips). Without it every
    series uses ``cfg.horizon``.
    """
    timings: dict[str, float] = {}
    t = time.perf_counter()
    split = split_frame(df, horizons if horizons is not None else cfg.horizon)
    own = (lambda u: int(horizons[u])) if horizons is not None else (lambda u: int(cfg.horizon))
    train_all, val_all = to_arrays(split.train), to_arrays(split.val)
    ids = [u for u in sorted(set(train_all) | set(val_all)) if _usable(train_all, val_all, u, own(u))]
    skipped = sorted(set(to_arrays(df)) - set(ids))
    if not ids:
        raise ValueError(f"no series long enough for 2 * horizon ({cfg.horizon}) + 1 points")
    series_h = np.array([own(u) for u in ids], dtype=np.int64)
    horizon = int(series_h.max())
    train_parts = [train_all[u] for u in ids]
    val_parts = [val_all[u] for u in ids]
    timings["split"] = time.perf_counter() - t

    fit = _fit(backbone, train_parts, val_parts, series_h, cfg, device, timings)
    t = time.perf_counter()
    forecasts_val = _forecast_all(fit, train_parts, cfg, device, timings, "val")
    timings["val_forecasts"] = time.perf_counter() - t

    # Fitting is final; only now are the test targets looked at.
    t = time.perf_counter()
    test_all = to_arrays(split.test)
    test_truth = pad_right([test_all[u] for u in ids], horizon)
    test_contexts = [np.concatenate([a, b]) for a, b in zip(train_parts, val_parts)]
    forecasts_test = _forecast_all(fit, test_contexts, cfg, device, timings, "test")
    timings["test_forecasts"] = time.perf_counter() - t

    return OnboardResult(
        teacher=fit.teacher,
        adapter=fit.adapter,
        fused=fit.fused,
        teacher_forecaster=fit.teacher_forecaster,
        alpha=fit.alpha,
        alpha_table=fit.alpha_table,
        history=fit.history,
        series_ids=ids,
        val_truth=pad_right(val_parts, horizon),
        test_truth=test_truth,
        val_insample=train_parts,
        test_insample=train_parts,
        forecasts_val=forecasts_val,
        forecasts_test=forecasts_test,
        n_windows=fit.teacher.size,
        timings=timings,
        skipped_ids=skipped,
        teacher_confidence={"train": fit.conf_train, "val": fit.conf_val},
        horizons=series_h,
        horizon=horizon,
        finetuned=fit.finetuned,
        finetune_history=fit.finetune_history,
    )


def overlapping_rows(win: Windows, horizon: int) -> np.ndarray:
    """[N, E] datastore rows a training query may not retrieve: its own window and every
    window of the same series whose future overlaps its future (-1 padded).

    Dropping only the own row (the reference) lets a window shifted by one step hand
    back almost the query's own future, so the teacher looks far better on training
    queries than it can on validation and the adapter learns to over-trust it.
    """
    n = len(win)
    rows = np.arange(n)
    out = [rows]
    for shift in range(1, horizon):
        for sign in (-1, 1):
            other = rows + sign * shift
            ok = (other >= 0) & (other < n)
            other = np.where(ok, other, 0)
            same = ok & (win.series_index[other] == win.series_index) & (np.abs(win.end[other] - win.end) < horizon)
            out.append(np.where(same, other, -1))
    return np.stack(out, axis=1)


def _usable(train: dict, val: dict, uid: str, horizon: int) -> bool:
    return uid in train and uid in val and len(train[uid]) >= 1 and len(val[uid]) == horizon


def pad_right(parts: list[np.ndarray], horizon: int) -> np.ndarray:
    """[N, horizon] float32, each row NaN past its own length."""
    out = np.full((len(parts), horizon), np.nan, np.float32)
    for i, x in enumerate(parts):
        out[i, : len(x)] = x
    return out


@dataclass
class _Fit:
    teacher: KnnTeacher
    adapter: MemoryAdapter
    fused: FusedForecaster
    teacher_forecaster: TeacherForecaster
    alpha: float
    alpha_table: list[dict]
    history: list[dict]
    conf_train: float
    conf_val: float
    finetuned: PatchBackbone | None = None
    finetune_history: list[dict] = field(default_factory=list)


def _fit(
    backbone: PatchBackbone,
    train_parts: list[np.ndarray],  # per series, train part only
    val_parts: list[np.ndarray],  # per series, [h_i] validation targets
    series_h: np.ndarray,  # [N] each series' own horizon h_i; the models forecast H = max
    cfg,
    device: str,
    timings: dict[str, float],
) -> _Fit:
    """Everything that is learned or selected. Sees train and validation, nothing else."""
    c, h = cfg.context_length, int(series_h.max())
    min_ctx = min_context(c, int(series_h.min()), cfg.align_points)

    t = time.perf_counter()
    mixed = bool((series_h != h).any())
    win = sliding_windows(train_parts, c, h, cfg.stride, min_ctx, min_future=series_h if mixed else None)
    if len(win) < 2:
        raise ValueError(
            f"only {len(win)} training windows: train parts are too short for horizon {h} "
            f"and min context {min_ctx}"
        )
    timings["windows"] = time.perf_counter() - t

    # one backbone pass gives the datastore keys and the adapter's inputs; the store is
    # built chunk by chunk (exact index up to exact_max windows, IVF past it; GPU when present)
    t = time.perf_counter()
    tcfg = TeacherConfig(
        top_k_candidates=cfg.top_k_candidates, k=cfg.k, temperature=cfg.temperature, align_points=cfg.align_points,
        index_type=getattr(cfg, "index_type", "auto"), exact_max=getattr(cfg, "exact_max", 50_000), seed=cfg.seed,
    )
    embed = BackboneEmbedder(backbone, h, cfg.batch_size, device, keep=("quantiles", "norm_quantiles", "loc", "scale"))
    teacher = build_datastore(embed, array_chunks(win.context, win.future), tcfg, n_windows=len(win),
                              timings=timings)
    base_tr = {"embedding": np.asarray(teacher.keys), **embed.outputs()}
    timings["embed_train"] = timings.get("embed_s", 0.0)  # the backbone's share of the build
    timings["teacher_build"] = time.perf_counter() - t - timings["embed_train"]

    t = time.perf_counter()
    t_tr = teacher.query(base_tr["embedding"], win.context, exclude=overlapping_rows(win, h))
    timings["teacher_train_targets"] = time.perf_counter() - t

    t = time.perf_counter()
    base_val = batch_forecast(backbone, train_parts, h, c, batch_size=cfg.batch_size, device=device)
    t_val = teacher.query(base_val["embedding"], left_pad(train_parts, c))
    val_truth = pad_right(val_parts, h)  # [N, H], NaN past a series' own horizon
    timings["val_queries"] = time.perf_counter() - t

    t = time.perf_counter()
    # at most 5% of the backbone's parameters: a narrower adapter where the default would not fit
    d_model = base_tr["embedding"].shape[1]
    n_backbone = sum(p.numel() for p in backbone.parameters())
    hidden = fit_hidden(d_model, h, backbone.config.n_quantiles, n_backbone, cfg.adapter_hidden)
    with torch.random.fork_rng(devices=[]):  # seeded init without touching the caller's RNG
        torch.manual_seed(cfg.seed)
        adapter = MemoryAdapter(AdapterConfig(d_model, h, hidden=hidden))
    train = to_tensors(
        {
            "embedding": base_tr["embedding"],
            "base": base_tr["norm_quantiles"],
            "teacher": _to_backbone_space(t_tr.quantiles, base_tr),
            "y": _normalise(win.future, base_tr),
            "confidence": t_tr.confidence,
        }
    )
    val = to_tensors(
        {"embedding": base_val["embedding"], "base": base_val["norm_quantiles"], "y": _normalise(val_truth, base_val)}
    )
    history = train_adapter(adapter, train, val, cfg.epochs, cfg.batch_size, cfg.lr, cfg.patience, cfg.seed)
    timings["adapter_train"] = time.perf_counter() - t

    t = time.perf_counter()
    q_mem_norm = adapter_forecast(adapter, base_val["embedding"], base_val["norm_quantiles"], cfg.batch_size)
    q_mem_val = _denormalise(q_mem_norm, base_val)
    alpha, table = choose_alpha(base_val["quantiles"], q_mem_val, val_truth, cfg.alpha_grid)
    fused = FusedForecaster(backbone, adapter, alpha, c, h, device=device, batch_size=cfg.batch_size)
    timings["alpha"] = time.perf_counter() - t

    # the parametric alternative, for the comparison table: same windows, same validation
    finetuned, ft_history = None, []
    if getattr(cfg, "finetune_steps", 0) > 0:
        t = time.perf_counter()
        ft_cfg = FinetuneConfig(max_steps=cfg.finetune_steps, lr=cfg.finetune_lr, seed=cfg.seed)
        finetuned, ft_history = finetune_backbone(backbone, win, train_parts, val_truth, h, c, ft_cfg, device)
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


def _forecast_all(
    fit: _Fit, contexts: list[np.ndarray], cfg, device: str, timings: dict[str, float], part: str
) -> dict[str, np.ndarray]:
    """Forecasts [N, H, Q] of the final, servable objects (what gets registered is what is scored).

    Records each model's wall time in ``timings`` as ``latency_<part>_<model>`` (seconds for
    all N series, in batches of ``cfg.batch_size``): the comparison table's latency column.
    """
    h = fit.fused.horizon
    predictors = {
        "backbone": lambda: np.asarray(
            batch_forecast(fit.fused.backbone, contexts, h, cfg.context_length, cfg.batch_size, device)["quantiles"],
            np.float32,
        ),
        "teacher": lambda: fit.teacher_forecaster.predict(contexts, h),
        "fused": lambda: fit.fused.predict(contexts, h),
    }
    if fit.finetuned is not None:
        predictors["finetuned"] = lambda: np.asarray(
            batch_forecast(fit.finetuned, contexts, h, cfg.context_length, cfg.batch_size, device)["quantiles"],
            np.float32,
        )
    out = {}
    for name, predict in predictors.items():
        t = time.perf_counter()
        out[name] = predict()
        timings[f"latency_{part}_{name}"] = time.perf_counter() - t
    return out


def _normalise(x: np.ndarray, base: dict) -> np.ndarray:
    """Raw [N, H] or [N, H, Q] -> the backbone's normalised space of each query."""
    loc, scale = base["loc"], base["scale"]
    shape = (-1,) + (1,) * (x.ndim - 1)
    return ((x - loc.reshape(shape)) / scale.reshape(shape)).astype(np.float32)


def _denormalise(x: np.ndarray, base: dict) -> np.ndarray:
    shape = (-1,) + (1,) * (x.ndim - 1)
    return (x * base["scale"].reshape(shape) + base["loc"].reshape(shape)).astype(np.float32)


def _to_backbone_space(q_teacher: np.ndarray, base: dict) -> np.ndarray:
    """Teacher quantiles (raw) in the backbone's normalised space; a query with no
    retrievable neighbour (at a step) gets the backbone's own quantiles there (alignment is then a no-op)."""
    q = _normalise(q_teacher, base)
    # elementwise: a step no neighbour's future reaches (short series' windows are NaN-padded)
    missing = np.isnan(q)
    q[missing] = base["norm_quantiles"][missing]
    return q
