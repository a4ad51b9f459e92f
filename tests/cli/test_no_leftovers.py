"""A SIGKILLed `tsfm ingest` leaves no process behind: Prefect's temporary API server, started for
its flow run, goes with it (Linux parent-death signal)."""
from __future__ import annotations

import signal
import subprocess
import time

import numpy as np
import pandas as pd
import psutil

from tests.cli.test_user_mistakes import BIN, _env


def test_a_killed_tsfm_leaves_no_prefect_server_running(tmp_path):
    n = 300
    frame = pd.DataFrame({"unique_id": np.repeat([f"s{i}" for i in range(200)], n),
                          "ds": np.tile(np.arange(n), 200), "y": np.random.default_rng(0).normal(size=200 * n)})
    frame.to_csv(tmp_path / "big.csv", index=False)
    proc = subprocess.Popen([str(BIN / "tsfm"), "ingest", "--domain", "big", "--source", "big.csv"], cwd=tmp_path,
                            env=_env(tmp_path), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    me = psutil.Process(proc.pid)
    servers = []
    deadline = time.time() + 120
    def cmdline(p: psutil.Process) -> str:
        try:
            return " ".join(p.cmdline())
        except psutil.Error:  # a short-lived child (git, a zombie not yet reaped) gone or going
            return ""

    while not servers and time.time() < deadline and proc.poll() is None:
        servers = [p for p in me.children(recursive=True) if "prefect.server.api.server:create_app" in cmdline(p)]
        time.sleep(0.1)
    assert servers, "no temporary Prefect server was seen (did the flow run start?)"
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    gone, alive = psutil.wait_procs(servers, timeout=20)
    assert not alive, [p.cmdline() for p in alive]
