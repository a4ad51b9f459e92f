"""Who can reach the server: a non-loopback bind address needs a bearer token, or an explicit
``--insecure`` that is warned about at every start (issue: /invocations and /reload open to the
network by accident)."""

from __future__ import annotations

import ipaddress
import socket

from infra.errors import InputError


def is_loopback(host: str) -> bool:
    """True when every address ``host`` names is a loopback one (127.0.0.0/8, ::1, localhost)."""
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, None)
    except OSError:
        return False  # unresolvable: uvicorn will fail on it anyway; do not call it safe
    return bool(infos) and all(ipaddress.ip_address(info[4][0].split("%")[0]).is_loopback for info in infos)


def check_bind(host: str, has_token: bool, insecure: bool) -> str | None:
    """Raise ``InputError`` for an open server on a non-loopback address unless ``insecure``;
    returns the warning to print at start when it is allowed only because of ``insecure``."""
    if has_token or is_loopback(host):
        return None
    if not insecure:
        raise InputError(
            f"refusing to serve on {host} without a bearer token: /invocations and /reload would be open to "
            "anyone who reaches this address. Set TSFM_SERVE__TOKEN (or serve.token in params.yaml), bind "
            "127.0.0.1, or pass --insecure if something in front of the server authenticates"
        )
    return (
        f"WARNING: serving on {host} with no bearer token (--insecure): anyone who reaches this address can "
        "request forecasts and reload models"
    )
