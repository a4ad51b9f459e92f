"""Prefect deployments of tsfm (wiring only): what `tsfm deploy` serves on one machine.

- ``ingest-<domain>``: refresh each source's store (cron ``schedules.ingest_cron``);
- ``retrain-backbone``: pre-train on the ingested domains (``schedules.retrain_cron``);
- ``onboard-<domain>``: re-onboard each scheduled domain (``schedules.onboard_cron``);
- ``onboard_domain``: on demand, the one-click onboarding whose parameter form is
  ``OnboardParams`` (the Prefect UI renders and validates it before the run starts).
Parameters come from the same settings (params.yaml / TSFM_*) as the CLI and DVC.
"""
from __future__ import annotations

from prefect.client.schemas.schedules import CronSchedule

from flows.ingest import ingest_flow
from flows.onboard_domain import onboard_domain_flow
from flows.pretrain import pretrain_flow
from infra.settings import IngestParams, OnboardParams, Settings

PRETRAIN_ONLY = {"synthetic"}  # generated corpora are not domains anyone forecasts


def _schedules(cron: str | None, timezone: str) -> list:
    return [CronSchedule(cron=cron, timezone=timezone)] if cron else []


def scheduled_domains(settings: Settings) -> list[str]:
    return settings.schedules.onboard_domains or [d for d in settings.sources if d not in PRETRAIN_ONLY]


def build_deployments(settings: Settings) -> list:
    """RunnerDeployments (not yet applied) for ``prefect serve``-style hosting."""
    sch = settings.schedules
    out = []
    for domain, spec in settings.sources.items():
        params = IngestParams(domain=domain, **spec.model_dump())
        out.append(ingest_flow.to_deployment(
            name=f"ingest-{domain}", schedules=_schedules(sch.ingest_cron, sch.timezone),
            parameters={"params": params.model_dump()}, tags=["tsfm", "ingest", domain],
            description=f"refresh the {domain} store from {spec.source}"))
    out.append(pretrain_flow.to_deployment(
        name="retrain-backbone", schedules=_schedules(sch.retrain_cron, sch.timezone),
        parameters={"params": settings.pretrain.model_dump()}, tags=["tsfm", "pretrain"],
        description="pre-train a backbone on the ingested domains and register it"))
    for domain in scheduled_domains(settings):
        spec = settings.sources.get(domain)
        params = settings.onboard.model_copy(update={"domain": domain, "source": None,
                                                     "horizon": spec.horizon if spec else settings.onboard.horizon})
        out.append(onboard_domain_flow.to_deployment(
            name=f"onboard-{domain}", schedules=_schedules(sch.onboard_cron, sch.timezone),
            parameters={"params": OnboardParams.model_validate(params.model_dump()).model_dump()},
            tags=["tsfm", "onboard", domain], description=f"re-onboard {domain} onto the champion backbone"))
    out.append(onboard_domain_flow.to_deployment(
        name="onboard_domain", tags=["tsfm", "onboard"],
        description="one-click onboarding: a domain name and a source URI take a new domain to a served champion"))
    return out


def describe(deployments: list) -> list[dict]:
    """What each deployment runs and when: for `tsfm deploy --dry-run` and tests."""
    rows = []
    for d in deployments:
        crons = [s.schedule.cron for s in (d.schedules or []) if hasattr(s.schedule, "cron")]
        rows.append({"name": f"{d.flow_name}/{d.name}", "schedule": ", ".join(crons) or "on demand",
                     "parameters": sorted((d.parameters or {}).get("params", {}).keys())[:6]})
    return rows
