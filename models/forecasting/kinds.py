"""The kinds of registered forecaster and where each one's code lives.

Modules are named, not imported: a registered model ships (and the pyfunc imports) only
the module of its own kind and what that imports.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

# kind -> (module, class). "adapter" is the fused forecaster with alpha 1 (the adapter fully applied).
KINDS: dict[str, tuple[str, str]] = {
    "backbone": ("models.forecasting.backbone", "BackboneForecaster"),
    "teacher": ("models.forecasting.teacher", "TeacherForecaster"),
    "adapter": ("models.forecasting.fused", "FusedForecaster"),
    "fused": ("models.forecasting.fused", "FusedForecaster"),
    "statistical": ("models.forecasting.statistical", "StatisticalForecaster"),
    "ensemble": ("models.forecasting.ensemble", "EnsembleForecaster"),
}
# the families a domain's champion may come from, and the kind of registered model each one is
FAMILIES: dict[str, str] = {
    "fused": "fused",
    "backbone": "backbone",
    "seasonal_naive": "statistical",
    "auto_ets": "statistical",
    "theta": "statistical",
    "mstl": "statistical",
    "teacher": "teacher",
    "ensemble": "ensemble",
}
NEURAL = ("fused", "backbone", "teacher")  # the families that run a backbone (served processes share it)
HORIZON_BOUND = ("fused", "teacher")  # families that forecast at most the horizon they were fitted for
ENSEMBLE = "ensemble"  # the family whose versions combine the others (models.forecasting.ensemble)
ENSEMBLE_MEMBER_KINDS = ("fused", "backbone", "statistical", "teacher")  # what an ensemble may hold
PROTOCOL_MODULE = "models.forecasting.protocol"
# next to a registered forecaster's own files: freq, default/max horizon, domain (all a server needs)
SERVING_FILE = "serving.json"


def forecaster_module(kind: str) -> str:
    if kind not in KINDS:
        raise ValueError(f"unknown forecaster kind {kind!r}; known: {', '.join(KINDS)}")
    return KINDS[kind][0]


def forecaster_modules(kind: str) -> list[str]:
    """Every module a registered model of ``kind`` imports by name: an ensemble loads its members'."""
    kinds = [kind] + (list(ENSEMBLE_MEMBER_KINDS) if kind == ENSEMBLE else [])
    return list(dict.fromkeys(forecaster_module(k) for k in kinds))


def load_forecaster(kind: str, directory: str | Path, device: str = "cpu") -> Any:
    """The forecaster of ``kind`` saved in ``directory``."""
    module = importlib.import_module(forecaster_module(kind))
    return getattr(module, KINDS[kind][1]).load(directory, device=device)
