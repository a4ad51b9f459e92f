"""Which domains tsfm knows a source for: declared in the settings' ``sources``, or remembered by
the registry from an earlier onboarding (the CLI, the Prefect form or another host). The ingest
and onboarding flows, the deployments and the CLI all ask here."""

from __future__ import annotations

import json
from dataclasses import dataclass

from infra.errors import NotFoundError
from infra.settings import IngestParams, Settings, SourceSpec
from store.canonical import META_FILE
from tracking import registry


@dataclass(frozen=True)
class KnownSource:
    """A domain's source: declared in `sources`, or remembered by the registry when it was onboarded."""

    spec: SourceSpec
    declared: bool
    season_length: int | None = None  # the season the user gave when onboarding it, if any


def _remembered(facts: dict, settings: Settings) -> KnownSource | None:
    """A domain's facts as the registry keeps them (text tags) -> its source, None without one."""
    if not facts.get("source"):
        return None
    horizon = int(facts["horizon"]) if str(facts.get("horizon", "")).isdigit() else settings.onboard.horizon
    season = int(facts["season_length"]) if str(facts.get("season_length", "")).isdigit() else None
    columns = json.loads(facts.get("columns") or "{}")  # how it was read when onboarded
    date_format = facts.get("date_format") or None  # "": read with the default rules
    spec = SourceSpec(source=facts["source"], horizon=horizon, columns=columns, date_format=date_format)
    return KnownSource(spec, False, season)


def known_sources(settings: Settings) -> dict[str, KnownSource]:
    """Declared sources first, then every onboarded domain the registry remembers (from the CLI,
    the UI's form or another host), so re-onboarding and watching need no edit of params.yaml."""
    out = {d: KnownSource(spec, True) for d, spec in settings.sources.items()}
    registry.configure(settings)
    for domain, facts in sorted(registry.remembered_domains().items()):
        known = None if domain in out else _remembered(facts, settings)
        if known is not None:
            out[domain] = known
    return out


def missing_ingests(domains: list[str], settings: Settings) -> list[IngestParams]:
    """What to ingest first so that every domain of ``domains`` has a store: a missing store is
    ingested from the domain's `sources` entry, else from the source the registry remembers
    for it. A domain with neither is a ``NotFoundError`` that says how to add it."""
    todo, unknown = [], []
    remembered = None
    for domain in domains:
        if (settings.store_dir(domain) / META_FILE).is_file():
            continue
        spec = settings.sources.get(domain)
        if spec is not None:
            todo.append(IngestParams(domain=domain, **spec.model_dump()))
            continue
        if remembered is None:
            registry.configure(settings)
            remembered = registry.remembered_domains()
        known = _remembered(remembered.get(domain, {}), settings)
        if known is not None:
            todo.append(IngestParams(domain=domain, **known.spec.model_dump(exclude={"min_train"})))
        else:
            unknown.append(domain)
    if unknown:
        stores = sorted(p.name for p in settings.store_dir("").glob("*") if (p / META_FILE).is_file())
        raise NotFoundError(
            f"no data for domain(s) {', '.join(unknown)}: nothing ingested under {settings.store_dir('')} "
            f"and no source declared for it. Ingest it first (tsfm ingest --source PATH --domain "
            f"{unknown[0]}). Ingested: {', '.join(stores) or 'none'}; declared in `sources`: "
            f"{', '.join(sorted(settings.sources)) or 'none'}"
        )
    return todo
