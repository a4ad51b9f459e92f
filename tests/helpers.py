"""Helpers several test modules share: a fresh project's environment, running `tsfm` in it as a
user would, the one-message check of a user's mistake, and the system Chromium."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from infra.errors import EXIT_USER_ERROR

BIN = Path(sys.executable).parent


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """A fresh project: its own data and state; Prefect's home left to tsfm (under the state folder)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TSFM_", "PREFECT_"))}
    env.update(
        {
            "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
            "TSFM_PATHS__DATA_DIR": str(tmp_path / "data"),
            "TSFM_PATHS__STATE_DIR": str(tmp_path / "state"),
            "TSFM_PARAMS": str(tmp_path / "none.yaml"),
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            # the project's Prefect API stops soon after the test's last command (tests/conftest.py), not
            # after the default 30 minutes: a suite's worth of idle servers slowed every later test
            "TSFM_PREFECT_IDLE_S": os.environ.get("TSFM_PREFECT_IDLE_S", "30"),
            **extra,
        }
    )
    return env


def _tsfm(tmp_path: Path, *args: str, env: dict | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(BIN / "tsfm"), *args],
        cwd=tmp_path,
        env=env or _env(tmp_path),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _one_message(proc: subprocess.CompletedProcess, *fragments: str) -> str:
    err = proc.stderr
    assert proc.returncode == EXIT_USER_ERROR, (proc.returncode, err[-3000:])
    assert "Traceback" not in err and "╭" not in err, err[-3000:]  # neither Python's nor rich's traceback
    [line] = [ln for ln in err.splitlines() if ln.startswith("error: ")]
    for fragment in fragments:
        assert fragment in line, line
    assert len(err.splitlines()) <= 6, err
    return line


CHROMIUM = Path("/usr/bin/chromium")  # Debian's package (Makefile: make install)
# flags that keep a headless Chromium from reaching out (the machine has no internet) or needing a GPU
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def start_prefect_for_triggers(root: Path) -> tuple[Callable[[], None], str]:
    """A Prefect server (services on) on a PostgreSQL of its own, for tests whose automations must
    fire promptly: on sqlite, two ingests writing at once sometimes held an automation's action for
    the full 60 s of Prefect's busy timeout ("database is locked"). Returns a function that stops
    both and the API URL. The cluster lives in a folder of /tmp that PostgreSQL's system user can
    reach (pytest's own folders are private to the user running it)."""
    import shutil
    import tempfile

    from infra.servers import start_postgres, start_prefect_server, stop

    cluster = Path(tempfile.mkdtemp(prefix="tsfm-test-pg-"))
    procs: list[subprocess.Popen] = []

    def stop_all() -> None:
        for proc in reversed(procs):
            stop(proc)
        shutil.rmtree(cluster, ignore_errors=True)

    try:
        postgres, hostport = start_postgres(cluster, databases=("prefect",))
        procs.append(postgres)
        server, api = start_prefect_server(root, database_url=f"postgresql+asyncpg://tsfm@{hostport}/prefect")
        procs.append(server)
    except BaseException:
        stop_all()
        raise
    return stop_all, api
