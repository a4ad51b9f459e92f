"""Launch helpers for the scale-out servers on one machine: PostgreSQL, a real `mlflow server`,
a real `prefect server` and worker, a Dask scheduler and workers, each in its own process group,
bound to loopback.

Used by tests and benchmarks that must talk to servers rather than to the embedded
sqlite store / ephemeral Prefect API, and by anyone trying the cluster profile
without docker. Each helper returns the process and its base URL once it answers.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import requests

from infra.prefect_db import seed

LOOPBACK = "127.0.0.1"


def die_with_parent() -> None:
    """In a child, before exec: Linux sends it SIGTERM when its parent dies, even by SIGKILL, so no
    server outlives the command that started it (elsewhere: nothing; Ctrl-C and TERM still stop them)."""
    import ctypes

    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def ephemeral_prefect_dies_with_us() -> None:
    """Prefect's temporary API server (started for a flow run when no PREFECT_API_URL is set) outlives a
    SIGKILLed ``tsfm`` indefinitely; give it ``die_with_parent``. Prefect starts it with
    ``subprocess.Popen`` from its own module: that module alone gets a ``subprocess`` whose Popen adds
    the hook (nothing else in the process changes)."""
    import types

    from prefect.settings import get_current_settings

    if get_current_settings().api.url:  # a real Prefect server: no temporary one, and 2 s of import saved
        return
    from prefect.server.api import server as prefect_server

    if getattr(prefect_server.subprocess, "tsfm_dies_with_parent", False):
        return

    def popen(*args, **kwargs):
        kwargs.setdefault("preexec_fn", die_with_parent)
        return subprocess.Popen(*args, **kwargs)

    proxy = types.ModuleType("subprocess")
    proxy.__dict__.update(vars(subprocess))
    proxy.Popen, proxy.tsfm_dies_with_parent = popen, True
    prefect_server.subprocess = proxy


def free_port(host: str = LOOPBACK) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def _venv_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ)
    # the servers exec `uvicorn`/`gunicorn` from PATH: this interpreter's bin first
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env.update(extra or {})
    return env


def wait_http(url: str, proc: subprocess.Popen, timeout: float, what: str, log_file: Path | None = None) -> None:
    """Poll ``url`` until it answers 200; fail early (with the log's tail) if the process dies."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = log_file.read_text()[-2000:] if log_file and log_file.exists() else ""
            raise RuntimeError(f"{what} exited with code {proc.returncode} before it was ready\n{tail}")
        try:
            if requests.get(url, timeout=2).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.5)
    stop(proc)
    raise TimeoutError(f"{what} at {url} not ready after {timeout:.0f}s")


def _start(cmd: list[str], env: dict[str, str], log_file: Path) -> subprocess.Popen:
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with open(log_file, "w") as out:  # the child keeps its own descriptor
        return subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


def start_mlflow_server(
    root: Path,
    port: int = 0,
    timeout: float = 120.0,
    backend_uri: str | None = None,
    artifacts: str | None = None,
    env: dict[str, str] | None = None,
    workers: int = 1,
) -> tuple[subprocess.Popen, str]:
    """`mlflow server` with served artifacts; by default a sqlite store and artifacts under ``root``,
    or ``backend_uri`` (postgresql+psycopg2://...) and ``artifacts`` (s3://bucket/prefix)."""
    root.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    cmd = [
        sys.executable,
        "-m",
        "mlflow",
        "server",
        "--host",
        LOOPBACK,
        "--port",
        str(port),
        "--backend-store-uri",
        backend_uri or f"sqlite:///{(root / 'mlflow.db').resolve()}",
        "--artifacts-destination",
        artifacts or (root / "artifacts").resolve().as_uri(),
        "--serve-artifacts",
        "--workers",
        str(workers),
    ]
    log = root / "mlflow-server.log"
    # no usage telemetry from the server or the UI it serves (loopback only; nothing should call out)
    env = _venv_env(
        {
            "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
            "MLFLOW_DISABLE_TELEMETRY": "true",
            # the GenAI job runner (7 huey consumer processes) serves nothing tsfm uses
            "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
            **(env or {}),
        }
    )
    proc = _start(cmd, env, log)
    url = f"http://{LOOPBACK}:{port}"
    wait_http(f"{url}/health", proc, timeout, "mlflow server", log)
    return proc, url


def start_prefect_server(
    home: Path, port: int = 0, timeout: float = 120.0, database_url: str | None = None
) -> tuple[subprocess.Popen, str]:
    """`prefect server start` with its own PREFECT_HOME and sqlite database under ``home`` (or
    ``database_url``, postgresql+asyncpg://...); services (scheduler, triggers) run, so schedules
    and event triggers fire. Returns the API URL."""
    home.mkdir(parents=True, exist_ok=True)
    if database_url is None:
        seed(home / "prefect.db")
    port = port or free_port()
    env = _venv_env(
        {
            "PREFECT_HOME": str(home),
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "PREFECT_API_DATABASE_CONNECTION_URL": database_url
            or f"sqlite+aiosqlite:///{(home / 'prefect.db').resolve()}",
            "PREFECT_SERVER_UI_ENABLED": "false",
        }
    )
    env.pop("PREFECT_API_URL", None)  # the server must not point at itself as a client
    cmd = [sys.executable, "-m", "prefect", "server", "start", "--host", LOOPBACK, "--port", str(port), "--no-ui"]
    log = home / "prefect-server.log"
    proc = _start(cmd, env, log)
    api = f"http://{LOOPBACK}:{port}/api"
    wait_http(f"{api}/health", proc, timeout, "prefect server", log)
    return proc, api


