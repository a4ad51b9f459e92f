"""Pre-training as units of work: build the train-only corpus, run the trainer as its own
process, log and register the backbone; point ``backbone@champion`` at it.

The trainer runs as ``python -m models.pretraining`` in a subprocess (never inside the flow
process): Lightning's DDP re-launches the current script per device, which inside a Prefect
flow would start extra flow runs. Its job (``models.pretraining.spec.TrainerJob``) is the
settings' ``PretrainParams`` plus the corpus files and the run folder, passed as the flags
generated from that same model.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from collections import deque
from pathlib import Path

import mlflow
import numpy as np
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException
from prefect import task

from evaluation.gate import beats
from infra.code_version import REPO, cached_digest
from infra.errors import NotFoundError
from infra.logs import run_logger
from infra.settings import DEFAULT_BACKBONE, PretrainParams, Settings
from models.pretraining.spec import TrainerJob, TrainingRecipe
from store.corpus import build_corpus, store_versions
from tracking import registry
from tracking.datasets import log_store_input
from tracking.model_logging import log_forecaster
from tracking.retries import remote_retries

TRAINER = "models.pretraining"
TRAINER_CODE = ("models.pretraining.train", "store.corpus")  # what a trained backbone comes from


def run_key(params: PretrainParams, data_versions: dict[str, str], val_origins: int | None = 1) -> str:
    """Stable id of a training run: the same params on the same data (train parts cut before
    ``val_origins`` validation windows) with the same trainer code -> the same run folder (a
    crashed attempt resumes there)."""
    data = data_versions if val_origins == 1 else {**data_versions, "_val_origins": val_origins}
    blob = json.dumps(
        {"params": params.model_dump(mode="json"), "data": data, "code": cached_digest(TRAINER_CODE)}, sort_keys=True
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def trainer_job(
    params: PretrainParams, corpus: dict[str, Path], out_dir: Path, run_id: str | None, tracking_uri: str | None
) -> TrainerJob:
    """``corpus``: domain -> Parquet file; one data file per domain, weights in the same order."""
    recipe = params.model_dump(include=set(TrainingRecipe.model_fields))
    weights = [params.domain_weights.get(d, 1.0) for d in corpus] if params.domain_weights else None
    logging_to = {"mlflow_run_id": run_id, "mlflow_tracking_uri": tracking_uri} if run_id and tracking_uri else {}
    # absolute paths: the trainer runs from the repository; resume continues an earlier attempt's checkpoint
    return TrainerJob(
        **recipe,
        data=[str(Path(p).resolve()) for p in corpus.values()],
        data_weights=weights,
        out=str(out_dir.resolve()),
        resume=True,
        **logging_to,
    )


def trainer_command(job: TrainerJob) -> list[str]:
    return [sys.executable, "-m", TRAINER, *job.to_argv()]


def run_trainer(cmd: list[str], log_file: Path) -> None:
    """Run the trainer, streaming its output to our log and a file; raise with its tail on failure."""
    tail: deque[str] = deque(maxlen=40)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    logger = run_logger()
    with (
        open(log_file, "a") as fh,
        subprocess.Popen(  # a resumed attempt appends
            cmd,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
            cwd=REPO,
        ) as proc,
    ):
        for line in proc.stdout:
            fh.write(line)
            tail.append(line.rstrip())
            logger.info("trainer | %s", line.rstrip())
        code = proc.wait()
    if code != 0:
        raise RuntimeError(f"trainer exited with {code}; last lines:\n" + "\n".join(tail))


def pretrain_backbone(params: PretrainParams, store_dirs: list[str], settings: Settings) -> str:
    """Returns the registered backbone URI ``models:/backbone/<version>``.

    Resumable: the run folder is keyed by (params, data versions, trainer code). A re-run after a crash
    continues the trainer from its last checkpoint in the same MLflow run; after a finished
    run (metrics.json written) training is skipped; after a registered one, its URI is returned.
    """
    if not store_dirs:
        raise ValueError("pre-training needs at least one ingested store")
    init_dir, init_name = resolve_init(params.init, settings)
    # the key names what training starts from (a version, not a download folder)
    key = run_key(
        params.model_copy(update={"init": init_name}), store_versions(store_dirs), settings.onboard.val_origins
    )
    out_dir = settings.run_dir("pretrain", key)
    registered = _registered_uri(out_dir / "registered.json", settings)
    if registered:
        run_logger().info("pre-training %s already done and registered: %s", key, registered)
        return registered
    corpus = build_corpus(store_dirs, out_dir / "corpus", settings.onboard.val_origins)
    data_version = ",".join(f"{d}:{v[:12]}" for d, v in sorted(corpus["data_versions"].items()))

    registry.use_experiment("pretrain", settings)
    shape = shape_label(params, init_dir)
    # what and how long, readable in the run list: pretrain-4m-2000steps, pretrain-4m-150steps-from-shipped
    run_name = f"pretrain-{shape}-{params.max_steps}steps" + (f"-from-{_origin(init_name)}" if init_name else "")
    with _start_or_resume_run(out_dir / "mlflow_run_id", run_name) as run:
        mlflow.log_params(
            {
                **registry.flat_params(params.model_dump(exclude={"domains", "domain_weights"})),
                "domains": ",".join(params.domains),
                "domain_weights": ",".join(f"{d}:{params.domain_weights.get(d, 1.0)}" for d in corpus["files"]),
                "corpus_rows": corpus["rows"],
                "corpus_series": corpus["series"],
                "run_key": key,
            }
        )
        mlflow.set_tags({"data_version": data_version, "git_commit": registry.git_commit()})
        for store in store_dirs:  # one input per domain, digest = DVC's md5 of its store
            log_store_input(store, context="training")
        if (out_dir / "metrics.json").is_file():
            run_logger().info("pre-training %s already finished: skipping the trainer", key)
        else:
            job_params = params.model_copy(update={"init": init_dir})
            cmd = trainer_command(
                trainer_job(job_params, corpus["files"], out_dir, run.info.run_id, settings.tracking_uri)
            )
            run_logger().info("starting trainer: %s", " ".join(cmd))
            run_trainer(cmd, out_dir / "trainer.log")
        version = _register_backbone(
            params.model_copy(update={"preset": shape}), out_dir, data_version, run.info.run_id
        )
    registered = registry.versioned_uri("backbone", version)
    (out_dir / "registered.json").write_text(json.dumps({"uri": registered, "tracking_uri": settings.tracking_uri}))
    return registered


def _register_backbone(params: PretrainParams, out_dir: Path, data_version: str, run_id: str) -> str:
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


def _start_or_resume_run(id_file: Path, run_name: str):
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


def _registered_uri(path: Path, settings: Settings) -> str | None:
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


SHIPPED_TAG = "shipped_default"


def ensure_backbone(settings: Settings, backbone_uri: str = DEFAULT_BACKBONE) -> str:
    """``backbone_uri``, after registering the shipped backbone as ``backbone`` v1 @champion when the
    default is asked for and this registry has no champion yet (a fresh clone onboards at once)."""
    registry.configure(settings)
    try:
        registry.resolve(backbone_uri)
        return backbone_uri
    except NotFoundError:
        if backbone_uri != DEFAULT_BACKBONE:
            raise
    from models.backbone.io import CARD_FILE, load_backbone, shipped_backbone
    from models.forecasting.backbone import BackboneForecaster

    shipped = shipped_backbone()
    if shipped is None:
        raise NotFoundError(
            f"{backbone_uri}: no backbone registered and none shipped in this checkout; "
            "pre-train one first: tsfm pretrain (or tsfm demo)"
        )
    card = json.loads((shipped / CARD_FILE).read_text()) if (shipped / CARD_FILE).is_file() else {}
    registry.use_experiment("pretrain", settings)
    with mlflow.start_run(run_name="shipped-default-backbone"):
        mlflow.log_params({f"card.{k}": v for k, v in card.items() if isinstance(v, (int, float, str))})
        model_dir = BackboneForecaster(load_backbone(shipped), int(card.get("context_length", 512))).save(
            settings.run_dir("pretrain", "shipped", "forecaster")
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
                SHIPPED_TAG: "true",
                "preset": card.get("preset"),
                "git_commit": card.get("commit"),
                "data_version": "shipped",
            },
            description="the backbone shipped with tsfm (models/backbone/shipped/MODEL_CARD.md), registered on "
            "first use",
            result_id="shipped-" + str(card.get("commit", "unknown")),
        )
    registry.set_alias("backbone", "champion", version)
    run_logger().info("registered the shipped backbone as backbone v%s @champion", version)
    return backbone_uri


def _origin(init_name: str) -> str:
    """shipped | v<version> | folder: what a continued run starts from, for its run name."""
    if init_name.startswith("models:/"):
        return "v" + init_name.rstrip("/").rsplit("/", 1)[-1]
    return init_name if init_name == "shipped" else "folder"


def shape_label(params: PretrainParams, init_dir: str | None) -> str:
    """The preset name of what is trained: the recipe's, or the shape of the backbone it continues."""
    if not init_dir:
        return params.preset
    from models.backbone.presets import preset_name

    return preset_name(params.model_copy(update={"init": init_dir}).backbone_config())  # the saved shape


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


