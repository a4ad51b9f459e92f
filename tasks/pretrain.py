"""Pre-training as a unit of work: build the train-only corpus, run the trainer as
its own process, log and register the backbone.

The trainer runs as ``python -m models.pretrain`` in a subprocess (never inside
the flow process): Lightning's DDP re-launches the current script per device,
which inside a Prefect flow would start extra flow runs (STACK.md).
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
from mlflow.exceptions import MlflowException
from prefect import task

from infra.settings import PretrainParams, Settings
from models.splits import train_part
from tasks import tracking
from tasks.datasets import log_store_input
from tasks.logs import run_logger
from tasks.ingest import META_FILE, read_store, split_horizon
from tasks.model_logging import log_forecaster


def store_versions(store_dirs: list[str]) -> dict[str, str]:
    """domain -> data md5 of each store, from its meta.json (cheap: no data read)."""
    versions = {}
    for store in store_dirs:
        meta = json.loads((Path(store) / META_FILE).read_text())
        versions[meta["domain"]] = meta["md5"]
    return versions


def trainer_code_version() -> str:
    """Hash of the trainer's code (models/*.py): changed code means a new run, not a stale result."""
    digest = hashlib.sha256()
    for path in sorted((Path(__file__).resolve().parent.parent / "models").glob("*.py")):
        digest.update(path.name.encode() + path.read_bytes())
    return digest.hexdigest()


