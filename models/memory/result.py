"""What onboarding leaves behind: one folder, one class that writes and reads it.

Every reader (evaluation, registration, the promotion gate, reports, the cross-domain
comparison) goes through ``OnboardingResult``; no other code knows a file name in the folder.

    summary.json        the scalars, written last (its presence marks a complete result)
    split.npz           the domain's train / validation / test parts (``SeriesSplit``)
    forecasts.npz       quantiles of each model [windows, H, Q]: one window per (series, origin) on
                        validation, one per series on test (``SeriesSplit.windows``)
    alpha_table.csv     validation sCRPS of each fusion weight
    fused/ teacher/ adapter/ finetuned/   the forecasters onboarding fits (``models.forecasting``)
    backbone/ seasonal_naive/ auto_ets/ theta/ mstl/   the other candidates for the domain's champion
    evaluation files    <part>_metrics.csv|.txt, <part>_per_series.csv, plots, ensemble.json and
                        ensemble/ (the weighted ensemble of the candidates), baseline_notes.json
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple, cast

import numpy as np
import pandas as pd
from jaxtyping import Float

from models.splits import SeriesSplit

if TYPE_CHECKING:  # the forecasters import torch; reading a result folder's tables does not need them
    from models.backbone.network import PatchBackbone
    from models.forecasting.fused import FusedForecaster
    from models.forecasting.teacher import TeacherForecaster
    from models.memory.adapter import MemoryAdapter
    from models.memory.teacher import KnnTeacher

SUMMARY, SPLIT, FORECASTS, ALPHA_TABLE = "summary.json", "split.npz", "forecasts.npz", "alpha_table.csv"
BASELINE_NOTES = "baseline_notes.json"  # the evaluation's last file
ENSEMBLE_FILE = "ensemble.json"
MODELS = ("backbone", "teacher", "finetuned", "fused")  # forecasts an onboarding makes itself
PARTS = ("val", "test")
Q = Float[np.ndarray, "n horizon quantile"]


class PartForecasts(NamedTuple):
    """Raw-space quantiles of one part (validation or test) for each model onboarding makes."""

    backbone: Q
    teacher: Q
    fused: Q
    finetuned: Q | None = None  # only with fine-tuning on

    def items(self) -> list[tuple[str, Q]]:
        """(model, quantiles) of the models present, in ``MODELS`` order."""
        return [(m, getattr(self, m)) for m in MODELS if getattr(self, m) is not None]


@dataclass
class OnboardingResult:
    split: SeriesSplit
    alpha: float
    alpha_table: list[dict[str, Any]]  # [{"alpha", "sCRPS"}] on validation
    history: list[dict[str, Any]]  # adapter epochs; epoch 0 = untrained (= the backbone)
    val: PartForecasts
    test: PartForecasts
    n_windows: int
    timings: dict[str, float] = field(default_factory=dict)  # seconds per step, latency_<part>_<model>
    teacher_confidence: dict[str, float] = field(default_factory=dict)  # mean max weight per query set
    finetune_history: list[dict[str, Any]] = field(default_factory=list)
    adapter_parameters: int = 0
    backbone_parameters: int = 0
    backbone_context: int = 0  # points the backbone family reads (0: a result from before, = the fused model's)
    provenance: dict[str, Any] = field(
        default_factory=dict
    )  # filled by the caller: domain, store, backbone, data version
    # the fitted forecasters: set by ``onboard``, loaded from the folder on demand
    fused: FusedForecaster | None = field(default=None, repr=False)
    teacher_forecaster: TeacherForecaster | None = field(default=None, repr=False)
    finetuned: PatchBackbone | None = field(default=None, repr=False)
    folder: Path | None = None

    SCALARS = (
        "alpha",
        "alpha_table",
        "history",
        "n_windows",
        "timings",
        "teacher_confidence",
        "finetune_history",
        "adapter_parameters",
        "backbone_parameters",
        "backbone_context",
        "provenance",
    )

    @property
    def horizon(self) -> int:
        return self.split.horizon

    @property
    def teacher(self) -> KnnTeacher:
        """The kNN teacher (its datastore) of a result still in memory."""
        return cast("TeacherForecaster", self.teacher_forecaster).teacher

    @property
    def adapter(self) -> MemoryAdapter:
        """The memory adapter of a result still in memory."""
        return cast("FusedForecaster", self.fused).adapter

    def forecasts(self, part: str) -> PartForecasts:
        if part not in PARTS:
            raise ValueError(f"part must be one of {PARTS}, got {part!r}")
        return getattr(self, part)

    # ----------------------------------------------------------------- writing
    def save(self, folder: str | Path) -> Path:
        """Forecasters, arrays and tables; ``summary.json`` last, so a folder that has it is whole."""
        from models.forecasting.fused import FusedForecaster

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        if self.fused is not None:
            fused = self.fused
            fused.save(folder / "fused")
            # the adapter fully applied (alpha 1): registered on its own for comparison
            FusedForecaster(fused.backbone, fused.adapter, 1.0, fused.context_length, fused.horizon).save(
                folder / "adapter"
            )
        if self.teacher_forecaster is not None:
            self.teacher_forecaster.save(folder / "teacher")
        self._save_candidates(folder)
        if self.finetuned is not None:  # scored for comparison (and forgetting), never registered
            from models.backbone.io import save_backbone

            save_backbone(self.finetuned, folder / "finetuned" / "backbone")
        self.split.save(folder / SPLIT)
        arrays: dict[str, Any] = {f"{part}_{m}": q for part in PARTS for m, q in self.forecasts(part).items()}
        np.savez_compressed(folder / FORECASTS, **arrays)
        pd.DataFrame(self.alpha_table).to_csv(folder / ALPHA_TABLE, index=False)
        summary = {name: getattr(self, name) for name in self.SCALARS}
        summary.update(
            series=self.split.ids,
            skipped_series=self.split.skipped,
            horizon=self.horizon,
            val_origins={str(k): v for k, v in self.split.origin_counts().items()},
        )
        (folder / SUMMARY).write_text(json.dumps(summary, indent=2, default=float))
        self.folder = folder
        return folder

    def _save_candidates(self, folder: Path) -> None:
        """The other families a champion may come from: the frozen backbone alone (with its own,
        longer context) and the statistical models with each series' season."""
        from models.forecasting.backbone import BackboneForecaster
        from models.forecasting.statistical import STATISTICAL, StatisticalForecaster

        if self.fused is not None:
            BackboneForecaster(self.fused.backbone, self.backbone_context or self.fused.context_length).save(
                folder / "backbone"
            )
        seasons = dict(zip(self.split.ids, self.split.seasons.tolist()))
        default = int(np.bincount(self.split.seasons).argmax()) if len(self.split) else 1
        for model in STATISTICAL:
            StatisticalForecaster(model, default, seasons).save(folder / model)

    # ----------------------------------------------------------------- reading
    @staticmethod
    def is_complete(folder: str | Path) -> bool:
        return (Path(folder) / SUMMARY).is_file()

    @classmethod
    def load(cls, folder: str | Path) -> OnboardingResult:
        """Everything but the forecasters (``load_forecaster`` reads one when it is needed)."""
        folder = Path(folder)
        summary = json.loads((folder / SUMMARY).read_text())
        with np.load(folder / FORECASTS) as z:
            parts = {
                part: PartForecasts(**{m: z[f"{part}_{m}"] for m in MODELS if f"{part}_{m}" in z}) for part in PARTS
            }
        known = {f.name for f in fields(cls)}
        return cls(
            split=SeriesSplit.load(folder / SPLIT),
            val=parts["val"],
            test=parts["test"],
            folder=folder,
            **{k: v for k, v in summary.items() if k in known and k in cls.SCALARS},
        )

    def load_fused(self, device: str = "cpu") -> FusedForecaster:
        """The registered fused forecaster (``fused/``), loaded from the folder."""
        from models.forecasting.fused import FusedForecaster

        return self.fused if self.fused is not None else FusedForecaster.load(self.model_dir("fused"), device)

    def model_dir(self, kind: str) -> Path:
        """The saved forecaster of ``kind`` (fused, teacher, adapter, backbone, a statistical model's
        name) or ``finetuned/backbone``."""
        return self._folder() / ("finetuned/backbone" if kind == "finetuned" else kind)

    def summary_file(self) -> Path:
        return self._folder() / SUMMARY

    # evaluation's files, in the same folder
    def metrics_file(self, part: str, suffix: str = "csv") -> Path:
        return self._folder() / f"{part}_metrics.{suffix}"

    def per_series_file(self, part: str) -> Path:
        return self._folder() / f"{part}_per_series.csv"

    def plot_file(self, part: str, kind: str) -> Path:
        """``kind``: fan_chart or per_horizon."""
        return self._folder() / f"{part}_{kind}.png"

    def baseline_notes_file(self) -> Path:
        return self._folder() / BASELINE_NOTES

    def ensemble_file(self) -> Path:
        """The weighted ensemble of the candidates: weights, members, whether it is offered."""
        return self._folder() / ENSEMBLE_FILE

    def evaluation_timings_file(self) -> Path:
        """Seconds the evaluation spent per stage (statistical fits, ensemble, tables and plots)."""
        return self._folder() / "evaluation_timings.json"

    def stage_seconds(self) -> dict[str, float]:
        """Where an onboarding's time went, fitting and evaluation, by stage (what ``tsfm onboard`` prints)."""
        t = self.timings
        stages = {
            "teacher": t.get("windows", 0)
            + t.get("teacher_build", 0)
            + t.get("teacher_train_targets", 0)
            + t.get("val_queries", 0),
            "backbone_embeddings": t.get("embed_train", 0.0),
            "adapter": t.get("adapter_train", 0) + t.get("alpha", 0),
            "finetune": t.get("finetune", 0.0),
            "neural_forecasts": t.get("val_forecasts", 0) + t.get("test_forecasts", 0),
        }
        path = self.evaluation_timings_file()
        if path.is_file():
            stages.update(json.loads(path.read_text()))
        return {k: float(v) for k, v in stages.items()}

    def ensemble_record(self) -> dict[str, Any]:
        path = self.ensemble_file()
        return json.loads(path.read_text()) if path.is_file() else {"offered": False}

    def is_evaluated(self) -> bool:
        folder = self._folder()
        return all((folder / f).is_file() for f in (*(f"{p}_metrics.csv" for p in PARTS), BASELINE_NOTES))

    def report_files(self) -> list[Path]:
        """What goes into the MLflow run's report: tables, plots and the summary."""
        folder = self._folder()
        extra = [folder / ENSEMBLE_FILE] if (folder / ENSEMBLE_FILE).is_file() else []
        return (
            sorted(folder.glob("*.csv"))
            + sorted(folder.glob("*.png"))
            + sorted(folder.glob("*.txt"))
            + [folder / SUMMARY]
            + extra
        )

    def _folder(self) -> Path:
        if self.folder is None:
            raise ValueError("this result has not been saved to a folder yet")
        return self.folder
