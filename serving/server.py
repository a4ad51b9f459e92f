"""Start the serving app with uvicorn: settings + overrides -> one worker in the foreground."""

from __future__ import annotations

import logging
import sys

from infra.params import build_params
from infra.quiet import quiet
from infra.settings import ServeParams, Settings, apply_runtime_env, load_settings


def run(settings: Settings | None = None, params: ServeParams | None = None, **overrides) -> None:
    """``params``: ready serving parameters; else ``settings.serve`` with the given (non-None) overrides."""
    quiet()  # no progress bars or library advice in the server's log
    settings = settings or load_settings()
    apply_runtime_env(settings)  # the profile's S3 endpoint etc., before mlflow/boto3 are imported
    params = params or build_params(ServeParams, settings.serve, named=overrides)

    import uvicorn

    from serving.app import create_app
    from serving.catalog import check_device, check_served
    from serving.exposure import check_bind

    warning = check_bind(params.host, params.token is not None, params.insecure)  # before anything is loaded
    check_device(params.device)  # a device this machine lacks fails now, not as 503 forever
    found = check_served(settings.tracking_uri, params.domains, params.alias)  # fails now on a domain without one
    if not found:
        print(
            f"no forecaster-*@{params.alias} yet: serving nothing until a domain gets one "
            "(tsfm onboard --domain NAME --source PATH)",
            flush=True,
        )
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    app = create_app(params, settings.tracking_uri, max_champion_age_s=settings.monitor.max_champion_age_days * 86400)
    served = ", ".join(params.domains) or f"every forecaster-* model @{params.alias}"
    if warning:
        print(warning, file=sys.stderr, flush=True)
    print(
        f"tsfm serving {served} on http://{params.host}:{params.port}/invocations"
        + (" (bearer token required)" if params.token else ""),
        flush=True,
    )
    # one worker: the backbones are loaded once and every request shares the micro-batcher
    uvicorn.run(app, host=params.host, port=params.port, workers=1, log_level="info", access_log=False)
