"""Watching the sources for new data as a Prefect task (``store.watch`` does the checking)."""
from __future__ import annotations

from prefect import task

from store.watch import watch_sources
from tracking.retries import remote_retries

# retried like ingest: S3 listing may fail transiently; re-checking is harmless
watch_sources_task = task(watch_sources, name="watch-sources", **remote_retries())
