"""A weighted ensemble of a domain's forecasters: each member forecasts, the quantiles are
averaged level by level with the weights chosen on validation (``evaluation.ensemble``).

A weighted mean of sorted quantile vectors is sorted, so levels never cross. Neural members
(fused, backbone) share one backbone: it is saved once and handed to each of them, and a
server that already holds that backbone version loads only ``PARTS_WITHOUT_BACKBONE``.

Folder: ``ensemble.json`` (members: family -> kind and weight; horizon), ``backbone/`` (only
with a neural member) and ``members/<family>/`` (each member's own folder without its backbone).
"""

from __future__ import annotations

import importlib
import json
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from models.forecasting.kinds import ENSEMBLE_MEMBER_KINDS as MEMBER_KINDS
from models.forecasting.kinds import KINDS
from models.forecasting.types import QuantileForecast

CONFIG_FILE, BACKBONE_DIR, MEMBERS_DIR = "ensemble.json", "backbone", "members"
PARTS_WITHOUT_BACKBONE = (CONFIG_FILE, MEMBERS_DIR)


def _member_class(kind: str) -> Any:
    if kind not in MEMBER_KINDS:
        raise ValueError(f"an ensemble cannot hold a {kind!r} forecaster; it may hold {', '.join(MEMBER_KINDS)}")
    module, cls = KINDS[kind]
    return getattr(importlib.import_module(module), cls)


class EnsembleForecaster:
    """``members``: family -> forecaster; ``weights``: family -> weight (positive, summing to 1)."""

    def __init__(
        self,
        members: Mapping[str, object],
        weights: Mapping[str, float],
        kinds: Mapping[str, str],
        horizon: int | None = None,
    ):
        if set(members) != set(weights) or not members:
            raise ValueError(f"one weight per member is required: members {sorted(members)}, weights {sorted(weights)}")
        total = float(sum(weights.values()))
        if total <= 0 or any(w < 0 for w in weights.values()):
            raise ValueError(f"weights must be >= 0 with a positive sum: {dict(weights)}")
        self.members: dict[str, Any] = dict(members)
        self.weights = {f: float(w) / total for f, w in weights.items()}
        self.kinds = dict(kinds)
        self.horizon = int(horizon) if horizon else None  # None: any horizon (no neural member limits it)
        neural = [m.backbone for m in self.members.values() if getattr(m, "backbone", None) is not None]
        self.backbone = neural[0] if neural else None  # shared by every neural member

    def predict(
        self, contexts: Sequence[np.ndarray], horizon: int, ids: Sequence[str] | None = None
    ) -> QuantileForecast:
        if self.horizon is not None and not 1 <= horizon <= self.horizon:
            raise ValueError(f"horizon {horizon} is outside what this model was trained for (1..{self.horizon})")
        total = None
        for family, member in self.members.items():
            q = np.asarray(member.predict(contexts, horizon, ids=ids).quantiles, np.float64) * self.weights[family]
            total = q if total is None else total + q
        assert total is not None  # __init__ refuses an ensemble without members
        return QuantileForecast(total.astype(np.float32))

    # --------------------------------------------------------------- folder
    @staticmethod
    def assemble(
        out: str | Path,
        members: Mapping[str, tuple[str, str | Path]],
        weights: Mapping[str, float],
        horizon: int | None,
    ) -> Path:
        """Write an ensemble folder from saved member folders (``family -> (kind, folder)``) without
        loading them: the first neural member's ``backbone/`` is copied once, every member's folder
        without it. Members of one onboarding share that backbone."""
        out = Path(out)
        shutil.rmtree(out, ignore_errors=True)
        (out / MEMBERS_DIR).mkdir(parents=True)
        for family, (kind, folder) in members.items():
            _member_class(kind)
            folder = Path(folder)
            has_backbone = (folder / BACKBONE_DIR).is_dir() and kind != "statistical"
            if has_backbone and not (out / BACKBONE_DIR).exists():
                shutil.copytree(folder / BACKBONE_DIR, out / BACKBONE_DIR)
            shutil.copytree(folder, out / MEMBERS_DIR / family, ignore=shutil.ignore_patterns(BACKBONE_DIR))
        config = {
            "members": {f: {"kind": k, "weight": float(weights[f])} for f, (k, _) in members.items()},
            "horizon": horizon,
        }
        (out / CONFIG_FILE).write_text(json.dumps(config, indent=2))
        return out

    @classmethod
    def load(cls, directory: str | Path, device: str = "cpu", backbone: object = None) -> EnsembleForecaster:
        """``backbone``: one already in memory (its folder then need not be there)."""
        directory = Path(directory)
        config = json.loads((directory / CONFIG_FILE).read_text())
        kinds = {f: m["kind"] for f, m in config["members"].items()}
        if backbone is None and any(k != "statistical" for k in kinds.values()):
            from models.backbone.io import load_backbone

            backbone = load_backbone(directory / BACKBONE_DIR, map_location=device)
        members = {}
        for family, kind in kinds.items():
            loader = _member_class(kind).load
            folder = directory / MEMBERS_DIR / family
            members[family] = (
                loader(folder, device=device)
                if kind == "statistical"
                else loader(folder, device=device, backbone=backbone)
            )
        return cls(members, {f: m["weight"] for f, m in config["members"].items()}, kinds, config.get("horizon"))

    def save(self, directory: str | Path) -> Path:
        """Each member saved, then the folder ``assemble`` writes (the backbone once)."""
        with tempfile.TemporaryDirectory(prefix="tsfm-ensemble-") as tmp:
            saved = {f: (self.kinds[f], m.save(Path(tmp) / f)) for f, m in self.members.items()}
            return self.assemble(directory, saved, self.weights, self.horizon)
