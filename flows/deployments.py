"""Prefect deployments of tsfm (wiring only): what `tsfm deploy` serves on one machine.

- ``ingest-<domain>``: refresh each source's store (cron ``schedules.ingest_cron``);
- ``retrain-backbone``: pre-train on the ingested domains (``schedules.retrain_cron``);
- ``onboard-<domain>``: re-onboard each scheduled domain (``schedules.onboard_cron``), and at once
  when ``watch-sources`` reports new data at its source (event ``tsfm.source.updated``);
- ``forecast-<domain>``: batch-forecast every series of each scheduled domain with its champion
  (``schedules.forecast_cron``; the partition is the run's scheduled date);
- ``monitor-<domain>``: score the stored forecasts against new actuals and check drift whenever a re-ingest
  changes the domain's store (event ``tsfm.store.updated``; also ``schedules.monitor_cron`` when set); its
  ``tsfm.domain.degraded`` event re-onboards the domain (a second trigger of ``onboard-<domain>``);
- ``watch-sources``: check the sources for new data every ``schedules.watch_interval_s`` seconds;
- ``one-click-onboarding``: on demand, never scheduled: the onboarding form (``OnboardParams``:
  domain, source and horizon first, the tuning sections after, pre-filled with the settings the CLI
  would use; the Prefect UI renders and validates it before the run starts). `tsfm ui` serves it
  alone, so opening the form switches no schedule on.
Parameters come from the same settings (params.yaml / TSFM_*) as the CLI and DVC.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from prefect.client.schemas.schedules import CronSchedule, IntervalSchedule
from prefect.events import DeploymentEventTrigger

from flows.forecast import forecast_flow
from flows.ingest import ingest_flow
from flows.monitor import monitor_flow
from flows.onboard_domain import onboard_domain_flow
from flows.pretrain import pretrain_flow
from flows.watch_sources import watch_sources_flow
from infra.events import (
    DOMAIN_DEGRADED,
    SOURCE_UPDATED,
    STORE_UPDATED,
    domain_resource,
    source_resource,
    store_resource,
)
from infra.settings import DEFAULT_BACKBONE, IngestParams, OnboardParams, Settings
from store.horizon import default_horizon
from store.watch import UNWATCHED
from tracking.known_sources import known_sources

PRETRAIN_ONLY = {"synthetic"}  # generated corpora are not domains anyone forecasts
ONE_CLICK = "one-click-onboarding"


def _schedules(cron: str | None, timezone: str) -> list:
    return [CronSchedule(cron=cron, timezone=timezone)] if cron else []


def source_trigger(domain: str) -> DeploymentEventTrigger:
    """Runs the deployment once per ``tsfm.source.updated`` event of ``domain``'s source."""
    return DeploymentEventTrigger(
        name=f"new data for {domain}",
        expect={SOURCE_UPDATED},
        match={"prefect.resource.id": source_resource(domain)},
        threshold=1,
        within=timedelta(0),
    )


def degraded_trigger(domain: str) -> DeploymentEventTrigger:
    """Runs the deployment once per ``tsfm.domain.degraded`` event of ``domain`` (the monitor's verdict)."""
    return DeploymentEventTrigger(
        name=f"{domain} degraded",
        expect={DOMAIN_DEGRADED},
        match={"prefect.resource.id": domain_resource(domain)},
        threshold=1,
        within=timedelta(0),
    )


def store_trigger(domain: str) -> DeploymentEventTrigger:
    """Runs the deployment once per ``tsfm.store.updated`` event of ``domain`` (new actuals ingested)."""
    return DeploymentEventTrigger(
        name=f"new actuals for {domain}",
        expect={STORE_UPDATED},
        match={"prefect.resource.id": store_resource(domain)},
        threshold=1,
        within=timedelta(0),
    )


def scheduled_domains(settings: Settings, sources: dict | None = None) -> list[str]:
    """``schedules.onboard_domains``, else every known domain (declared or onboarded) but synthetic."""
    sources = settings.sources if sources is None else sources
    return settings.schedules.onboard_domains or [d for d in sources if d not in PRETRAIN_ONLY]


