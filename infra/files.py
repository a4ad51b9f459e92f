"""Small file helpers shared across the pipeline."""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Iterator
from pathlib import Path


def file_digest(path: str | Path, algorithm: str = "md5") -> str:
    """Hex digest of a file's bytes, read in 1 MiB blocks (large stores never sit in memory)."""
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


@contextlib.contextmanager
def exclusive(path: str | Path, what: str, log=None) -> Iterator[None]:
    """Hold an exclusive lock on ``<path>.lock`` across processes (released when the holder exits,
    even by SIGKILL); says so when it has to wait for another process doing ``what``."""
    from filelock import FileLock, Timeout

    lock_path = Path(f"{path}.lock")
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    # not a singleton: a second lock in this same process waits too instead of re-entering
    lock = FileLock(str(lock_path), is_singleton=False, thread_local=False)
    try:
        lock.acquire(timeout=0)
    except Timeout:
        (log.info if log else print)(f"waiting for another process to finish {what}")
        lock.acquire()
    try:
        yield
    finally:
        lock.release()
