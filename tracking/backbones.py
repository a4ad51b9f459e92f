"""Backbones in MLflow: a pre-training run's MLflow run (resumed with its run folder), registering its
backbone, what a run folder registered, the shipped backbone registered on first use, and what a
continued pre-training starts from (``--init``)."""

from __future__ import annotations

import json
from pathlib import Path

import mlflow
from mlflow.exceptions import MlflowException

from infra.errors import NotFoundError
from infra.logs import run_logger
from infra.settings import DEFAULT_BACKBONE, LONG_CONTEXT_BACKBONE, PretrainParams, Settings
from tracking import registry
from tracking.model_logging import log_forecaster

SHIPPED_TAG = "shipped_default"


def _shipped() -> dict[str, tuple[Path | None, str, str, str, str]]:
    from models.backbone.io import SHIPPED_LONG_DIR

    # alias URI -> (folder, None: models.backbone.io.SHIPPED_DIR at call time; alias; version tag; MLflow
    # run name; key of its run folder and registration)
    return {
        DEFAULT_BACKBONE: (None, "champion", SHIPPED_TAG, "shipped-default-backbone", "shipped"),
        LONG_CONTEXT_BACKBONE: (
            SHIPPED_LONG_DIR,
            "long-context",
            "shipped_long_context",
            "shipped-long-context-backbone",
            "shipped-long",
        ),
    }


def register_backbone(params: PretrainParams, out_dir: Path, data_version: str, run_id: str) -> str:
    """Log the trainer's metrics and log, wrap the weights as a backbone forecaster, register it."""
    from models.backbone.io import load_backbone
    from models.forecasting.backbone import BackboneForecaster

    metrics = json.loads((out_dir / "metrics.json").read_text())
    mlflow.log_metrics(
        {k: float(v) for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    )
    mlflow.log_artifact(str(out_dir / "trainer.log"))
    model_dir = BackboneForecaster(load_backbone(out_dir / "backbone"), params.context_length).save(
        out_dir / "forecaster"
    )
    uri = log_forecaster(
        "backbone",
        model_dir,
        {
            "kind": "backbone",
            "preset": params.preset,
            "default_horizon": params.horizon_length,
            "max_horizon": None,
            "freq": None,
        },
    )
    return registry.register(
        uri,
        "backbone",
        tags={
            "data_version": data_version,
            "git_commit": registry.git_commit(),
            "preset": params.preset,
            "val_loss": metrics.get("val_loss"),
            "run_id": run_id,
        },
        description=f"{params.preset} backbone, {metrics.get('steps')} steps, val loss {metrics.get('val_loss')}",
        result_id=f"pretrain-{out_dir.name}",
    )  # two processes finishing one run key register one version


def start_or_resume_run(id_file: Path, run_name: str) -> mlflow.ActiveRun:
    """The MLflow run of an earlier attempt of this run folder (so a resumed trainer keeps
    logging into it), else a new one whose id is remembered."""
    if id_file.is_file():
        try:
            return mlflow.start_run(run_id=id_file.read_text().strip())
        except MlflowException:
            pass  # deleted, or another tracking store: start afresh
    run = mlflow.start_run(run_name=run_name)
    id_file.parent.mkdir(parents=True, exist_ok=True)
    id_file.write_text(run.info.run_id)
    return run


def registered_uri(path: Path, settings: Settings) -> str | None:
    """The backbone this run folder registered, if that version is still in this registry."""
    if not path.is_file():
        return None
    done = json.loads(path.read_text())
    if done.get("tracking_uri") != settings.tracking_uri:
        return None
    registry.configure(settings)
    try:
        registry.resolve(done["uri"])
    except LookupError:
        return None
    return done["uri"]


def ensure_backbone(settings: Settings, backbone_uri: str = DEFAULT_BACKBONE) -> str:
    """``backbone_uri``, after registering a shipped backbone when one is asked for by its alias and this
    registry has none yet: the default as ``backbone`` v1 @champion (a fresh clone onboards at once), the
    long-context one as the next version @long-context."""
    registry.configure(settings)
    try:
        registry.resolve(backbone_uri)
        return backbone_uri
    except NotFoundError:
        if backbone_uri not in _shipped():
            raise
    from models.backbone.io import CARD_FILE, load_backbone, shipped_backbone
    from models.forecasting.backbone import BackboneForecaster

    folder, alias, tag, run_name, key = _shipped()[backbone_uri]
    shipped = shipped_backbone(folder)
    if shipped is None:
        raise NotFoundError(
            f"{backbone_uri}: no backbone registered and none shipped in this checkout; "
            "pre-train one first: tsfm pretrain (or tsfm demo)"
        )
    card = json.loads((shipped / CARD_FILE).read_text()) if (shipped / CARD_FILE).is_file() else {}
    registry.use_experiment("pretrain", settings)
    with mlflow.start_run(run_name=run_name):
        mlflow.log_params({f"card.{k}": v for k, v in card.items() if isinstance(v, (int, float, str))})
        model_dir = BackboneForecaster(load_backbone(shipped), int(card.get("context_length", 512))).save(
            settings.run_dir("pretrain", key, "forecaster")
        )
        uri = log_forecaster(
            "backbone",
            model_dir,
            {
                "kind": "backbone",
                "preset": card.get("preset", "shipped"),
                "default_horizon": card.get("horizon_length", 32),
                "max_horizon": None,
                "freq": None,
            },
        )
        version = registry.register(
            uri,
            "backbone",
            tags={
                tag: "true",
                "preset": card.get("preset"),
                "git_commit": card.get("commit"),
                "data_version": "shipped",
            },
            description=f"a backbone shipped with tsfm (models/backbone/{shipped.name}/MODEL_CARD.md), "
            "registered on first use",
            result_id=f"{key}-" + str(card.get("commit", "unknown")),
        )
    registry.set_alias("backbone", alias, version)
    run_logger().info("registered the backbone shipped in %s as backbone v%s @%s", shipped.name, version, alias)
    return backbone_uri


def resolve_init(init: str | None, settings: Settings) -> tuple[str | None, str | None]:
    """``init`` (``default``, a model URI or a saved backbone folder) -> (a local folder the trainer
    starts from, the stable name of what it is: ``shipped``, ``models:/backbone/<version>`` or the
    folder), so the run key does not follow a download folder."""
    if not init:
        return None, None
    if init == "default":
        from models.backbone.io import shipped_backbone

        shipped = shipped_backbone()
        if shipped is None:
            raise NotFoundError("--init default: this checkout ships no backbone (models/backbone/shipped/)")
        ensure_backbone(settings)  # registered first, so the gate weighs the continued run against it
        return str(shipped), "shipped"
    if init.startswith("models:/"):
        ensure_backbone(settings, init)
        registry.configure(settings)
        version, folder = registry.resolve_backbone(init)
        return str(folder), registry.versioned_uri("backbone", version)
    return init, init
