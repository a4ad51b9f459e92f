"""Ingesting a source as Prefect tasks: validate and write the domain's store, then record it
in MLflow (counts, quarantine, the dataset digest DVC records for the store)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import mlflow
from prefect import task

from infra.errors import NotFoundError
from infra.settings import IngestParams, Settings, SourceSpec
from store.canonical import META_FILE, QUARANTINE_FILE, read_meta
from store.ingest import ingest_to_store
from tracking import registry
from tracking.datasets import log_store_input
from tracking.retries import remote_retries


# Retried (S3 reads) only on transient errors: bad input (IngestError/ValueError) fails at once.
@task(name="ingest", **remote_retries())
def ingest_task(source: str, domain: str, horizon: int, min_train: int = 8, data_dir: str = "data",
                columns: dict[str, str] | None = None, date_format: str | None = None) -> str:
    """Ingest ``source`` into ``<data_dir>/store/<domain>``; returns that path."""
    return str(ingest_to_store(source, domain, horizon, min_train, Path(data_dir), columns, date_format))


@task(name="log-ingest", **remote_retries())
def log_ingest_task(store_dir: str, settings: Settings) -> str:
    """Log the ingest run (tsfm-ingest experiment); returns its run id."""
    meta = read_meta(store_dir)
    registry.use_experiment("ingest", settings)
    with mlflow.start_run(run_name=f"ingest-{meta['domain']}") as run:
        mlflow.log_params({k: meta[k] for k in ("domain", "source", "horizon", "min_train", "freq")})
        mlflow.log_metrics({k: float(meta[k]) for k in ("n_series", "rows_in", "rows_kept", "rows_quarantined")})
        mlflow.set_tags({"data_version": meta["md5"], "git_commit": registry.git_commit(), "domain": meta["domain"]})
        # digest = what DVC records for the store (dvc.lock), so the run points at a DVC version
        dataset = log_store_input(store_dir, context="ingest")
        mlflow.set_tag("dvc_md5", dataset.digest)
        for name in (META_FILE, QUARANTINE_FILE):
            mlflow.log_artifact(str(Path(store_dir) / name), artifact_path="store")
    return run.info.run_id


@task(name="announce-store")
def announce_store_task(store_dir: str) -> str | None:
    """``tsfm.store.updated`` when this ingest changed the store's data (md5) since the version before it:
    new actuals for the monitor (its deployment's trigger). A first ingest or unchanged data: no event."""
    from infra.events import STORE_UPDATED, emit, store_resource
    from store.ingest import previous_version

    meta = read_meta(store_dir)
    before = previous_version(Path(store_dir))
    if before is None or before[1].get("md5") == meta["md5"]:
        return None
    return emit(STORE_UPDATED, store_resource(meta["domain"]), meta["domain"],
                {"domain": meta["domain"], "data_version": meta["md5"], "previous": before[1].get("md5"),
                 "n_series": meta.get("n_series"), "rows_kept": meta.get("rows_kept")})


def default_horizon(domain: str, settings: Settings) -> int:
    """The held-out horizon of an ingest that names none: the domain's `sources` entry, else onboard.horizon."""
    spec = settings.sources.get(domain)
    return spec.horizon if spec is not None else settings.onboard.horizon


def ingest_params(params: IngestParams, settings: Settings) -> IngestParams:
    """``params`` with the settings' horizon where it has none."""
    if params.horizon is not None:
        return params
    return params.model_copy(update={"horizon": default_horizon(params.domain, settings)})


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
    return KnownSource(SourceSpec(source=facts["source"], horizon=horizon), False, season)


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
            todo.append(IngestParams(domain=domain, source=spec.source, horizon=spec.horizon,
                                     min_train=spec.min_train))
            continue
        if remembered is None:
            registry.configure(settings)
            remembered = registry.remembered_domains()
        known = _remembered(remembered.get(domain, {}), settings)
        if known is not None:
            todo.append(IngestParams(domain=domain, source=known.spec.source, horizon=known.spec.horizon))
        else:
            unknown.append(domain)
    if unknown:
        stores = sorted(p.name for p in settings.store_dir("").glob("*") if (p / META_FILE).is_file())
        raise NotFoundError(
            f"no data for domain(s) {', '.join(unknown)}: nothing ingested under {settings.store_dir('')} "
            f"and no source declared for it. Ingest it first (tsfm ingest --source PATH --domain "
            f"{unknown[0]}). Ingested: {', '.join(stores) or 'none'}; declared in `sources`: "
            f"{', '.join(sorted(settings.sources)) or 'none'}")
    return todo
