"""Launching the backbone trainer: ``python -m models.pretraining`` in its own process (never inside
the flow process: Lightning's DDP re-launches the current script per device, which inside a Prefect
flow would start extra flow runs). Its job (``models.pretraining.spec.TrainerJob``) is the settings'
``PretrainParams`` plus the corpus files and the run folder, passed as the flags generated from that
same model."""

from __future__ import annotations

import os
import subprocess
import sys
from collections import deque
from pathlib import Path

from infra.code_version import REPO
from infra.logs import run_logger
from infra.settings import PretrainParams
from models.pretraining.spec import TrainerJob, TrainingRecipe

TRAINER = "models.pretraining"


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
