"""New data at a domain's source re-onboards it through a Prefect event, end to end on real servers.

A real `prefect server` (its triggers and scheduler services running) and `tsfm deploy` serving the
deployments; a CSV folder is the source of domain `m3-events`. When a new file lands there, the
scheduled `watch-sources` run emits `tsfm.source.updated`, the trigger of `onboard-m3-events` creates
a flow run, and that run re-ingests the folder and onboards the domain on the demo run's backbone.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from infra.servers import stop
from infra.settings import SourceSpec, load_settings
from store.sources import read_source
from store.watch import watch_sources
from tests.flows.prefect_api import flow_runs
from tests.helpers import start_prefect_for_triggers

BIN = Path(sys.executable).parent
REPO = Path(__file__).resolve().parents[2]
DOMAIN = "m3-events"


def test_a_new_file_at_the_source_triggers_re_onboarding(demo_run, tmp_path):
    incoming = tmp_path / "incoming"
    incoming.mkdir()
    frame = read_source("builtin:m3-other").frame
    ids = sorted(frame["unique_id"].unique())[:40]  # a small domain: the trigger is what is under test
    frame[frame["unique_id"].isin(ids[:20])].to_csv(incoming / "part-1.csv", index=False)
    sources = {DOMAIN: {"source": str(incoming), "horizon": 8}}
    # what the watcher has seen so far (the deployed watcher shares the state dir)
    watch_sources(load_settings(sources={DOMAIN: SourceSpec(**sources[DOMAIN])}))

    stop_servers, api = start_prefect_for_triggers(tmp_path / "prefect-server")
    env = {
        **os.environ,
        "PREFECT_API_URL": api,
        "PREFECT_HOME": str(tmp_path / "prefect-client"),
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "PREFECT_RUNNER_POLL_FREQUENCY": "2",
        "TSFM_SOURCES": json.dumps(sources),
        "TSFM_SCHEDULES__WATCH_INTERVAL_S": "10",
        "TSFM_SCHEDULES__INGEST_CRON": "",
        "TSFM_SCHEDULES__RETRAIN_CRON": "",
        "TSFM_SCHEDULES__ONBOARD_CRON": "",
        "TSFM_ONBOARD__ADAPTER__EPOCHS": "2",
        "TSFM_ONBOARD__STRIDE": "4",
        "TSFM_ONBOARD__FINETUNE__MAX_STEPS": "0",
    }
    log = (tmp_path / "deploy.log").open("w")
    deploy = subprocess.Popen(
        [str(BIN / "tsfm"), "deploy"], cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    try:
        deadline = time.monotonic() + 120
        while not flow_runs(api, "watch_sources/watch-sources"):  # deployed, and the watcher scheduled
            assert deploy.poll() is None, (tmp_path / "deploy.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "the deployments never appeared"
            time.sleep(1)
        assert flow_runs(api, f"onboard_domain/onboard-{DOMAIN}") == []  # nothing new yet, nothing runs
        time.sleep(5)  # let the triggers service load the deployment's automation

        frame[frame["unique_id"].isin(ids[20:])].to_csv(incoming / "part-2.csv", index=False)  # new data
        deadline = time.monotonic() + 240
        runs = []
        while time.monotonic() < deadline:
            runs = flow_runs(api, f"onboard_domain/onboard-{DOMAIN}")
            if runs and runs[0]["state_type"] in ("COMPLETED", "FAILED", "CRASHED"):
                break
            time.sleep(2)
        tail = (tmp_path / "deploy.log").read_text()[-4000:]
        assert len(runs) == 1, f"no (or more than one) triggered onboarding run\n{tail}"
        run = runs[0]
        assert (run["created_by"] or {}).get("type") == "AUTOMATION", run["created_by"]  # by the trigger
        assert run["parameters"]["params"]["source"] == str(incoming)  # the triggered run re-ingests
        assert run["state_type"] == "COMPLETED", f"{run['state_type']}\n{tail}"
        # the flow run's own process is quiet too: no library advice in the deployment's output
        assert "An input example was not provided" not in (tmp_path / "deploy.log").read_text()
    finally:
        stop(deploy, timeout=30)
        log.close()
        stop_servers()

    # the re-ingested store holds the new file's series, and the domain got its models
    settings = demo_run["settings"]
    store_meta = json.loads((settings.store_dir(DOMAIN) / "meta.json").read_text())
    assert store_meta["n_series"] == len(ids)
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=settings.tracking_uri, registry_uri=settings.tracking_uri)
    assert [str(v.version) for v in client.search_model_versions(f"name='fused-{DOMAIN}'")] == ["1"]
    assert client.get_model_version_by_alias(f"forecaster-{DOMAIN}", "champion").tags["family"]