MAX_GATE_WINDOWS = 2000  # per store: the gate's validation windows, an even subsample of larger stores


def backbone_val_score(backbone_dir: Path, store_dirs: list[str], settings: Settings) -> float:
    """Mean scaled CRPS of one backbone over the validation windows of ``store_dirs`` (the rolling
    origins onboarding would validate on; never a test window), at the context onboarding would give it."""
    from models.backbone.io import load_backbone
    from models.forecasting.backbone import trained_context
    from models.forecasting.batch import batch_forecast
    from models.memory.onboarding import backbone_context
    from models.metrics import per_series_metrics
    from store.canonical import read_split

    backbone, scores = load_backbone(backbone_dir), []
    context = backbone_context(settings.onboard, trained_context(backbone_dir))
    for store in store_dirs:
        split, _ = read_split(store, origins=settings.onboard.val_origins)
        w = split.windows("val")
        pick = np.unique(np.linspace(0, len(w) - 1, min(len(w), MAX_GATE_WINDOWS)).round().astype(int))
        q = batch_forecast(backbone, [w.contexts[i] for i in pick], split.horizon, context).quantiles
        scores.append(
            per_series_metrics(
                q, w.truth[pick], [split.train[w.series[i]] for i in pick], split.seasons[w.series[pick]]
            )["sCRPS"]
        )
    return float(np.nanmean(np.concatenate(scores)))


def gate_backbone(new_uri: str, store_dirs: list[str], settings: Settings) -> dict:
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


pretrain_backbone_task = task(pretrain_backbone, name="pretrain")
gate_backbone_task = task(gate_backbone, name="gate-backbone", **remote_retries())
ensure_backbone_task = task(ensure_backbone, name="ensure-backbone", **remote_retries())


@task(name="set-backbone-alias", **remote_retries())
def set_backbone_alias_task(model_uri: str, settings: Settings, alias: str = "champion") -> str:
    """Point ``backbone@<alias>`` at a freshly registered version; returns its versioned URI."""
    registry.configure(settings)
    name, version = registry.resolve(model_uri)
    registry.set_alias(name, alias, version)
    return model_uri
