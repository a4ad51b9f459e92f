"""Reading a real Prefect server's REST API in end-to-end tests."""

from __future__ import annotations

import requests


def flow_runs(api: str, deployment: str) -> list[dict]:
    """The flow runs of ``<flow>/<deployment>`` (newest first, at most 20); [] while it does not exist."""
    dep = requests.get(f"{api}/deployments/name/{deployment}", timeout=10)
    if dep.status_code != 200:
        return []
    body = {"deployments": {"id": {"any_": [dep.json()["id"]]}}, "limit": 20}
    return requests.post(f"{api}/flow_runs/filter", json=body, timeout=10).json()
