"""Wall time and peak memory of `tsfm demo` on the embedded defaults.

Runs the demo in a fresh temporary directory (so nothing cached is reused) and
samples the resident memory of the whole process tree (flow process, trainer
subprocess, model server) every 0.2 s.

    .venv/bin/python benchmarks/demo_wall_and_memory.py
"""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parent.parent


def tree_rss(proc: psutil.Process) -> int:
    total = 0
    for p in [proc, *proc.children(recursive=True)]:
        try:
            total += p.memory_info().rss
        except psutil.Error:
            pass
    return total


def main() -> int:
    work = Path(tempfile.mkdtemp(prefix="tsfm-demo-bench-"))
    shutil.copy(REPO / "params.yaml", work / "params.yaml")
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_HOME": str(work / "prefect"),
    }
    started = time.perf_counter()
    proc = subprocess.Popen(
        [str(Path(sys.executable).parent / "tsfm"), "demo"],
        cwd=work,
        env=env,
        stdout=open(work / "demo.log", "w"),
        stderr=subprocess.STDOUT,
    )
    ps, peak = psutil.Process(proc.pid), 0
    while proc.poll() is None:
        peak = max(peak, tree_rss(ps))
        time.sleep(0.2)
    wall = time.perf_counter() - started
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"{psutil.virtual_memory().total / 2**30:.0f} GiB"
    )
    print(f"exit code {proc.returncode}; wall {wall:.0f} s; peak RSS of the process tree {peak / 2**20:.0f} MiB")
    print(f"log: {work / 'demo.log'}")
    return proc.returncode


if __name__ == "__main__":
    raise SystemExit(main())
