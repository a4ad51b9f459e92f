"""The monitor closes the loop, on the session's demo registry and real servers.

Two domains share the demo's fused champion and m3-other's series, onboarded on all but each series'
last 8 points and batch-forecast over those 8 steps. Then their actuals arrive: `m3-steady`'s as they
were, `m3-shift`'s with a level shift (x 1.6). The monitor must score each covered point once, leave
the rest for later, find the shifted domain degraded and the steady one healthy; with a real `prefect
server` and `tsfm deploy`, the re-ingest's event runs the monitor deployments and only the shifted
domain ends with an onboarding run created by the degraded trigger.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
import requests

from infra.servers import stop
from infra.settings import ForecastParams, MonitorParams
from store.canonical import read_meta, read_store
from store.ingest import ingest_to_store
from tests.flows.prefect_api import flow_runs
from tests.helpers import start_prefect_for_triggers
from tracking import registry as tracking

BIN = Path(sys.executable).parent
REPO = Path(__file__).resolve().parents[2]
STEADY, SHIFT = "m3-steady", "m3-shift"
H = 8
ORIGIN = date(2026, 11, 2)


def _forecast(domain: str, settings) -> dict:
    """A batch of the domain's champion, through the batch's own functions (no flow run)."""
    from batch.run import commit_forecast, forecast_chunk, plan_forecast

    plan = plan_forecast(ForecastParams(domain=domain, origin=ORIGIN, executor="inline", horizon=H), settings)
    return commit_forecast(plan, [forecast_chunk(plan, i) for i in range(len(plan["chunks"]))])


@pytest.fixture(scope="module")
def domains(demo_run, tmp_path_factory):
    settings = demo_run["settings"]
    client = tracking.configure(settings)
    fused = client.get_model_version(
        tracking.forecaster_name("m3-other"), demo_run["result"]["onboarded"]["versions"]["fused"]
    )
    full, _ = read_store(settings.store_dir("m3-other"))
    full = full.sort_values(["unique_id", "ds"]).reset_index(drop=True)
    new = full.groupby("unique_id").cumcount(ascending=False) < H  # each series' last H points
    half = full.groupby("unique_id").cumcount(ascending=False) >= H // 2  # all but the last H/2
    root = tmp_path_factory.mktemp("monitor-sources")
    out = {"settings": settings, "root": root, "full": full, "new": new, "half": half}
    for domain in (STEADY, SHIFT):
        source = root / domain / "data.csv"
        source.parent.mkdir()
        full[~new].to_csv(source, index=False)
        store = ingest_to_store(str(source), domain, H, 8, settings.paths.data_dir)
        version = tracking.register(
            fused.source,
            tracking.forecaster_name(domain),
            {**dict(fused.tags), "domain": domain, "data_version": read_meta(store)["md5"]},
        )
        tracking.set_alias(tracking.forecaster_name(domain), "champion", version)
        tracking.remember_domain(domain, {"source": str(source), "horizon": H})
        out[domain] = {"source": source, "version": version, "batch": _forecast(domain, settings)}
    return out


def _arrive(domains, domain: str, rows: pd.Series, shift: float = 1.0) -> Path:
    """New actuals at the domain's source: the rows kept by ``rows``, its new points scaled by ``shift``."""
    frame = domains["full"].copy()
    frame.loc[domains["new"], "y"] *= shift
    frame[rows].to_csv(domains[domain]["source"], index=False)
    return domains[domain]["source"]


