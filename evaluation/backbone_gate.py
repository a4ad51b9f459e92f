"""The backbone's gate: a new ``backbone`` version becomes ``champion`` only if it validates better
than the current champion on the same validation windows of its training stores (``beats``, the one
replacement rule of ``evaluation/gate.py``); otherwise it is ``challenger`` and its ``gate`` tag says why."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from mlflow import MlflowClient

from evaluation.gate import beats
from evaluation.scores import spread, validation_scrps
from infra.errors import NotFoundError
from infra.logs import run_logger
from infra.settings import DEFAULT_BACKBONE, LONG_CONTEXT_BACKBONE, OnboardParams, Settings
from models.memory.config import OnboardingConfig
from tracking import registry

MAX_GATE_WINDOWS = 2000  # per store: the gate's validation windows, an even subsample of larger stores


def _split_scores(backbone_dir: Path, splits: list[Any], cfg: OnboardingConfig) -> np.ndarray:
    """Scaled CRPS per validation window of each split, for one backbone at the context onboarding would
    give it (``cfg``: the onboarding settings)."""
    from models.backbone.io import load_backbone
    from models.forecasting.backbone import trained_context
    from models.forecasting.batch import batch_forecast
    from models.memory.onboarding import backbone_context

    backbone = load_backbone(backbone_dir)
    context = backbone_context(cfg, trained_context(backbone_dir))

    def predict(contexts: list[np.ndarray], _ids: list[str], horizon: int) -> np.ndarray:
        return np.asarray(batch_forecast(backbone, contexts, horizon, context).quantiles)

    return np.concatenate([validation_scrps(split, predict, at_most=MAX_GATE_WINDOWS) for split in splits])


def backbone_val_score(backbone_dir: Path, store_dirs: list[str], settings: Settings) -> float:
    """Mean scaled CRPS of one backbone over the validation windows of ``store_dirs`` (the rolling
    origins onboarding would validate on; never a test window), at the context onboarding would give it."""
    from store.canonical import read_split

    splits = [read_split(store, origins=settings.onboard.val_origins)[0] for store in store_dirs]
    return float(np.nanmean(_split_scores(backbone_dir, splits, settings.onboard)))


def choose_domain_backbone(
    params: OnboardParams, store_dir: str, backbone_uri: str, settings: Settings
) -> dict[str, str]:
    """The backbone one domain is adapted on: {"uri", "why"}. ``backbone_uri`` as given, except where it is
    the default (``backbone@champion``), the data are daily or finer and ``params.long_context_backbone``:
    then the shipped long-context backbone is scored beside it on the onboarding's own validation windows
    (never test) and is used only if it wins by the gate's one rule (``beats``: the margin, and the
    confidence over paired resamples of the series)."""
    from store.canonical import read_meta, read_split
    from store.frequency import daily_or_finer
    from tracking.backbones import ensure_backbone

    if backbone_uri != DEFAULT_BACKBONE:
        return {"uri": backbone_uri, "why": "asked for"}
    if not params.long_context_backbone or not daily_or_finer(read_meta(store_dir).get("freq")):
        why = "the default" + ("" if params.long_context_backbone else " (long_context_backbone is off)")
        return {"uri": backbone_uri, "why": why}
    try:
        ensure_backbone(settings, LONG_CONTEXT_BACKBONE)
    except NotFoundError:  # a checkout without models/backbone/shipped_long/
        return {"uri": backbone_uri, "why": "the default (no long-context backbone shipped in this checkout)"}
    champion, long = registry.resolve(DEFAULT_BACKBONE)[1], registry.resolve(LONG_CONTEXT_BACKBONE)[1]
    if champion == long:
        return {"uri": backbone_uri, "why": "the default, which is the long-context backbone"}
    split, _ = read_split(store_dir, params.horizon, params.season_length, params.series_horizons, params.val_origins)
    windows = split.windows("val")
    pick = spread(len(windows), MAX_GATE_WINDOWS)  # the windows _split_scores scores
    old = _split_scores(registry.resolve_backbone(DEFAULT_BACKBONE)[1], [split], params)
    new = _split_scores(registry.resolve_backbone(LONG_CONTEXT_BACKBONE)[1], [split], params)
    if not np.isfinite(new).any():
        return {"uri": backbone_uri, "why": "the default (the long-context backbone scored no validation window)"}
    verdict = beats(new, old, settings.promote.margin, settings.promote.confidence, windows.series[pick])
    mean = {k: float(np.nanmean(v)) if np.isfinite(v).any() else float("nan") for k, v in (("new", new), ("old", old))}
    scores = (
        f"validation sCRPS {mean['new']:.4f} (long-context v{long}) against {mean['old']:.4f} "
        f"(champion v{champion}) on the same {len(pick)} windows{verdict.sureness()}"
    )
    why = (f"the long-context backbone: {scores}" if verdict.wins else f"the default: {scores}") + (
        "" if verdict.wins else f" (the long-context one must win by {settings.promote.margin:.0%})"
    )
    run_logger().info("%s: backbone: %s", params.domain, why)
    return {"uri": LONG_CONTEXT_BACKBONE if verdict.wins else backbone_uri, "why": why}


def gate_backbone(new_uri: str, store_dirs: list[str], settings: Settings) -> dict[str, Any]:
    """``backbone@champion`` moves to ``new_uri`` only if it beats the current champion on the same
    validation windows by ``promote.margin`` (or there is none); otherwise the new version becomes
    ``challenger``. Domains are untouched either way: each registered forecaster carries its own
    backbone weights, so a domain moves to a new backbone only through its next onboarding's gate."""
    registry.configure(settings)
    new_version = registry.resolve(new_uri)[1]
    try:
        old_version = registry.resolve(DEFAULT_BACKBONE)[1]
    except NotFoundError:
        old_version = None
    if old_version in (None, new_version):
        registry.set_alias("backbone", "champion", new_version)
        reason = "the first backbone" if old_version is None else "already champion"
        return {
            "promoted": old_version is None,
            "champion": registry.versioned_uri("backbone", new_version),
            "reason": reason,
        }
    new = backbone_val_score(registry.resolve_backbone(new_uri)[1], store_dirs, settings)
    old = backbone_val_score(
        registry.resolve_backbone(registry.versioned_uri("backbone", old_version))[1], store_dirs, settings
    )
    margin = settings.promote.margin
    promoted = beats(new, old, margin).wins  # the gate's one replacement rule (evaluation.gate)
    verdict = (
        f"backbone v{new_version} val sCRPS {new:.4f} vs champion v{old_version} {old:.4f} on the same "
        f"validation windows: " + ("promoted" if promoted else f"kept v{old_version} (needs {margin:.0%} better)")
    )
    registry.set_alias("backbone", "champion" if promoted else "challenger", new_version)
    MlflowClient().set_model_version_tag("backbone", new_version, "gate", verdict)
    run_logger().info(verdict)
    champion = new_version if promoted else old_version
    return {
        "promoted": promoted,
        "champion": registry.versioned_uri("backbone", champion),
        "reason": verdict,
        "val_sCRPS": {"new": new, "champion": old},
    }
