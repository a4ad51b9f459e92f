"""``python -m serving [--host H] [--port P] [--domains a,b] [--alias A]``: run the server
in the foreground (uvicorn, one worker). Everything else comes from the settings
(``serve:`` in params.yaml, ``TSFM_SERVE__*``; the token only from there, never argv)."""

from __future__ import annotations

import argparse

from serving.server import run


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m serving", description=__doc__)
    p.add_argument("--host")
    p.add_argument("--port", type=int)
    p.add_argument("--domains", help="comma-separated; default: every forecaster-* model with the alias")
    p.add_argument("--alias")
    p.add_argument("--reload-interval-s", type=float)
    p.add_argument("--device")
    p.add_argument(
        "--insecure",
        action="store_true",
        default=None,
        help="serve a non-loopback --host without a token (warned at every start)",
    )
    a = p.parse_args(argv)
    domains = [d.strip() for d in a.domains.split(",") if d.strip()] if a.domains is not None else None
    from infra.errors import EXIT_USER_ERROR, UserError

    try:
        run(
            host=a.host,
            port=a.port,
            domains=domains,
            alias=a.alias,
            reload_interval_s=a.reload_interval_s,
            device=a.device,
            insecure=a.insecure,
        )
    except UserError as e:
        p.exit(EXIT_USER_ERROR, f"error: {e}\n")


if __name__ == "__main__":
    main()