def test_half_the_actuals_score_half_the_points_once_and_the_registry_carries_the_verdict(domains):
    from flows.monitor import monitor_flow

    settings = domains["settings"]
    n = domains[STEADY]["batch"]["series"]
    source = _arrive(domains, STEADY, domains["half"])  # 4 of the 8 forecast steps have happened
    ingest_to_store(str(source), STEADY, H, 8, settings.paths.data_dir)
    first = monitor_flow(MonitorParams(domain=STEADY, emit_events=False))[STEADY]
    assert first["points"] == n * H // 2 and first["waiting"] == n * H // 2
    assert first["origins"] == [ORIGIN.isoformat()] and first["degraded"] is False, first["reasons"]
    again = monitor_flow(MonitorParams(domain=STEADY, emit_events=False))[STEADY]
    assert again["points"] == 0 and again["waiting"] == n * H // 2  # nothing counted twice

    run = mlflow.get_run(first["mlflow_run_id"])
    assert run.data.tags["degraded"] == "false"
    metrics = run.data.metrics
    version = domains[STEADY]["version"]
    assert metrics["points_scored"] == n * H // 2
    assert 0 < metrics[f"MASE_ratio_v{version}"] < 1.5  # unchanged data: as good as validation promised
    assert 0.5 < metrics[f"coverage_v{version}"] <= 1.0
    assert all(metrics[f"psi_store_{f}"] < 0.25 for f in ("level", "scale", "missing_share"))
    history = mlflow.MlflowClient().get_metric_history(first["mlflow_run_id"], f"step_MASE_v{version}")
    assert sorted(m.step for m in history) == [1, 2, 3, 4]  # the per-step curve, steps with actuals only
    files = {a.path for a in mlflow.MlflowClient().list_artifacts(first["mlflow_run_id"], "check")}
    assert {
        "check/forecast_vs_actual.png",
        "check/per_step_error.png",
        "check/realized.csv",
        "check/per_step.csv",
        "check/drift_store.csv",
        "check/verdict.json",
    } <= files
    tags = mlflow.MlflowClient().get_registered_model(tracking.forecaster_name(STEADY)).tags
    assert tags["monitor.degraded"] == "0" and float(tags["monitor.ratio.MASE"]) < 1.5
    assert float(tags["monitor.psi.store.level"]) < 0.25

    # what a server exports from those tags (the alert rules and the dashboard read these)
    from serving.catalog import Catalog
    from serving.metrics import ServingMetrics

    catalog = Catalog(settings.tracking_uri, domains=[STEADY])
    exported = ServingMetrics(86400.0)
    catalog.on_tags = exported.set_domain_tags  # as the app wires it
    catalog.refresh()
    text = exported.render()[0].decode()
    assert f'tsfm_monitor_degraded{{domain="{STEADY}"}} 0.0' in text
    assert f'tsfm_monitor_drift_psi{{data="store",domain="{STEADY}",feature="level"}}' in text
    assert f'tsfm_serve_champion_validated_timestamp_seconds{{domain="{STEADY}"}}' in text
    assert "tsfm_serve_champion_max_age_seconds 86400.0" in text


def test_contexts_served_at_another_level_show_as_serving_drift(domains, tmp_path):
    """A real server on loopback receives the domain's series at 3x their level; the monitor reads its
    /metrics histograms and finds the served contexts' level drifted, the store's not."""
    from flows.monitor import monitor_flow
    from serving.launch import request_body, start_tsfm_server, stop_server, wait_ready

    settings = domains["settings"]
    proc, url = start_tsfm_server(settings, [STEADY], log_file=tmp_path / "serve.log", reload_interval_s=0)
    try:
        wait_ready(url, proc)
        # exported at 0 before any request, so Prometheus' increase() counts the first contexts too
        before = requests.get(f"{url}/metrics", timeout=10).text
        assert f'tsfm_serve_input_level_log10_bucket{{domain="{STEADY}",le="+Inf"}} 0.0' in before
        context = domains["full"][~domains["new"]].assign(y=lambda f: f["y"] * 3)
        answer = requests.post(f"{url}/invocations", json=request_body(context, H, STEADY), timeout=120)
        assert answer.status_code == 200, answer.text[:500]
        verdict = monitor_flow(MonitorParams(domain=STEADY, emit_events=False, serving_metrics=[f"{url}/metrics"]))[
            STEADY
        ]
    finally:
        stop_server(proc)
    assert any(r.startswith("level of the served contexts has drifted") for r in verdict["reasons"]), verdict
    assert not any("of the new data" in r for r in verdict["reasons"]), verdict["reasons"]
    tags = mlflow.MlflowClient().get_registered_model(tracking.forecaster_name(STEADY)).tags
    assert float(tags["monitor.psi.serving.level"]) > 0.25 > float(tags["monitor.psi.store.level"])


def _done(runs: list[dict]) -> bool:
    return bool(runs) and all(r["state_type"] in ("COMPLETED", "FAILED", "CRASHED") for r in runs)


