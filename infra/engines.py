"""Where a batch's chunks run: a Dask cluster through Prefect's own task runner (prefect-dask), or
one after another in the flow's process.

Dask over Ray (both have a Prefect task runner): the workers here are plain processes that each
load one model and read/write Parquet; Dask's local cluster starts in about 2 s and adds 10 MB of
pure-Python packages, Ray's wheel alone is some 70 MB and its runtime starts a raylet, a GCS and a
dashboard. A cluster elsewhere is an address (``forecast.dask_address``): a Dask scheduler started by
dask-kubernetes, dask-jobqueue on SLURM or by hand (templates in ``infra/``).
"""

from __future__ import annotations

import sys
from contextlib import contextmanager
from pathlib import Path

from infra.settings import ForecastParams

REPO = str(Path(__file__).resolve().parents[1])  # the checkout whose packages the workers must import


def _flow_api_url() -> str | None:
    """The Prefect API this flow run reports to (the ephemeral one too, when no server is configured)."""
    try:
        from prefect.client.orchestration import get_client

        return str(get_client().api_url)
    except Exception:  # noqa: BLE001 - no API: workers run tasks without reporting
        return None


@contextmanager
def _repository_first():
    """Local workers are spawned with this process's ``sys.path``. Loading an MLflow pyfunc model puts
    its ``code/`` folder (a partial copy of ``models``) in front of it for good, and a worker would then
    import ``models`` from there and fail on the first module the copy lacks: the checkout goes first
    while the workers start."""
    saved = list(sys.path)
    sys.path[:] = [REPO, *(p for p in saved if p != REPO)]
    try:
        yield
    finally:
        sys.path[:] = saved


def _dask_runner(params: ForecastParams):
    from prefect_dask import DaskTaskRunner

    class FlowApiDaskTaskRunner(DaskTaskRunner):
        """A local cluster's workers report to the flow's own Prefect API. Without it each worker
        process, finding no PREFECT_API_URL, starts an ephemeral server of its own (seconds and a
        database each) and the flow's UI never sees the chunks."""

        @property
        def client(self):
            if self._client is None and self._cluster is None and not self.address:
                url = _flow_api_url()
                if url:
                    env = {"PREFECT_API_URL": url, **(self.cluster_kwargs.get("env") or {})}
                    self.cluster_kwargs = {**self.cluster_kwargs, "env": env}
                with _repository_first():
                    return DaskTaskRunner.client.fget(self)
            return DaskTaskRunner.client.fget(self)

    if params.dask_address:
        return FlowApiDaskTaskRunner(address=params.dask_address)
    return FlowApiDaskTaskRunner(
        cluster_kwargs={
            "n_workers": params.workers,
            "threads_per_worker": params.threads_per_worker,
            "processes": True,
            "dashboard_address": None,
        }
    )  # no dashboard port to collide with a second run on the machine


def chunk_runner(params: ForecastParams, n_chunks: int):
    """The task runner for ``n_chunks`` chunks: Dask unless ``executor`` is inline, or a single chunk has
    no cluster to go to (a local cluster's start costs more than one chunk)."""
    if params.executor == "dask" and (params.dask_address or n_chunks > 1):
        return _dask_runner(params)
    from prefect.task_runners import ThreadPoolTaskRunner

    return ThreadPoolTaskRunner(max_workers=1)
