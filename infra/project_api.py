"""The project's own Prefect API: the first command that runs a flow starts it in the background,
later commands reuse it, and it stops itself after ``idle_s`` without a command (or when the
project's state folder is gone).

Without it every command started a temporary Prefect server of its own: 14-31 s before any
work, Prefect's banner on every run, and on a machine at load 5 a valid ``tsfm ingest`` failed
with "Timed out while attempting to connect to ephemeral Prefect API server". Now the start is
paid once (the command that pays it says so), with a generous timeout, and a command that finds
the API up starts in about the time Python takes to import Prefect and MLflow.

Files under ``<state_dir>``: ``prefect-api.json`` (pid, url; its mtime is the last use),
``prefect-api.log`` (the server's output), ``prefect-api.lock`` (one starter at a time). The
database is the one Prefect's temporary servers used (``<state_dir>/prefect/prefect.db``), so the
UI and earlier flow runs see the same history. A ``PREFECT_API_URL`` (a real server, the cluster
profile's ``prefect.api_url``) wins: nothing is started then.

    python -m infra.project_api <state_dir>     # the watchdog process (started by ``ensure``)
"""

from __future__ import annotations

import fcntl
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

INFO, LOG, LOCK = "prefect-api.json", "prefect-api.log", "prefect-api.lock"
IDLE_ENV = "TSFM_PREFECT_IDLE_S"  # seconds without a command before the API stops itself
MODE_ENV = "TSFM_PREFECT_API"  # "ephemeral": a temporary server per command, as Prefect does by default
IDLE_S = 1800.0
START_TIMEOUT_S = 240.0  # a busy machine (load 5 on 2 cores) needs far more than an idle one (about 6 s)


def ensure(state_dir: Path, say=lambda text: print(text, file=sys.stderr)) -> str | None:
    """Point this process at the project's Prefect API (``PREFECT_API_URL``), starting it when it is
    not running; returns its URL. None where a Prefect API is configured already."""
    if os.environ.get("PREFECT_API_URL"):
        return None
    if os.environ.get(MODE_ENV) == "ephemeral":
        if os.environ.get("PREFECT_HOME"):  # the temporary server's database, where Prefect puts it
            from infra.prefect_db import seed

            seed(Path(os.environ["PREFECT_HOME"]) / "prefect.db")
        return None
    state_dir = Path(state_dir).resolve()
    state_dir.mkdir(parents=True, exist_ok=True)
    info_file = state_dir / INFO
    with open(state_dir / LOCK, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # two commands at once: one starts it, the other waits and reuses it
        url = _healthy(info_file)
        if url is None:
            url = _start(state_dir, say)
    info_file.touch()  # the last use: the watchdog's idle clock
    _heartbeat(info_file)
    os.environ["PREFECT_API_URL"] = url
    return url


def _heartbeat(info_file: Path, every_s: float = 5.0) -> None:
    """Keep the API's idle clock at zero while this command runs (a long onboarding outlasts any
    idle time); the thread ends with the process."""
    import threading

    def beat() -> None:
        while True:
            time.sleep(every_s)
            try:
                info_file.touch(exist_ok=True) if info_file.exists() else None
            except OSError:
                return

    threading.Thread(target=beat, name="tsfm-prefect-api-heartbeat", daemon=True).start()


def _healthy(info_file: Path) -> str | None:
    import requests

    try:
        info = json.loads(info_file.read_text())
        os.kill(int(info["pid"]), 0)
        if requests.get(f"{info['url']}/health", timeout=5).status_code == 200:
            return str(info["url"])
    except (OSError, ValueError, KeyError, requests.RequestException):
        pass
    return None


def _start(state_dir: Path, say) -> str:
    info_file = state_dir / INFO
    info_file.unlink(missing_ok=True)
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    repo = str(Path(__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (repo, env.get("PYTHONPATH")) if p)
    with open(state_dir / LOG, "a") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "infra.project_api", str(state_dir)],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    started, told = time.monotonic(), False
    while time.monotonic() - started < START_TIMEOUT_S:
        if proc.poll() is not None:
            raise RuntimeError(
                f"the project's Prefect API did not start (exit {proc.returncode}); see {state_dir / LOG}"
            )
        url = _healthy(info_file)
        if url:
            return url
        if not told and time.monotonic() - started > 2:
            say(f"starting the project's Prefect API (once; later commands reuse it; log: {state_dir / LOG}) ...")
            told = True
        time.sleep(0.25)
    proc.terminate()
    raise RuntimeError(
        f"the project's Prefect API did not answer within {START_TIMEOUT_S:.0f} s (is the machine "
        f"overloaded?); see {state_dir / LOG}"
    )


def _serve(state_dir: Path) -> None:
    """The watchdog: the API server as a child process; both end after the idle time, when the state
    folder is gone, or on SIGTERM."""
    from infra.prefect_db import seed
    from infra.servers import die_with_parent, free_port, stop

    home = state_dir / "prefect"
    home.mkdir(parents=True, exist_ok=True)
    seed(home / "prefect.db")
    port = free_port()
    env = {
        **os.environ,
        "PREFECT_HOME": str(home),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_API_DATABASE_CONNECTION_URL": f"sqlite+aiosqlite:///{(home / 'prefect.db').resolve()}",
        "PREFECT_SERVER_UI_ENABLED": "false",
        "PREFECT_LOGGING_SERVER_LEVEL": "WARNING",
    }
    env.pop("PREFECT_API_URL", None)
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "--factory",
            "prefect.server.api.server:create_app",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--log-level",
            "warning",
        ],
        env=env,
        start_new_session=True,
        preexec_fn=die_with_parent,
    )
    url = f"http://127.0.0.1:{port}/api"
    info_file = state_dir / INFO
    info_file.write_text(json.dumps({"pid": os.getpid(), "server_pid": server.pid, "url": url, "started": time.time()}))
    idle = float(os.environ.get(IDLE_ENV, IDLE_S))
    done = False

    def finish(*_):
        nonlocal done
        done = True

    signal.signal(signal.SIGTERM, finish)
    signal.signal(signal.SIGINT, finish)
    while not done and server.poll() is None:
        time.sleep(min(5.0, idle / 4))
        try:
            last = info_file.stat().st_mtime
        except OSError:  # the state folder (or our file) was removed: the project is gone
            break
        if time.time() - last > idle:
            break
    stop(server)
    try:
        if json.loads(info_file.read_text()).get("pid") == os.getpid():
            info_file.unlink()
    except (OSError, ValueError):
        pass


if __name__ == "__main__":
    _serve(Path(sys.argv[1]))