def test_a_level_shift_re_onboards_its_domain_through_the_degraded_trigger(domains, tmp_path):
    settings = domains["settings"]
    _arrive(domains, STEADY, domains["full"]["y"].notna())  # the other 4 steps, as they were
    _arrive(domains, SHIFT, domains["full"]["y"].notna(), shift=1.6)  # all 8, level-shifted

    stop_servers, api = start_prefect_for_triggers(tmp_path / "prefect-server")
    env = {
        **os.environ,
        "PREFECT_API_URL": api,
        "PREFECT_HOME": str(tmp_path / "prefect-client"),
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "PREFECT_RUNNER_POLL_FREQUENCY": "2",
        "TSFM_SCHEDULES__ONBOARD_DOMAINS": json.dumps([STEADY, SHIFT]),
        "TSFM_SCHEDULES__WATCH_INTERVAL_S": "0",
        "TSFM_SCHEDULES__INGEST_CRON": "",
        "TSFM_SCHEDULES__RETRAIN_CRON": "",
        "TSFM_SCHEDULES__ONBOARD_CRON": "",
        "TSFM_SCHEDULES__FORECAST_CRON": "",
        "TSFM_ONBOARD__ADAPTER__EPOCHS": "2",
        "TSFM_ONBOARD__STRIDE": "4",
        "TSFM_ONBOARD__FINETUNE__MAX_STEPS": "0",
    }
    log = (tmp_path / "deploy.log").open("w")
    deploy = subprocess.Popen(
        [str(BIN / "tsfm"), "deploy"], cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    tail = lambda: (tmp_path / "deploy.log").read_text()[-4000:]  # noqa: E731
    try:
        deadline = time.monotonic() + 120
        while requests.get(f"{api}/deployments/name/monitor/monitor-{SHIFT}", timeout=10).status_code != 200:
            assert deploy.poll() is None, tail()
            assert time.monotonic() < deadline, "the deployments never appeared"
            time.sleep(1)
        time.sleep(5)  # let the triggers service load the deployments' automations
        # new actuals arrive: both sources are re-ingested (as their ingest deployments do), each ingest
        # emits tsfm.store.updated, which runs monitor-<domain>
        ingests = [
            subprocess.Popen(
                [
                    str(BIN / "tsfm"),
                    "ingest",
                    "--domain",
                    d,
                    "--source",
                    str(domains[d]["source"]),
                    "--horizon",
                    str(H),
                ],
                cwd=REPO,
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                text=True,
            )
            for d in (STEADY, SHIFT)
        ]  # both at once, as two ingest deployments would run
        for ingest in ingests:
            _, err = ingest.communicate(timeout=120)
            assert ingest.returncode == 0, err[-3000:]

        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            monitors = {d: flow_runs(api, f"monitor/monitor-{d}") for d in (STEADY, SHIFT)}
            onboard = flow_runs(api, f"onboard_domain/onboard-{SHIFT}")
            if all(_done(r) for r in monitors.values()) and onboard:
                break
            time.sleep(2)
        time.sleep(4)  # an onboarding the steady domain should not get would be created by now
        steady_onboard = flow_runs(api, f"onboard_domain/onboard-{STEADY}")
        events = requests.post(
            f"{api}/events/filter",
            json={"filter": {"event": {"name": ["tsfm.domain.degraded"]}}, "limit": 10},
            timeout=10,
        ).json()["events"]
    finally:
        stop(deploy, timeout=30)
        log.close()
        stop_servers()

    # the transcript (pytest -s shows it)
    for domain, runs in monitors.items():
        for r in runs:
            print(
                f"monitor/monitor-{domain}: run {r['name']} {r['state_type']}, created by "
                f"{(r['created_by'] or {}).get('type')} {(r['created_by'] or {}).get('display_value')}"
            )
    for r in onboard:
        print(
            f"onboard_domain/onboard-{SHIFT}: run {r['name']} {r['state_type']}, created by "
            f"{(r['created_by'] or {}).get('type')} {(r['created_by'] or {}).get('display_value')}"
        )
    print(f"onboard_domain/onboard-{STEADY}: {len(steady_onboard)} run(s)")
    for e in events:
        print(f"event {e['event']} {e['resource']['prefect.resource.id']}: {e['payload'].get('reason')}")
    for domain, runs in monitors.items():  # each monitor ran once, started by its store's event
        assert len(runs) == 1 and runs[0]["state_type"] == "COMPLETED", f"{domain}: {runs}\n{tail()}"
        assert (runs[0]["created_by"] or {}).get("type") == "AUTOMATION", runs[0]["created_by"]
    assert len(onboard) == 1, f"no (or more than one) triggered onboarding of {SHIFT}\n{tail()}"
    assert (onboard[0]["created_by"] or {}).get("type") == "AUTOMATION", onboard[0]["created_by"]
    assert steady_onboard == [], "unchanged data must not re-onboard"
    assert [e["resource"]["prefect.resource.id"] for e in events] == [f"tsfm.domain.{SHIFT}"]
    reason = events[0]["payload"]["reason"]
    assert "realized MASE" in reason and "validation" in reason, reason

    # the steady domain's second check scored the 4 steps that were waiting, nothing twice
    ledger = pd.read_parquet(settings.monitor_dir(STEADY) / "scored.parquet")
    n = domains[STEADY]["batch"]["series"]
    assert len(ledger) == n * H and not ledger.duplicated(["origin", "unique_id", "ds"]).any()
    assert sorted(ledger["step"].unique()) == list(range(1, H + 1))
    shifted = mlflow.MlflowClient().get_registered_model(tracking.forecaster_name(SHIFT)).tags
    assert shifted["monitor.degraded"] == "1" and float(shifted["monitor.ratio.MASE"]) > 1.5
    assert np.isfinite(float(shifted["monitor.psi.store.level"]))
