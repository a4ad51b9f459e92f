"""Mistakes the CLI finds before any flow or server starts, through `tsfm`'s own entry point in this
process (each a subprocess would cost seconds): one `error: ` line, exit status 2, no traceback, and
nothing started or written."""

from __future__ import annotations

import pytest

from infra.errors import EXIT_USER_ERROR
from tests.helpers import _env


def _main(capfd, *args: str) -> str:
    from tsfm_cli.main import main

    with pytest.raises(SystemExit) as exit_:
        main(list(args))
    err = capfd.readouterr().err
    assert exit_.value.code == EXIT_USER_ERROR, err[-3000:]
    assert "Traceback" not in err, err[-3000:]
    [line] = [ln for ln in err.splitlines() if ln.startswith("error: ")]
    return line


def test_an_unwritable_forecast_output_and_a_missing_device_fail_before_anything_starts(tmp_path, monkeypatch, capfd):
    for name, value in _env(tmp_path).items():
        if name.startswith("TSFM_"):
            monkeypatch.setenv(name, value)
    monkeypatch.setenv("PREFECT_HOME", str(tmp_path / "state" / "prefect"))  # kept from leaking past the test
    monkeypatch.delenv("TSFM_DEBUG", raising=False)
    (tmp_path / "a.csv").write_text("unique_id,ds,y\n")
    line = _main(capfd, "forecast", "--domain", "d", "--output", str(tmp_path / "a.csv"))
    assert "a.csv is a file, not a folder" in line and "--output" in line
    line = _main(capfd, "serve", "--device", "foo", "--port", "9")
    assert "device 'foo' is not a torch device; valid devices on this machine: cpu" in line
    assert [p.name for p in tmp_path.iterdir()] == ["a.csv"]  # no store, no state, no Prefect API started
