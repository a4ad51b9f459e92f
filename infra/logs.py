"""Log to the Prefect run when there is one (so it shows in the UI), else to `tsfm`."""

from __future__ import annotations

import logging


def run_logger() -> logging.Logger | logging.LoggerAdapter:
    # prefect is imported here, not at the top: helpers that log (evaluation, store) stay light
    from prefect.exceptions import MissingContextError
    from prefect.logging import get_run_logger

    try:
        return get_run_logger()
    except MissingContextError:
        return logging.getLogger("tsfm")
