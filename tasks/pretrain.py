"""Pre-training as units of work: build the train-only corpus, run the trainer as its own
process, log and register the backbone; point ``backbone@champion`` at it.

The trainer runs as ``python -m models.pretraining`` in a subprocess (never inside the flow
process), launched by ``infra/trainer.py``; the backbone's MLflow run, registration and ``--init``
are ``tracking/backbones.py``'s, its gate ``evaluation/backbone_gate.py``'s.
"""

from __future__ import annotations

import hashlib
import json

import mlflow
from prefect import task

from evaluation.backbone_gate import gate_backbone
from infra.code_version import cached_digest
from infra.logs import run_logger
from infra.settings import PretrainParams, Settings
from infra.trainer import run_trainer, trainer_command, trainer_job
from store.corpus import build_corpus, store_versions
from tracking import registry
from tracking.backbones import ensure_backbone, register_backbone, registered_uri, resolve_init, start_or_resume_run
from tracking.datasets import log_store_input
from tracking.retries import remote_retries

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
    registered = registered_uri(out_dir / "registered.json", settings)
    if registered:
        run_logger().info("pre-training %s already done and registered: %s", key, registered)
        return registered
    corpus = build_corpus(store_dirs, out_dir / "corpus", settings.onboard.val_origins)
    data_version = ",".join(f"{d}:{v[:12]}" for d, v in sorted(corpus["data_versions"].items()))

    registry.use_experiment("pretrain", settings)
    shape = shape_label(params, init_dir)
    # what and how long, readable in the run list: pretrain-4m-2000steps, pretrain-4m-150steps-from-shipped
    run_name = f"pretrain-{shape}-{params.max_steps}steps" + (f"-from-{_origin(init_name)}" if init_name else "")
    with start_or_resume_run(out_dir / "mlflow_run_id", run_name) as run:
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
        version = register_backbone(params.model_copy(update={"preset": shape}), out_dir, data_version, run.info.run_id)
    registered = registry.versioned_uri("backbone", version)
    (out_dir / "registered.json").write_text(json.dumps({"uri": registered, "tracking_uri": settings.tracking_uri}))
    return registered


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