def postgres_bin(name: str) -> Path:
    """A PostgreSQL program of Debian's package (``/usr/lib/postgresql/<major>/bin``), the newest major."""
    found = sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"), key=lambda p: int(p.parts[-3]))
    if not found:
        raise FileNotFoundError(
            f"PostgreSQL's {name} is not installed: `make install` installs Debian's "
            "postgresql package (or apt-get install postgresql)"
        )
    return found[-1]


def start_postgres(
    root: Path, databases: tuple[str, ...] = ("mlflow", "prefect"), port: int = 0, timeout: float = 60.0
) -> tuple[subprocess.Popen, str]:
    """A throwaway PostgreSQL cluster under ``root`` on loopback (trust authentication, user ``tsfm``)
    with ``databases`` created. Returns the server process and ``127.0.0.1:<port>``. PostgreSQL
    refuses to run as root: as root, the cluster belongs to the ``postgres`` system user."""
    import shutil

    root.mkdir(parents=True, exist_ok=True)
    data, sock = root / "pgdata", root / "sock"
    sock.mkdir(exist_ok=True)
    as_user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    if as_user:
        shutil.chown(root, "postgres")
        shutil.chown(sock, "postgres")
    port = port or free_port()
    log = root / "postgres.log"
    if not (data / "PG_VERSION").is_file():
        subprocess.run(
            [
                *as_user,
                str(postgres_bin("initdb")),
                "-D",
                str(data),
                "-U",
                "tsfm",
                "--auth=trust",
                "-E",
                "UTF8",
                "--no-instructions",
            ],
            check=True,
            capture_output=True,
            text=True,
        )
    cmd = [
        *as_user,
        str(postgres_bin("postgres")),
        "-D",
        str(data),
        "-p",
        str(port),
        "-k",
        str(sock),
        "-c",
        f"listen_addresses={LOOPBACK}",
        "-c",
        "fsync=off",
        "-c",
        "max_connections=200",
    ]
    proc = _start(cmd, _venv_env(), log)
    deadline = time.monotonic() + timeout
    while (
        subprocess.run(
            [str(postgres_bin("pg_isready")), "-h", LOOPBACK, "-p", str(port)], capture_output=True
        ).returncode
        != 0
    ):
        if proc.poll() is not None or time.monotonic() > deadline:
            stop(proc)
            raise RuntimeError(f"postgres did not start\n{log.read_text()[-2000:] if log.exists() else ''}")
        time.sleep(0.3)
    for db in databases:
        subprocess.run(
            [
                str(postgres_bin("psql")),
                "-h",
                LOOPBACK,
                "-p",
                str(port),
                "-U",
                "tsfm",
                "-d",
                "postgres",
                "-q",
                "-c",
                f"CREATE DATABASE {db}",
            ],
            check=True,
            capture_output=True,
            text=True,
        )
    return proc, f"{LOOPBACK}:{port}"


def start_dask_scheduler(root: Path, port: int = 0, timeout: float = 60.0) -> tuple[subprocess.Popen, str]:
    """`dask scheduler` on loopback (no dashboard). Returns the process and its tcp:// address."""
    port = port or free_port()
    log = root / "dask-scheduler.log"
    proc = _start(
        [
            sys.executable,
            "-m",
            "distributed.cli.dask_scheduler",
            "--host",
            LOOPBACK,
            "--port",
            str(port),
            "--no-dashboard",
        ],
        _venv_env(),
        log,
    )
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection((LOOPBACK, port), timeout=1).close()
            return proc, f"tcp://{LOOPBACK}:{port}"
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                stop(proc)
                raise RuntimeError(f"dask scheduler did not start\n{log.read_text()[-2000:]}") from None
            time.sleep(0.3)


def start_dask_worker(root: Path, address: str, name: str, env: dict[str, str] | None = None) -> subprocess.Popen:
    """One single-threaded `dask worker` process attached to ``address`` (it gets ``env``: the settings
    a chunk needs to load the champion and write the output)."""
    return _start(
        [
            sys.executable,
            "-m",
            "distributed.cli.dask_worker",
            address,
            "--name",
            name,
            "--nworkers",
            "1",
            "--nthreads",
            "1",
            "--no-dashboard",
        ],
        _venv_env({"OMP_NUM_THREADS": "1", **(env or {})}),
        root / f"dask-worker-{name}.log",
    )


def start_prefect_worker(
    root: Path, pool: str, env: dict[str, str], name: str = "tsfm-process-worker", cwd: Path | None = None
) -> subprocess.Popen:
    """A Prefect process worker polling ``pool`` (created if missing): it runs each flow run as a
    subprocess with ``env`` (the API URL and the settings)."""
    log = root / f"prefect-worker-{name}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "w") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "prefect", "worker", "start", "--pool", pool, "--type", "process", "--name", name],
            env=_venv_env(env),
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            cwd=cwd,
        )


def terminate(proc: subprocess.Popen) -> None:
    """SIGTERM the server's process group without waiting."""
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass


def stop(proc: subprocess.Popen, timeout: float = 20.0) -> None:
    """SIGTERM the server's process group, SIGKILL after ``timeout``."""
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=timeout)
    except ProcessLookupError:
        return
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
