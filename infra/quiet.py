"""A normal run says what it did and nothing else: no third-party warnings meant for library
authors, no download progress bars (``quiet`` is called once per process by the CLI and the server)."""

from __future__ import annotations

import logging
import os
import warnings


def quiet() -> None:
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("DVC_NO_ANALYTICS", "1")
    # Prefect's temporary API server gives up after 20 s by default: on a busy machine (a benchmark or
    # a training run on both cores) a valid command then failed with a traceback before doing anything
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")
    # a batch's Dask cluster: its workers' start/stop chatter is not news (read by dask at import, workers too)
    os.environ.setdefault("DASK_LOGGING__DISTRIBUTED", "warning")
    # tsfm logs models from code with an explicit signature: MLflow's advice to add an example does not apply
    warnings.filterwarnings("ignore", message=".*An input example was not provided.*")
    # "Creating initial MLflow database tables...": once per new store, not news to a user
    logging.getLogger("mlflow.store.db.utils").setLevel(logging.WARNING)
    logging.getLogger("alembic").setLevel(logging.WARNING)
