"""``infra.files.exclusive``: one process at a time across processes; a waiter says what it waits for,
and a SIGKILLed holder releases the lock (the second onboarding of a domain then does the work)."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
HOLD = """
import sys, time
from infra.files import exclusive
with exclusive(sys.argv[1], "the test's work"):
    print("got", time.time(), flush=True)
    time.sleep(float(sys.argv[2]))
print("released", time.time(), flush=True)
"""


def _start(target: Path, hold: float) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", HOLD, str(target), str(hold)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def test_a_second_process_waits_and_a_killed_holder_releases(tmp_path):
    target = tmp_path / "result"
    first = _start(target, 3.0)
    assert first.stdout.readline().startswith("got")
    second = _start(target, 0.0)
    out, _ = second.communicate(timeout=60)
    first_out, _ = first.communicate(timeout=60)
    got_second = float(next(ln for ln in out.splitlines() if ln.startswith("got")).split()[1])
    released_first = float(next(ln for ln in first_out.splitlines() if ln.startswith("released")).split()[1])
    assert "waiting for another process to finish the test's work" in out
    assert got_second >= released_first - 0.05  # never both inside

    holder = _start(target, 600.0)
    assert holder.stdout.readline().startswith("got")
    holder.send_signal(signal.SIGKILL)
    holder.wait(timeout=30)
    started = time.time()
    out, _ = _start(target, 0.0).communicate(timeout=60)
    assert "got" in out and time.time() - started < 30