def run_key(params: PretrainParams, data_versions: dict[str, str]) -> str:
    """Stable id of a training run: the same params on the same data with the same trainer code
    -> the same run folder (a crashed attempt resumes there)."""
    blob = json.dumps({"params": params.model_dump(mode="json"), "data": data_versions,
                       "code": trainer_code_version()}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def build_corpus(store_dirs: list[str], out_dir: Path) -> dict:
    """One Parquet per domain in ``out_dir`` with the TRAIN parts of its store (never
    validation or test), so the trainer can weight domains; returns files, sizes, versions."""
    files, versions, rows, series = {}, {}, 0, 0
    out_dir.mkdir(parents=True, exist_ok=True)
    for store in store_dirs:
        df, meta = read_store(Path(store))
        domain = meta["domain"]
        part = train_part(df, split_horizon(store, meta))
        part = part.assign(unique_id=domain + "/" + part["unique_id"].astype(str))
        # the trainer only needs order within a series: integer steps avoid mixed ds types
        part["ds"] = part.groupby("unique_id").cumcount()
        files[domain] = out_dir / f"{domain}.parquet"
        # the run folder is keyed by the data versions, so an existing file is this same part:
        # leaving it untouched keeps its mtime and the trainer's memory-mapped cache of it on resume
        if not files[domain].is_file():
            tmp = files[domain].with_suffix(".tmp")
            part[["unique_id", "ds", "y"]].to_parquet(tmp, index=False)
            os.replace(tmp, files[domain])
        versions[domain] = meta["md5"]
        rows, series = rows + len(part), series + part["unique_id"].nunique()
    return {"files": files, "rows": rows, "series": series, "data_versions": versions}


def trainer_command(params: PretrainParams, corpus: dict[str, Path], out_dir: Path, run_id: str | None,
                    tracking_uri: str | None) -> list[str]:
    """``corpus``: domain -> Parquet file; one --data per domain, --data-weights in the same order."""
    cmd = [sys.executable, "-m", "models.pretrain"]
    for path in corpus.values():
        cmd += ["--data", str(Path(path).resolve())]  # absolute: the trainer runs from the repository
    if params.domain_weights:  # else the trainer mixes domains in proportion to their windows
        cmd += ["--data-weights", ",".join(str(params.domain_weights.get(d, 1.0)) for d in corpus)]
    cmd += [
        "--tsmixup-prob", str(params.tsmixup_prob), "--kernelsynth-prob", str(params.kernelsynth_prob),
        "--out", str(out_dir.resolve()), "--preset", params.preset,
        "--max-steps", str(params.max_steps), "--batch-size", str(params.batch_size),
        "--accumulate-grad-batches", str(params.accumulate_grad_batches),
        "--context-length", str(params.context_length), "--horizon-length", str(params.horizon_length),
        "--optimizer", params.optimizer, "--lr", str(params.lr),
        "--lr-reference-batch", str(params.lr_reference_batch), "--lr-scaling", params.lr_scaling,
        "--weight-decay", str(params.weight_decay), "--warmup-steps", str(params.warmup_steps),
        "--schedule", params.schedule, "--seed", str(params.seed),
        "--accelerator", params.accelerator, "--devices", params.devices, "--strategy", params.strategy,
        "--ddp-bucket-cap-mb", str(params.ddp_bucket_cap_mb), "--ddp-comm-hook", params.ddp_comm_hook,
        "--num-workers", str(params.num_workers),
        # continues OUT/checkpoints/last.ckpt when a previous attempt left one, else starts fresh
        "--resume",
    ]
    if params.precision:
        cmd += ["--precision", params.precision]
    if params.activation_checkpointing:
        cmd.append("--activation-checkpointing")
    if params.compile:
        cmd.append("--compile")
    if run_id and tracking_uri:
        cmd += ["--mlflow-tracking-uri", tracking_uri, "--mlflow-run-id", run_id]
    return cmd


def run_trainer(cmd: list[str], log_file: Path) -> None:
    """Run the trainer, streaming its output to our log and a file; raise with its tail on failure."""
    tail: deque[str] = deque(maxlen=40)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    logger = run_logger()
    with open(log_file, "a") as fh, subprocess.Popen(  # a resumed attempt appends
        cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
        cwd=Path(__file__).resolve().parent.parent,
    ) as proc:
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
    key = run_key(params, store_versions(store_dirs))
    out_dir = settings.run_dir("pretrain", key)
    registered = _registered_uri(out_dir / "registered.json", settings)
    if registered:
        run_logger().info("pre-training %s already done and registered: %s", key, registered)
        return registered
    corpus = build_corpus(store_dirs, out_dir / "corpus")
    data_version = ",".join(f"{d}:{v[:12]}" for d, v in sorted(corpus["data_versions"].items()))

    tracking.use_experiment("pretrain", settings)
    run_name = f"pretrain-{params.preset}-{params.max_steps}steps"  # what and how long, readable in the run list
    with _start_or_resume_run(out_dir / "mlflow_run_id", run_name) as run:
        mlflow.log_params({
            **params.model_dump(exclude={"domains", "domain_weights"}), "domains": ",".join(params.domains),
            "domain_weights": ",".join(f"{d}:{params.domain_weights.get(d, 1.0)}" for d in corpus["files"]),
        })
        mlflow.log_params({"corpus_rows": corpus["rows"], "corpus_series": corpus["series"], "run_key": key})
        mlflow.set_tags({"data_version": data_version, "git_commit": tracking.git_commit()})
        for store in store_dirs:  # one input per domain, digest = DVC's md5 of its store
            log_store_input(store, context="training")
        if (out_dir / "metrics.json").is_file():
            run_logger().info("pre-training %s already finished: skipping the trainer", key)
        else:
            cmd = trainer_command(params, corpus["files"], out_dir, run.info.run_id, settings.tracking_uri)
            run_logger().info("starting trainer: %s", " ".join(cmd))
            run_trainer(cmd, out_dir / "trainer.log")
        metrics = json.loads((out_dir / "metrics.json").read_text())
        mlflow.log_metrics({k: float(v) for k, v in metrics.items()
                            if isinstance(v, (int, float)) and not isinstance(v, bool)})
        mlflow.log_artifact(str(out_dir / "trainer.log"))
        model_dir = out_dir / "forecaster"
        _save_backbone_forecaster(out_dir / "backbone", model_dir, params.context_length)
        uri = log_forecaster(
            "backbone", model_dir,
            {"kind": "backbone", "preset": params.preset, "default_horizon": params.horizon_length,
             "max_horizon": None, "freq": None},
        )
        version = tracking.register(
            uri, "backbone",
            tags={"data_version": data_version, "git_commit": tracking.git_commit(),
                  "preset": params.preset, "val_loss": metrics.get("val_loss"), "run_id": run.info.run_id},
            description=f"{params.preset} backbone, {metrics.get('steps')} steps, val loss {metrics.get('val_loss')}",
        )
    registered = f"models:/backbone/{version}"
    (out_dir / "registered.json").write_text(json.dumps({"uri": registered, "tracking_uri": settings.tracking_uri}))
    return registered


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
    _, name, version = done["uri"].rsplit("/", 2)  # models:/<name>/<version>
    try:
        tracking.configure(settings).get_model_version(name, version)
    except MlflowException:
        return None
    return done["uri"]


def _save_backbone_forecaster(backbone_dir: Path, model_dir: Path, context_length: int) -> None:
    from models.backbone import load_backbone
    from models.backbone_forecaster import BackboneForecaster

    BackboneForecaster(load_backbone(backbone_dir), context_length).save(model_dir)


pretrain_task = task(pretrain_backbone, name="pretrain")
