"""A server reachable from the network needs a token: `tsfm serve --host 0.0.0.0` without one refuses
to start (one line, exit 2, nothing bound); `--insecure` starts it with a warning on every start."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from infra.errors import EXIT_USER_ERROR, InputError
from infra.servers import free_port
from serving.exposure import check_bind, is_loopback
from tests.helpers import _env, _one_message, _tsfm

BIN = Path(sys.executable).parent


def test_loopback_addresses_are_told_apart():
    assert all(is_loopback(h) for h in ("127.0.0.1", "127.0.0.2", "::1", "[::1]", "localhost"))
    assert not any(is_loopback(h) for h in ("0.0.0.0", "::", "10.1.2.3", "192.168.0.1", "no-such-host.invalid"))
    assert check_bind("127.0.0.1", has_token=False, insecure=False) is None
    assert check_bind("0.0.0.0", has_token=True, insecure=False) is None
    with pytest.raises(InputError, match="TSFM_SERVE__TOKEN"):
        check_bind("0.0.0.0", has_token=False, insecure=False)
    assert "WARNING" in check_bind("0.0.0.0", has_token=False, insecure=True)


def test_an_empty_token_is_no_token():
    from infra.settings import ServeParams

    assert ServeParams(token="").token is None and ServeParams(token="  ").token is None
    assert ServeParams(token="s3cret").token.get_secret_value() == "s3cret"


def test_serving_all_interfaces_without_a_token_is_refused(tmp_path):
    port = free_port()
    for args in (["--host", "0.0.0.0"], ["--host", "0.0.0.0", "--mlflow"]):
        proc = _tsfm(tmp_path, "serve", "--port", str(port), *args, timeout=120)
        _one_message(proc, "refusing to serve on 0.0.0.0 without a bearer token", "--insecure")
    # an empty TSFM_SERVE__TOKEN (a template's placeholder) is no token
    proc = _tsfm(
        tmp_path,
        "serve",
        "--host",
        "0.0.0.0",
        "--port",
        str(port),
        env=_env(tmp_path, TSFM_SERVE__TOKEN=""),
        timeout=120,
    )
    assert proc.returncode == EXIT_USER_ERROR, proc.stderr[-2000:]


def test_insecure_serves_with_a_warning_at_start(tmp_path):
    port = free_port()
    proc = subprocess.Popen(
        [str(BIN / "tsfm"), "serve", "--host", "0.0.0.0", "--port", str(port), "--insecure"],
        cwd=tmp_path,
        env=_env(tmp_path),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        deadline = time.time() + 120
        line = ""
        while time.time() < deadline and "tsfm serving" not in line:
            line = proc.stdout.readline()
            assert line or proc.poll() is None, proc.stderr.read()[-3000:]
        assert "tsfm serving" in line and f":{port}/invocations" in line
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    assert "WARNING: serving on 0.0.0.0 with no bearer token (--insecure)" in err, err[-3000:]
