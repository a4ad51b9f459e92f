"""Helpers shared by the benchmark scripts in this folder (tables, JSON, corpora, machine info)."""

from __future__ import annotations

import json
import math
import os
import platform
import re
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # scripts run as `python benchmarks/x.py` from anywhere
    sys.path.insert(0, str(REPO))


def machine() -> dict:
    import torch

    info = {
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }
    try:
        info["loadavg_1min"] = round(os.getloadavg()[0], 2)  # other work on the machine skews figures
    except OSError:
        pass
    return info


def warn_if_busy() -> None:
    """Timings on a machine that other work keeps busy are slower and far noisier: say so."""
    try:
        load = os.getloadavg()[0]
    except OSError:
        return
    if load > 0.5 * (os.cpu_count() or 1):
        print(
            f"warning: the machine is busy (1-min load average {load:.1f} on {os.cpu_count()} cores); "
            "timings will be slow and noisy",
            flush=True,
        )


def fmt(value, spec: str = "") -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if isinstance(value, str):
        return value
    return format(value, spec)


def markdown_table(rows: list[dict], columns: list[tuple[str, str, str]]) -> str:
    """columns: (key, header, format spec)."""
    from reports.tables import pipe_table

    return pipe_table([h for _, h, _ in columns], ([fmt(row.get(k), spec) for k, _, spec in columns] for row in rows))


def failed_requests(rows: list[dict], where: str) -> int:
    """A benchmark whose requests failed measures nothing: say so on stderr and return the exit
    code to leave with (1), so no ratio or table is printed from errors; 0 when none failed."""
    failed = sum(int(r.get("errors") or 0) for r in rows)
    if failed:
        total = sum(int(r.get("requests") or 0) for r in rows)
        print(f"error: {failed} of {total} requests failed (see {where}); no figure is reported", file=sys.stderr)
        return 1
    return 0


def store_horizon(data: Path, domain: str) -> int:
    """The horizon the domain was ingested with (its store's meta.json): what its models forecast."""
    from infra.errors import NotFoundError
    from store.canonical import read_meta

    try:
        return int(read_meta(Path(data) / "store" / domain).get("horizon") or 6)
    except NotFoundError as e:
        raise SystemExit(f"error: {e}") from None


def use_work_dir(work: Path) -> None:
    """Point tsfm (settings, MLflow, Prefect) in this process and its children at ``work``, quietly."""
    os.environ.update(
        TSFM_PATHS__STATE_DIR=str(work / "state"),
        TSFM_PATHS__DATA_DIR=str(work / "data"),
        TSFM_MLFLOW__TRACKING_URI=f"sqlite:///{(work / 'mlflow.db').resolve()}",
        PREFECT_HOME=str(work / "prefect"),
        PREFECT_LOGGING_LEVEL="WARNING",
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR="false",
    )


def write_json(path: str | None, payload: dict) -> None:
    if path:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(json.dumps(payload, indent=2, default=str))
        print(f"wrote {path}")


def median(values: list[float]) -> float:
    s = sorted(values)
    n = len(s)
    return s[n // 2] if n % 2 else 0.5 * (s[n // 2 - 1] + s[n // 2])


def kernelsynth_frame(n_series: int, length: int, seed: int):
    """KernelSynth series with single-threaded BLAS: its many small Cholesky/eigh calls run
    several times slower with threaded BLAS on a busy machine."""
    import contextlib

    from models.pretraining.synthetic import kernelsynth

    try:
        from threadpoolctl import threadpool_limits

        limit = threadpool_limits(1)
    except ImportError:
        limit = contextlib.nullcontext()
    with limit:
        return kernelsynth(n_series, length, seed)


def m3_train_frame():
    """M3's official training parts only (the test parts never enter a corpus), ids m3-<sn>."""
    import numpy as np
    import pandas as pd

    from store.sources import m3_json

    ids, ds, ys = [], [], []
    for s in m3_json().values():
        sn = s["sn"][0] if isinstance(s["sn"], list) else s["sn"]
        x = np.asarray(s["x"], dtype="float64")
        ids.append(np.full(len(x), f"m3-{sn}"))
        ds.append(np.arange(len(x), dtype=np.int64))
        ys.append(x)
    return pd.DataFrame({"unique_id": np.concatenate(ids), "ds": np.concatenate(ds), "y": np.concatenate(ys)})


def trainer_env(threads: int | None) -> dict:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env["PYTHONPATH"] = str(REPO) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    if threads:
        env["OMP_NUM_THREADS"] = env["MKL_NUM_THREADS"] = str(threads)
    return env


_HELP: list[str] = []


def trainer_supports(flag: str) -> bool:
    """Whether ``python -m models.pretraining`` takes ``flag`` (its --help, read once)."""
    if not _HELP:
        res = subprocess.run(
            [sys.executable, "-m", "models.pretraining", "--help"],
            cwd=REPO,
            env=trainer_env(None),
            capture_output=True,
            text=True,
            timeout=120,
        )
        _HELP.append(res.stdout)
    return flag in _HELP[0]


PROGRESS = re.compile(r"^step (\d+)/(\d+).*?tokens (\d+) elapsed ([0-9.]+)s")


def run_logged(cmd: list[str], log_path: Path, env: dict, echo: bool = True) -> tuple[int, float, list[tuple]]:
    """Runs cmd, writes its output to log_path, echoes progress/summary lines; returns
    (exit code, wall seconds, progress points (step, tokens, elapsed s) parsed from the trainer)."""
    started = time.perf_counter()
    points = []
    with open(log_path, "w") as log:
        proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for line in proc.stdout:
            log.write(line)
            m = PROGRESS.match(line)
            if m:
                points.append((int(m.group(1)), int(m.group(3)), float(m.group(4))))
            if echo and (m or line.startswith(("done:", "error", "Traceback"))):
                print("   ", line.rstrip()[:200], flush=True)
        rc = proc.wait()
    return rc, time.perf_counter() - started, points


def steady_rate(points: list[tuple]) -> float | None:
    """Tokens/s between the first and the last progress line (start-up, the first steps,
    final validation and saving left out); None with fewer than two lines."""
    if len(points) < 2 or points[-1][2] <= points[0][2]:
        return None
    return (points[-1][1] - points[0][1]) / (points[-1][2] - points[0][2])


def steady_seconds_per_step(log: Path) -> float:
    """Seconds per step between a trainer log's first and last progress lines: start-up, the first
    steps and the final validation and save left out (a whole-run average overstates the cost of
    a step by 20-80% on a short probe, and unevenly between variants)."""
    points = [(int(m.group(1)), float(m.group(4))) for m in map(PROGRESS.match, log.read_text().splitlines()) if m]
    (s0, t0), (s1, t1) = points[0], points[-1]
    return (t1 - t0) / (s1 - s0)


def trainer_command(job) -> list[str]:
    """``python -m models.pretraining`` with a ``TrainerJob``'s flags."""
    return [sys.executable, "-m", "models.pretraining", *job.to_argv()]


def run_trainer(cmd: list[str], log: Path, append: bool = False) -> None:
    """Runs the trainer with its output in ``log``; a failure names the log."""
    with open(log, "a" if append else "w") as f:
        rc = subprocess.run(cmd, cwd=REPO, env=trainer_env(None), stdout=f, stderr=subprocess.STDOUT).returncode
    if rc:
        raise SystemExit(f"trainer failed ({rc}); see {log}")


def run_threads(threads: list) -> float:
    """Start every thread, wait for all; returns the wall seconds."""
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return time.perf_counter() - t0
