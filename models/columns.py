"""The long format every table of series uses: one row per (series, time step)."""

from __future__ import annotations

COLUMNS = ("unique_id", "ds", "y")  # series id, timestamp or integer step, value
ALIASES = {"item_id": "unique_id", "timestamp": "ds", "target": "y"}  # accepted on input
