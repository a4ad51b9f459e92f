"""Serving: MLflow's scoring server in front of a domain's ``champion``.

`mlflow models serve` gives the exact scoring protocol of DESIGN.md (``POST
/invocations``, ``dataframe_split``, ``params``). It resolves the alias once at
start-up, so a restart is needed after a promotion (STACK.md).
"""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import requests

from infra.settings import Settings


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def server_command(domain: str, host: str, port: int, alias: str = "champion") -> list[str]:
    return [
        sys.executable, "-m", "mlflow", "models", "serve",
        "-m", f"models:/fused-{domain}@{alias}",
        "--host", host, "--port", str(port), "--workers", "1", "--env-manager", "local",
    ]


def server_env(settings: Settings) -> dict[str, str]:
    env = dict(os.environ)
    # `mlflow models serve` execs `uvicorn` from PATH: put this interpreter's bin first.
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["MLFLOW_TRACKING_URI"] = settings.tracking_uri
    env["MLFLOW_REGISTRY_URI"] = settings.tracking_uri
    env.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # keeps server logs readable
    return env


def start_server(domain: str, settings: Settings, host: str = "127.0.0.1", port: int = 0,
                 alias: str = "champion", log_file: Path | None = None) -> tuple[subprocess.Popen, str]:
    """Start the scoring server in the background; returns the process and its base URL."""
    port = port or free_port(host)
    out = open(log_file, "w") if log_file else subprocess.DEVNULL
    proc = subprocess.Popen(server_command(domain, host, port, alias), env=server_env(settings),
                            stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    return proc, f"http://{host}:{port}"


def wait_ready(url: str, proc: subprocess.Popen, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"model server exited with code {proc.returncode} before it was ready")
        try:
            if requests.get(f"{url}/ping", timeout=2).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.5)
    raise TimeoutError(f"model server at {url} not ready after {timeout:.0f}s")


def stop_server(proc: subprocess.Popen) -> None:
    """Stop uvicorn and its worker (own process group)."""
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, 15)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)
            proc.wait()


def request_body(context, horizon: int) -> dict:
    """Scoring-protocol body from a long frame of context rows."""
    frame = context[["unique_id", "ds", "y"]].copy()
    if hasattr(frame["ds"], "dt"):
        frame["ds"] = frame["ds"].astype(str)
    return {"dataframe_split": {"columns": list(frame.columns), "data": frame.values.tolist()},
            "params": {"horizon": int(horizon)}}
