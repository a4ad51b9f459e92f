"""Running the `tsfm` CLI as separate processes against live servers (used by the integration tests)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import SMALL

DOMAIN = "m3-other"  # a source of SMALL

# small enough for 2 CPU cores: the demo fixture's sizes, without the fine-tuning comparison row
LIVE_SMALL = {**SMALL, "TSFM_ONBOARD__FINETUNE__MAX_STEPS": "0"}


def cli_env(servers: dict, root: Path) -> dict[str, str]:
    """tsfm pointed at the servers; data, state and Prefect home in ``root``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TSFM_", "PREFECT_", "MLFLOW_"))}
    env.update(LIVE_SMALL)
    env.update(
        {
            "TSFM_MLFLOW__TRACKING_URI": servers["mlflow"],
            # artifacts through the server's proxy (mlflow-artifacts:), not straight onto a local path
            "TSFM_MLFLOW__ARTIFACT_ROOT": "mlflow-artifacts:/",
            "TSFM_PATHS__DATA_DIR": str(root / "data"),
            "TSFM_PATHS__STATE_DIR": str(root / "state"),
            "TSFM_PARAMS": str(root / "no-params.yaml"),  # absent: schema defaults + env only
            "PREFECT_API_URL": servers["prefect_api"],
            "PREFECT_HOME": str(root / "prefect-client"),
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "PREFECT_LOGGING_LEVEL": "WARNING",
            "DVC_NO_ANALYTICS": "1",
            "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
            "MLFLOW_DISABLE_TELEMETRY": "true",
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        }
    )
    return env


def start_tsfm(args: list[str], env: dict[str, str], cwd: Path, name: str, out: bool = True) -> subprocess.Popen:
    """``tsfm <args> [--out results/<name>.json]`` in ``cwd``, its output in ``logs/<name>.log``."""
    (cwd / "logs").mkdir(exist_ok=True)
    (cwd / "results").mkdir(exist_ok=True)
    cmd = [sys.executable, "-m", "tsfm_cli.main", *args] + (["--out", f"results/{name}.json"] if out else [])
    with open(cwd / "logs" / f"{name}.log", "w") as log:
        return subprocess.Popen(cmd, env=env, cwd=cwd, stdout=log, stderr=subprocess.STDOUT)


def finish(proc: subprocess.Popen, cwd: Path, name: str, timeout: float = 300):
    """Wait for a tsfm command; its JSON result (the --out file, else all it printed), or a
    failure showing the log's tail."""
    try:
        code = proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        code = "timeout"
    log = (cwd / "logs" / f"{name}.log").read_text()
    assert code == 0, f"tsfm {name} exited with {code}:\n{log[-4000:]}"
    result = cwd / "results" / f"{name}.json"
    if result.is_file():
        return json.loads(result.read_text())
    # no --out: the indented JSON the command printed last (after any library warnings)
    lines = log.splitlines()
    start = max(i for i, line in enumerate(lines) if line == "{")
    return json.JSONDecoder().raw_decode("\n".join(lines[start:]))[0]


def run_tsfm(args: list[str], env: dict[str, str], cwd: Path, name: str, out: bool = True, timeout: float = 300):
    return finish(start_tsfm(args, env, cwd, name, out), cwd, name, timeout)
