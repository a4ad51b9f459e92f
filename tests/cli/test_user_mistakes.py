"""A new user's mistakes, made as a user makes them: each is one message on stderr, exit status 2
and no traceback (``--debug`` shows it); help shows the values that apply; a file with another
layout is read or mapped rather than refused."""

from __future__ import annotations

import pandas as pd
import pytest

from infra.errors import EXIT_USER_ERROR, NotFoundError
from tests.helpers import _env, _one_message, _tsfm


def test_file_mistakes_fail_in_a_second_with_one_line(tmp_path):
    (tmp_path / "empty.csv").write_text("")
    (tmp_path / "other.csv").write_text("date,value,series\n2020-01-31,1.5,a\n")
    cases = [
        (["--source", "missing.csv"], ["missing.csv: file not found"]),
        (["--source", "empty.csv"], ["empty.csv: empty file"]),
        (["--source", "other.csv"], ["missing required column", "--columns date=ds"]),
        (["--source", "other.csv", "--columns", "date=ds,value=y"], ["unique_id"]),  # one still missing
        (["--source", "other.csv", "--columns", "date"], ["SOURCE=NAME pairs"]),
        (["--source", "other.csv", "--horizon", "0"], ["--horizon must be >= 1"]),
    ]
    for args, fragments in cases:
        _one_message(_tsfm(tmp_path, "ingest", "--domain", "shop", *args), *fragments)
    assert not (tmp_path / "data").exists() and not (tmp_path / "state").exists()  # nothing written, nothing started
    debug = _tsfm(tmp_path, "ingest", "--domain", "shop", "--source", "missing.csv", "--debug")
    assert debug.returncode != 0 and "Traceback" in debug.stderr and "IngestError" in debug.stderr


def test_unknown_domains_and_versions_name_what_exists(tmp_path, demo_run):
    """Against the demo's registry: a typo in serve, rollback and onboard fails at once and lists
    the domains (or versions) that do exist."""
    settings = demo_run["settings"]
    env = _env(
        tmp_path, TSFM_PATHS__DATA_DIR=str(settings.paths.data_dir), TSFM_PATHS__STATE_DIR=str(settings.paths.state_dir)
    )
    from infra.servers import free_port

    serve = _tsfm(tmp_path, "serve", "--domains", "m3-othr", "--port", str(free_port()), env=env, timeout=60)
    line = _one_message(serve, "m3-othr")
    assert "domains with one:" in line and "m3-other" in line
    line = _one_message(_tsfm(tmp_path, "rollback", "--domain", "m3-other", "--version", "999", env=env), "999")
    assert "v1 (" in line  # the versions there are, with their families
    _one_message(_tsfm(tmp_path, "onboard", "--domain", "nowhere", env=env), "nowhere", "tsfm ingest --source")
    line = _one_message(_tsfm(tmp_path, "monitor", "--domain", "m3-othr", env=env), "m3-othr", "onboard m3-othr first")
    assert "m3-other" in line  # the onboarded domains
    _one_message(
        _tsfm(
            tmp_path, "monitor", "--prometheus-url", "http://p:9090", "--serving-metrics", "http://s/metrics", env=env
        ),
        "not both",
    )


def test_a_horizon_the_data_cannot_hold_says_the_longest_that_fits(tmp_path, prefect_harness, monkeypatch, capfd):
    """Inside a flow run (the ingest task finds it): Prefect's console traceback is kept back too."""
    from tsfm_cli.main import main

    rows = "".join(f"{u},{t},{t % 7}\n" for u, n in (("a", 40), ("b", 30)) for t in range(n))
    (tmp_path / "short.csv").write_text("unique_id,ds,y\n" + rows)
    for name, value in _env(tmp_path).items():
        if name.startswith("TSFM_"):
            monkeypatch.setenv(name, value)
    monkeypatch.delenv("TSFM_DEBUG", raising=False)
    with pytest.raises(SystemExit) as exit_:
        main(["ingest", "--domain", "short", "--source", str(tmp_path / "short.csv"), "--horizon", "30"])
    assert exit_.value.code == EXIT_USER_ERROR
    err = capfd.readouterr().err
    assert "Traceback" not in err, err[-3000:]
    assert "error: " in err and "horizon 30 is too long" in err and "horizon 16 or less fits" in err


def test_help_shows_the_values_that_apply(tmp_path):
    env = _env(tmp_path, TSFM_ONBOARD__HORIZON="13", TSFM_SERVE__PORT="6123")

    def help_of(*command: str) -> str:
        return " ".join(_tsfm(tmp_path, *command, "--help", env=env).stdout.split())  # unwrapped

    onboard = help_of("onboard")
    # the horizon: the one rule of tsfm ingest, tsfm onboard and the deployments (store/horizon.py)
    assert "[default: the domain's `sources` entry, else 13]" in onboard
    assert "[default: by the domain's size, 3 to 30]" in onboard  # val_origins
    assert "<bool>" not in onboard and "--promote / --no-promote" in onboard
    assert "[default: the domain's `sources` entry, else 13]" in help_of("ingest")
    assert "[default: 6123]" in help_of("serve")
    assert "--debug" in help_of()


def test_other_layouts_are_read_and_bad_rows_quarantined(write_file, tmp_path):
    from store.ingest import ingest_to_store
    from store.sources import read_source

    # a European export: ';' between fields, decimal commas
    semi = read_source(str(write_file("semi.csv", "unique_id;ds;y\na;2020-01-31;1,5\na;2020-02-29;-2,25\n")))
    assert semi.frame["y"].tolist() == ["1.5", "-2.25"]
    # other column names, mapped; one row with a field too many is quarantined, the rest kept
    lines = ["when,amount,store"] + [f"2020-{m:02d}-01,{m},s1" for m in range(1, 13)] * 1
    lines.insert(5, "2020-13-01,5,s1,extra")
    path = write_file("shop.csv", "\n".join(lines) + "\n")
    store = ingest_to_store(str(path), "shop", 2, 2, tmp_path, {"when": "ds", "amount": "y", "store": "unique_id"})
    q = pd.read_parquet(store / "quarantine.parquet")
    assert q[["row", "column"]].values.tolist() == [[5, "row"]]
    assert "row has 4 fields, the header has 3" in q["reason"][0] and "extra" in q["reason"][0]
    assert len(pd.read_parquet(store / "series.parquet")) == 12


def test_missing_stores_are_ingested_from_declared_or_remembered_sources(tmp_path, monkeypatch):
    from infra.settings import load_settings
    from tracking.known_sources import missing_ingests

    for name, value in _env(tmp_path).items():
        if name.startswith("TSFM_"):
            monkeypatch.setenv(name, value)
    settings = load_settings()
    todo = missing_ingests(["synthetic", "m3-other"], settings)  # a fresh clone: `tsfm pretrain` ingests these
    assert [(p.domain, p.source, p.horizon) for p in todo] == [
        (d, settings.sources[d].source, settings.sources[d].horizon) for d in ("synthetic", "m3-other")
    ]
    with pytest.raises(NotFoundError, match=r"no data for domain\(s\) typo.*declared in `sources`: m3-other"):
        missing_ingests(["typo"], settings)
