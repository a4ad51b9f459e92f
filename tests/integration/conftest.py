"""Real `mlflow server` and `prefect server` processes on loopback, and one onboarding run against them
through the real `tsfm` CLI (each command its own process, as an operator would run it)."""

from __future__ import annotations

import json
import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from infra.servers import start_mlflow_server, start_prefect_server, stop
from tests.integration.cli import DOMAIN, LIVE_SMALL, cli_env, finish, run_tsfm, start_tsfm

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def test_artifacts() -> Path:
    """Where screenshots go (kept after the run; git-ignored)."""
    path = Path(os.environ.get("TSFM_TEST_ARTIFACTS", REPO / "test-artifacts"))
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture(scope="module")
def live_servers(tmp_path_factory):
    """Both servers, started side by side (~10 s each); stopped in teardown whatever happened."""
    root = tmp_path_factory.mktemp("servers")
    with ThreadPoolExecutor(2) as pool:
        mlflow_start = pool.submit(start_mlflow_server, root / "mlflow")
        prefect_start = pool.submit(start_prefect_server, root / "prefect")
    try:
        # .result() raises with the server log's tail if that server did not come up
        yield {"mlflow": mlflow_start.result()[1], "prefect_api": prefect_start.result()[1], "root": root}
    finally:
        for fut in (mlflow_start, prefect_start):  # also the one that started when the other failed
            if fut.exception() is None:
                t = time.monotonic()
                stop(fut.result()[0])
                print(f"stopped {fut.result()[1]} in {time.monotonic() - t:.1f}s")


@pytest.fixture(scope="module")
def live_onboarding(live_servers, tmp_path_factory):
    """ingest x2 (in parallel) -> pretrain 40 steps -> onboard m3-other (+ gate), all through the CLI."""
    root = tmp_path_factory.mktemp("tsfm-live")
    env = cli_env(live_servers, root)
    timings, t0 = {}, time.monotonic()
    sources = json.loads(LIVE_SMALL["TSFM_SOURCES"])
    ingests = {
        d: start_tsfm(
            ["ingest", "--source", s["source"], "--domain", d, "--horizon", str(s["horizon"])], env, root, f"ingest-{d}"
        )
        for d, s in sources.items()
    }
    try:
        stores = {d: finish(p, root, f"ingest-{d}") for d, p in ingests.items()}
    finally:  # one failed: do not leave the other running
        for p in ingests.values():
            if p.poll() is None:
                p.kill()
                p.wait()
    timings["ingest"] = time.monotonic() - t0
    backbone = run_tsfm(["pretrain"], env, root, "pretrain")
    timings["pretrain"] = time.monotonic() - t0 - timings["ingest"]
    onboard = run_tsfm(["onboard", "--domain", DOMAIN], env, root, "onboard")
    timings["onboard"] = time.monotonic() - t0 - timings["ingest"] - timings["pretrain"]
    print("live onboarding, seconds per stage:", {k: round(v) for k, v in timings.items()})
    return {
        **live_servers,
        "env": env,
        "root": root,
        "stores": stores,
        "backbone": backbone,
        "onboard": onboard,
        "timings": timings,
    }
