"""Start, probe and stop model servers as subprocesses.

Two servers speak the scoring protocol (``POST /invocations``,
``dataframe_split``, ``params``): tsfm's own (``python -m serving``: every domain in one
process, one backbone, hot reload on alias moves) and MLflow's scoring server for one
domain (``mlflow models serve``: resolves the alias once at start-up, so a promotion
needs a restart; kept for comparison in the serving benchmark).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from infra.servers import free_port, wait_http
from infra.servers import stop as stop_server  # noqa: F401  (callers stop servers through here)
from infra.settings import Settings

REPO = Path(__file__).resolve().parent.parent


def server_command(domain: str, host: str, port: int, alias: str = "champion") -> list[str]:
    """MLflow's scoring server for ``forecaster-<domain>@<alias>``."""
    return [
        sys.executable,
        "-m",
        "mlflow",
        "models",
        "serve",
        "-m",
        f"models:/forecaster-{domain}@{alias}",
        "--host",
        host,
        "--port",
        str(port),
        "--workers",
        "1",
        "--env-manager",
        "local",
    ]


def server_env(settings: Settings) -> dict[str, str]:
    env = dict(os.environ)
    # `mlflow models serve` execs `uvicorn` from PATH: put this interpreter's bin first.
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["MLFLOW_TRACKING_URI"] = settings.tracking_uri
    env["MLFLOW_REGISTRY_URI"] = settings.tracking_uri
    env.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # keeps server logs readable
    return env


def start_server(
    domain: str,
    settings: Settings,
    host: str = "127.0.0.1",
    port: int = 0,
    alias: str = "champion",
    log_file: Path | None = None,
) -> tuple[subprocess.Popen, str]:
    """Start MLflow's scoring server in the background; returns the process and its base URL."""
    port = port or free_port(host)
    out = open(log_file, "w") if log_file else subprocess.DEVNULL
    proc = subprocess.Popen(
        server_command(domain, host, port, alias),
        env=server_env(settings),
        stdout=out,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    return proc, f"http://{host}:{port}"


def tsfm_server_command(
    host: str,
    port: int,
    domains: list[str] | None = None,
    alias: str = "champion",
    reload_interval_s: float | None = None,
) -> list[str]:
    """tsfm's multi-domain server (``python -m serving``); domains None/[]: every forecaster-* with the alias."""
    cmd = [sys.executable, "-m", "serving", "--host", host, "--port", str(port), "--alias", alias]
    if domains:
        cmd += ["--domains", ",".join(domains)]
    if reload_interval_s is not None:
        cmd += ["--reload-interval-s", str(reload_interval_s)]
    return cmd


def start_tsfm_server(
    settings: Settings,
    domains: list[str] | None = None,
    host: str = "127.0.0.1",
    port: int = 0,
    alias: str = "champion",
    log_file: Path | None = None,
    reload_interval_s: float | None = None,
    env: dict[str, str] | None = None,
) -> tuple[subprocess.Popen, str]:
    """Start tsfm's server in the background (same settings, TSFM_* environment included);
    returns the process and its base URL. ``env``: extra variables, e.g. ``TSFM_SERVE__TOKEN``."""
    port = port or free_port(host)
    full_env = {**server_env(settings), "TSFM_MLFLOW__TRACKING_URI": settings.tracking_uri, **(env or {})}
    # importable from any working directory, installed or not
    full_env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), full_env.get("PYTHONPATH")) if p)
    out = open(log_file, "w") if log_file else subprocess.DEVNULL
    proc = subprocess.Popen(
        tsfm_server_command(host, port, domains, alias, reload_interval_s),
        env=full_env,
        stdout=out,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    return proc, f"http://{host}:{port}"


def wait_ready(url: str, proc: subprocess.Popen, timeout: float = 120.0) -> None:
    """Wait until either server answers ``/ping``; fail early if it exits."""
    wait_http(f"{url}/ping", proc, timeout, "model server")


def request_body(context, horizon: int, domain: str | None = None) -> dict:
    """Scoring-protocol body from a long frame of context rows (``domain``: for tsfm's server)."""
    frame = context[["unique_id", "ds", "y"]].copy()
    if hasattr(frame["ds"], "dt"):
        frame["ds"] = frame["ds"].astype(str)
    params = {"horizon": int(horizon)} if domain is None else {"horizon": int(horizon), "domain": domain}
    rows = frame.astype(object).where(frame.notna(), None).values.tolist()  # missing y -> JSON null
    return {"dataframe_split": {"columns": list(frame.columns), "data": rows}, "params": params}
