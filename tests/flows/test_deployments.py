"""`tsfm deploy`: the deployments, their schedules and the one-click onboarding form."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from flows.deployments import build_deployments, describe
from infra.settings import load_settings

BIN = Path(sys.executable).parent


def test_every_stage_is_deployed_with_its_schedule_and_settings(monkeypatch, tmp_path):
    monkeypatch.setenv("TSFM_SCHEDULES__RETRAIN_CRON", "30 1 * * 6")
    # a registry of its own: domains other tests onboarded would be remembered and deployed too
    monkeypatch.setenv("TSFM_PATHS__STATE_DIR", str(tmp_path / "state"))
    settings = load_settings()
    rows = {r["name"]: r for r in describe(build_deployments(settings))}
    ingests = {f"ingest/ingest-{d}" for d in settings.sources}
    assert ingests | {"pretrain/retrain-backbone", "onboard_domain/one-click-onboarding"} <= set(rows)
    assert rows["pretrain/retrain-backbone"]["schedule"] == "30 1 * * 6"  # from the environment
    assert rows["onboard_domain/one-click-onboarding"]["schedule"] == "on demand"
    # re-onboarding on schedule for every real domain, never for the generated pre-training corpus
    onboards = {n for n in rows if n.startswith("onboard_domain/onboard-")}
    assert onboards == {f"onboard_domain/onboard-{d}" for d in settings.sources if d != "synthetic"}
    # and a nightly batch forecast of each, an hour after its re-onboarding
    forecasts = {n: r["schedule"] for n, r in rows.items() if n.startswith("forecast/")}
    assert forecasts == {f"forecast/forecast-{d}": "0 6 * * *" for d in settings.sources if d != "synthetic"}


def test_scheduled_parameters_are_the_settings_and_the_form_is_onboard_params():
    settings = load_settings()
    deployments = {d.name: d for d in build_deployments(settings)}
    ingest = deployments["ingest-m3-other"].parameters["params"]
    assert ingest["source"] == settings.sources["m3-other"].source and ingest["domain"] == "m3-other"
    onboard = deployments["onboard-m3-other"].parameters["params"]
    assert onboard["domain"] == "m3-other" and onboard["context_length"] == settings.onboard.context_length
    schema = deployments["one-click-onboarding"]._parameter_openapi_schema.model_dump()
    form = schema["definitions"]["OnboardParams"]
    assert schema["required"] == ["params"] and "pattern" in form["properties"]["domain"]
    assert form["properties"]["horizon"]["minimum"] == 1  # validated by Prefect before a run starts
    forecast = deployments["forecast-m3-other"].parameters["params"]
    assert forecast["domain"] == "m3-other" and forecast["origin"] is None  # the run's own scheduled date
    assert forecast["executor"] == settings.forecast.executor and forecast["retries"] == settings.forecast.retries
    retrain = deployments["retrain-backbone"].parameters["params"]
    assert retrain["init"] == "models:/backbone@champion"  # continued from the champion, then gated
    assert retrain["max_steps"] == settings.pretrain.max_steps


def test_cli_dry_run_lists_the_deployments(tmp_path):
    proc = subprocess.run(
        [str(BIN / "tsfm"), "deploy", "--dry-run"],
        cwd=Path(__file__).parents[2],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = {r["name"]: r["schedule"] for r in json.loads(proc.stdout)}
    assert rows["pretrain/retrain-backbone"] == "0 3 * * 0" and rows["ingest/ingest-m3-other"] == "0 2 * * *"


def test_source_watcher_deployment_and_event_triggers(monkeypatch, tmp_path):
    monkeypatch.setenv(
        "TSFM_SOURCES",
        json.dumps(
            {
                "shop": {"source": str(tmp_path / "incoming"), "horizon": 4},  # a folder where files arrive
                "m3-other": {"source": "builtin:m3-other", "horizon": 8},  # packaged data never changes
            }
        ),
    )
    monkeypatch.setenv("TSFM_SCHEDULES__WATCH_INTERVAL_S", "120")
    deployments = {d.name: d for d in build_deployments(load_settings())}
    watch = deployments["watch-sources"]
    assert watch.flow_name == "watch_sources"
    assert [s.schedule.interval.total_seconds() for s in watch.schedules] == [120]
    trigger, degraded = deployments["onboard-shop"].triggers
    assert trigger.expect == {"tsfm.source.updated"} and trigger.threshold == 1
    assert trigger.match.get("prefect.resource.id") in ("tsfm.source.shop", ["tsfm.source.shop"])
    # the monitor's verdict re-onboards every domain, watched or not
    assert degraded.expect == {"tsfm.domain.degraded"} and degraded.threshold == 1
    assert degraded.match.get("prefect.resource.id") in ("tsfm.domain.shop", ["tsfm.domain.shop"])
    assert [t.expect for t in deployments["onboard-m3-other"].triggers] == [{"tsfm.domain.degraded"}]
    # the monitor runs when a re-ingest changed the store: new actuals to score
    (store,) = deployments["monitor-shop"].triggers
    assert store.expect == {"tsfm.store.updated"}
    assert store.match.get("prefect.resource.id") in ("tsfm.store.shop", ["tsfm.store.shop"])
    assert deployments["monitor-shop"].parameters["params"]["domain"] == "shop"
    # every re-onboarding run re-ingests its source first (unchanged data: cached stages, no new versions)
    assert deployments["onboard-shop"].parameters["params"]["source"] == str(tmp_path / "incoming")
    assert deployments["onboard-shop"].parameters["params"]["horizon"] == 4
    rows = {r["name"]: r["schedule"] for r in describe(list(deployments.values()))}
    assert rows["watch_sources/watch-sources"] == "every 120s"
    assert rows["onboard_domain/onboard-shop"].endswith(
        "on tsfm.source.updated of tsfm.source.shop, on tsfm.domain.degraded of tsfm.domain.shop"
    )
    assert rows["monitor/monitor-shop"] == "on tsfm.store.updated of tsfm.store.shop"

    monkeypatch.setenv("TSFM_SCHEDULES__WATCH_INTERVAL_S", "0")  # watching off: no watcher, no triggers
    deployments = {d.name: d for d in build_deployments(load_settings())}
    assert "watch-sources" not in deployments
    assert [t.expect for t in deployments["onboard-shop"].triggers] == [{"tsfm.domain.degraded"}]
