"""Pre-training as a unit of work: build the train-only corpus, run the trainer as
its own process, log and register the backbone.

The trainer runs as ``python -m models.pretrain`` in a subprocess (never inside
the flow process): Lightning's DDP re-launches the current script per device,
which inside a Prefect flow would start extra flow runs (STACK.md).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections import deque
from pathlib import Path

import mlflow
import pandas as pd
from prefect import task

from infra.settings import PretrainParams, Settings
from models.splits import train_part
from tasks import tracking
from tasks.logs import run_logger
from tasks.ingest import read_store
from tasks.model_logging import log_forecaster



def build_corpus(store_dirs: list[str], out_file: Path) -> dict:
    """Concatenate the TRAIN parts of the given stores (never validation or test)."""
    frames, versions = [], {}
    for store in store_dirs:
        df, meta = read_store(Path(store))
        part = train_part(df, int(meta["horizon"]))
        part = part.assign(unique_id=meta["domain"] + "/" + part["unique_id"].astype(str))
        # the trainer only needs order within a series: integer steps avoid mixed ds types
        part["ds"] = part.groupby("unique_id").cumcount()
        frames.append(part[["unique_id", "ds", "y"]])
        versions[meta["domain"]] = meta["md5"]
    corpus = pd.concat(frames, ignore_index=True)
    out_file.parent.mkdir(parents=True, exist_ok=True)
    corpus.to_parquet(out_file, index=False)
    return {"rows": len(corpus), "series": corpus["unique_id"].nunique(), "data_versions": versions}


def trainer_command(params: PretrainParams, corpus: Path, out_dir: Path, run_id: str | None,
                    tracking_uri: str | None) -> list[str]:
    cmd = [
        sys.executable, "-m", "models.pretrain",
        # absolute: the trainer runs with the repository as its working directory
        "--data", str(corpus.resolve()), "--out", str(out_dir.resolve()), "--preset", params.preset,
        "--max-steps", str(params.max_steps), "--batch-size", str(params.batch_size),
        "--context-length", str(params.context_length), "--horizon-length", str(params.horizon_length),
        "--lr", str(params.lr), "--weight-decay", str(params.weight_decay),
        "--warmup-steps", str(params.warmup_steps), "--seed", str(params.seed),
        "--accelerator", params.accelerator, "--devices", params.devices,
        "--strategy", params.strategy, "--num-workers", str(params.num_workers),
    ]
    if params.precision:
        cmd += ["--precision", params.precision]
    if run_id and tracking_uri:
        cmd += ["--mlflow-tracking-uri", tracking_uri, "--mlflow-run-id", run_id]
    return cmd


def run_trainer(cmd: list[str], log_file: Path) -> None:
    """Run the trainer, streaming its output to our log and a file; raise with its tail on failure."""
    tail: deque[str] = deque(maxlen=40)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    logger = run_logger()
    with open(log_file, "w") as fh, subprocess.Popen(
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
    """Returns the registered backbone URI ``models:/backbone/<version>``."""
    if not store_dirs:
        raise ValueError("pre-training needs at least one ingested store")
    out_dir = settings.run_dir("pretrain", time.strftime("%Y%m%d-%H%M%S"))
    corpus_file = out_dir / "corpus.parquet"
    corpus = build_corpus(store_dirs, corpus_file)
    data_version = ",".join(f"{d}:{v[:12]}" for d, v in sorted(corpus["data_versions"].items()))

    tracking.use_experiment("pretrain", settings)
    with mlflow.start_run(run_name=f"pretrain-{params.preset}") as run:
        mlflow.log_params({**params.model_dump(exclude={"domains"}), "domains": ",".join(params.domains)})
        mlflow.log_params({"corpus_rows": corpus["rows"], "corpus_series": corpus["series"]})
        mlflow.set_tags({"data_version": data_version, "git_commit": tracking.git_commit()})
        cmd = trainer_command(params, corpus_file, out_dir, run.info.run_id, settings.tracking_uri)
        run_logger().info("starting trainer: %s", " ".join(cmd))
        run_trainer(cmd, out_dir / "trainer.log")
        metrics = json.loads((out_dir / "metrics.json").read_text())
        mlflow.log_metrics({k: float(v) for k, v in metrics.items() if isinstance(v, (int, float))})
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
    return f"models:/backbone/{version}"


def _save_backbone_forecaster(backbone_dir: Path, model_dir: Path, context_length: int) -> None:
    from models.backbone import load_backbone
    from models.backbone_forecaster import BackboneForecaster

    BackboneForecaster(load_backbone(backbone_dir), context_length).save(model_dir)


pretrain_task = task(pretrain_backbone, name="pretrain")