def build_deployments(settings: Settings) -> list:
    """RunnerDeployments (not yet applied) for ``prefect serve``-style hosting: every declared
    source and every domain the registry remembers as onboarded."""
    sch = settings.schedules
    known = known_sources(settings)
    out = []
    for domain, spec in ((d, k.spec) for d, k in known.items()):
        params = IngestParams(domain=domain, **spec.model_dump())
        out.append(
            ingest_flow.to_deployment(
                name=f"ingest-{domain}",
                schedules=_schedules(sch.ingest_cron, sch.timezone),
                parameters={"params": params.model_dump()},
                tags=["tsfm", "ingest", domain],
                description=f"refresh the {domain} store from {spec.source}",
            )
        )
    # retraining continues from the champion (unless the settings name another start) and is gated
    retrain = settings.pretrain.model_copy(update={"init": settings.pretrain.init or DEFAULT_BACKBONE})
    out.append(
        pretrain_flow.to_deployment(
            name="retrain-backbone",
            schedules=_schedules(sch.retrain_cron, sch.timezone),
            parameters={"params": retrain.model_dump()},
            tags=["tsfm", "pretrain"],
            description="continue pre-training the champion backbone on the ingested domains; the result becomes "
            "champion only if it validates better",
        )
    )
    for domain in scheduled_domains(settings, known):
        spec = known[domain].spec if domain in known else None
        # Every run re-ingests the source first (the triggered one must: new data is why it runs;
        # the scheduled one too, so it never onboards a stale store). With unchanged data the store's
        # md5 is unchanged, so adapt/evaluate come from the cache and no new versions appear.
        params = settings.onboard.model_copy(
            update={
                "domain": domain,
                "source": spec.source if spec else None,
                "columns": spec.columns if spec else {},
                "date_format": spec.date_format if spec else None,
                "horizon": default_horizon(domain, settings, spec),
            }
        )
        if domain in known and known[domain].season_length:
            params = params.model_copy(update={"season_length": known[domain].season_length})
        watched = bool(spec) and not spec.source.startswith(UNWATCHED) and bool(sch.watch_interval_s)
        out.append(
            onboard_domain_flow.to_deployment(
                name=f"onboard-{domain}",
                schedules=_schedules(sch.onboard_cron, sch.timezone),
                parameters={"params": OnboardParams.model_validate(params.model_dump()).model_dump()},
                triggers=([source_trigger(domain)] if watched else []) + [degraded_trigger(domain)],
                tags=["tsfm", "onboard", domain],
                description=f"re-onboard {domain} onto the champion backbone",
            )
        )
        if sch.forecast_cron:
            forecast = settings.forecast.model_copy(update={"domain": domain, "origin": None})
            out.append(
                forecast_flow.to_deployment(
                    name=f"forecast-{domain}",
                    schedules=_schedules(sch.forecast_cron, sch.timezone),
                    parameters={"params": forecast.model_dump(mode="json")},
                    tags=["tsfm", "forecast", domain],
                    description=f"forecast every series of {domain} with its champion into "
                    f"{forecast.output or Path(settings.paths.data_dir, 'forecasts', domain).as_posix()}",
                )
            )
        monitor = settings.monitor.model_copy(update={"domain": domain})
        out.append(
            monitor_flow.to_deployment(
                name=f"monitor-{domain}",
                schedules=_schedules(sch.monitor_cron, sch.timezone),
                parameters={"params": monitor.model_dump(mode="json")},
                triggers=[store_trigger(domain)],
                tags=["tsfm", "monitor", domain],
                description=f"score {domain}'s stored forecasts against new actuals, check drift, and emit "
                f"{DOMAIN_DEGRADED} (re-onboarding) when it degraded",
            )
        )
    if sch.watch_interval_s:
        out.append(
            watch_sources_flow.to_deployment(
                name="watch-sources",
                schedules=[IntervalSchedule(interval=timedelta(seconds=sch.watch_interval_s))],
                tags=["tsfm", "watch"],
                description=f"emit {SOURCE_UPDATED} for each source with new data",
            )
        )
    out.append(one_click_deployment(settings))
    return out


def one_click_deployment(settings: Settings):
    """The on-demand onboarding form. Its parameters are the settings' ``onboard`` section without a
    domain or source, so the form opens on the CLI's defaults (params.yaml, TSFM_*) and asks for
    the two things only a person can say."""
    defaults = settings.onboard.model_dump(exclude={"domain", "source"})
    return onboard_domain_flow.to_deployment(
        name=ONE_CLICK,
        parameters={"params": defaults},
        tags=["tsfm", "onboard"],
        description="One-click onboarding: fill in Domain and Source (Horizon if the data has no per-series "
        "horizons) and run; the new domain ends with a served champion, or a one-line reason. "
        "The other fields are `tsfm onboard`'s defaults.",
    )


def _matched(trigger) -> str:
    ids = trigger.match.get("prefect.resource.id")
    return ", ".join(ids) if isinstance(ids, list) else str(ids)


def describe(deployments: list) -> list[dict]:
    """What each deployment runs and when: for `tsfm deploy --dry-run` and tests."""
    rows = []
    for d in deployments:
        when = [
            s.schedule.cron if hasattr(s.schedule, "cron") else f"every {s.schedule.interval.total_seconds():g}s"
            for s in (d.schedules or [])
        ]
        when += [f"on {', '.join(sorted(t.expect))} of {_matched(t)}" for t in d.triggers or []]
        rows.append(
            {
                "name": f"{d.flow_name}/{d.name}",
                "schedule": ", ".join(when) or "on demand",
                "parameters": sorted((d.parameters or {}).get("params", {}).keys())[:6],
            }
        )
    return rows
