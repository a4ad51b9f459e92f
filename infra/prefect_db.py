"""A new Prefect database starts as a copy of an empty, migrated one.

A Prefect server on a new sqlite file first runs its ~100 schema migrations: about 5 CPU-seconds,
half of its start-up on an idle core (9.1 s against 4.9 s from a copy, measured). Every project's
first command, `tsfm ui` on a new project and every test server paid it. The empty database is
built once per Prefect version (``prefect server database upgrade``) into tsfm's cache folder
(``$TSFM_CACHE_DIR``, else ``$XDG_CACHE_HOME/tsfm``, else ``~/.cache/tsfm``) and copied from there.

Only a speed-up: where the template cannot be built or copied, the server migrates its own
database as before. An existing database is never touched.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import sys
import tempfile
from importlib.metadata import version
from pathlib import Path

CACHE_ENV = "TSFM_CACHE_DIR"


def cache_dir() -> Path:
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "tsfm"


def template() -> Path | None:
    """The empty, migrated database of the installed Prefect, built on first use; None if it cannot be."""
    folder = cache_dir()
    path = folder / f"prefect-{version('prefect')}-empty.db"
    if path.is_file():
        return path
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with open(folder / f"{path.name}.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # two servers starting at once build it once
            if not path.is_file():
                _build(path)
    except (OSError, subprocess.SubprocessError):
        return None
    return path if path.is_file() else None


def _build(path: Path) -> None:
    with tempfile.TemporaryDirectory(dir=path.parent) as tmp:
        db = Path(tmp) / "prefect.db"
        env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
        env |= {
            "PREFECT_HOME": tmp,
            "PREFECT_API_DATABASE_CONNECTION_URL": f"sqlite+aiosqlite:///{db}",
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        }
        cmd = [sys.executable, "-m", "prefect", "server", "database", "upgrade", "-y"]
        subprocess.run(cmd, env=env, check=True, timeout=300, capture_output=True)
        os.replace(db, path)


def seed(db: Path) -> None:
    """Start ``db`` (a sqlite file a Prefect server is about to open) as a copy of the migrated
    template, unless it exists already."""
    if db.exists():
        return
    source = template()
    if source is None:
        return
    db.parent.mkdir(parents=True, exist_ok=True)
    tmp = db.with_name(f".{db.name}.{os.getpid()}")
    try:
        shutil.copyfile(source, tmp)
        if not db.exists():
            os.replace(tmp, db)
    except OSError:
        pass
    finally:
        tmp.unlink(missing_ok=True)
