"""Watching the sources for new data as a Prefect task (``store.watch`` does the checking)."""

from __future__ import annotations

from prefect import task

from infra.settings import Settings
from store.watch import watch_sources
from tracking.known_sources import known_sources
from tracking.retries import remote_retries


def watch_known_sources(settings: Settings) -> list[str]:
    """Every declared source and every source an onboarded domain was ingested from."""
    return watch_sources(settings, {d: k.spec for d, k in known_sources(settings).items()})


# retried like ingest: S3 listing may fail transiently; re-checking is harmless
watch_sources_task = task(watch_known_sources, name="watch-sources", **remote_retries())
