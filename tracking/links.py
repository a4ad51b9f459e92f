"""Links into the MLflow UI, built in one place: only an HTTP tracking server has a UI to link to."""

from __future__ import annotations


def ui_base(tracking_uri: str) -> str | None:
    """The UI's address, or None for a tracking URI with no UI (sqlite, a folder)."""
    return tracking_uri.rstrip("/") if tracking_uri.startswith(("http://", "https://")) else None


def run_url(tracking_uri: str, experiment_id: str, run_id: str) -> str | None:
    base = ui_base(tracking_uri)
    return f"{base}/#/experiments/{experiment_id}/runs/{run_id}" if base else None


def run_link(tracking_uri: str, experiment_id: str, run_id: str) -> str:
    """The run's UI address, or where to find it when there is no UI."""
    return run_url(tracking_uri, experiment_id, run_id) or f"run {run_id} in {tracking_uri}"
