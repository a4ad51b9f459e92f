"""The backbone's gate: a new ``backbone`` version becomes ``champion`` only if it validates better
than the current champion on the same validation windows of its training stores (``beats``, the one
replacement rule of ``evaluation/gate.py``); otherwise it is ``challenger`` and its ``gate`` tag says why."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from mlflow import MlflowClient

from evaluation.gate import beats
from evaluation.scores import validation_scrps
from infra.errors import NotFoundError
from infra.logs import run_logger
from infra.settings import DEFAULT_BACKBONE, Settings
from tracking import registry

MAX_GATE_WINDOWS = 2000  # per store: the gate's validation windows, an even subsample of larger stores


def backbone_val_score(backbone_dir: Path, store_dirs: list[str], settings: Settings) -> float:
    """Mean scaled CRPS of one backbone over the validation windows of ``store_dirs`` (the rolling
    origins onboarding would validate on; never a test window), at the context onboarding would give it."""
    from models.backbone.io import load_backbone
    from models.forecasting.backbone import trained_context
    from models.forecasting.batch import batch_forecast
    from models.memory.onboarding import backbone_context
    from store.canonical import read_split

    backbone = load_backbone(backbone_dir)
    scores: list[np.ndarray] = []
    context = backbone_context(settings.onboard, trained_context(backbone_dir))

    def predict(contexts: list[np.ndarray], _ids: list[str], horizon: int) -> np.ndarray:
        return np.asarray(batch_forecast(backbone, contexts, horizon, context).quantiles)

    for store in store_dirs:
        split, _ = read_split(store, origins=settings.onboard.val_origins)
        scores.append(validation_scrps(split, predict, at_most=MAX_GATE_WINDOWS))
    return float(np.nanmean(np.concatenate(scores)))


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
