"""The user-facing entry points as a user runs them: the `tsfm` CLI and `dvc repro`."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def _env(tmp_path: Path) -> dict:
    env = {
        **os.environ,
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "PREFECT_HOME": str(tmp_path / "prefect"),
        "TSFM_PATHS__DATA_DIR": str(tmp_path / "data"),
        "TSFM_PATHS__STATE_DIR": str(tmp_path / "state"),
        "TSFM_PARAMS": str(tmp_path / "none.yaml"),
    }
    return env


def _small_csv(path: Path, n_series: int = 6, length: int = 40) -> Path:
    rng = np.random.default_rng(0)
    rows = [(f"s{i}", t, float(np.sin(t / 3 + i) + rng.normal(0, 0.1))) for i in range(n_series) for t in range(length)]
    pd.DataFrame(rows, columns=["unique_id", "ds", "y"]).to_csv(path, index=False)
    return path


def test_cli_lists_every_command():
    out = subprocess.run([str(BIN / "tsfm"), "--help"], capture_output=True, text=True, check=True).stdout
    for cmd in ("ingest", "pretrain", "onboard", "promote", "rollback", "serve", "deploy", "watch", "evaluate", "demo"):
        assert cmd in out


def test_cli_ingest_reports_bad_file_and_writes_nothing(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("unique_id,when,y\na,1,2\n")
    proc = subprocess.run(
        [str(BIN / "tsfm"), "ingest", "--source", str(bad), "--domain", "bad"],
        capture_output=True,
        text=True,
        env=_env(tmp_path),
        cwd=tmp_path,
    )
    assert proc.returncode != 0
    assert "bad.csv" in proc.stdout + proc.stderr and "ds" in proc.stdout + proc.stderr
    assert not (tmp_path / "data" / "store" / "bad").exists()


def test_dvc_repro_runs_the_ingest_stage(tmp_path):
    work = tmp_path / "repo"
    # the checkout as a clone holds it: no venvs, state, caches or benchmark outputs (GBs in a working copy)
    shutil.copytree(
        REPO,
        work,
        ignore=shutil.ignore_patterns(
            ".venv",
            ".venv-peer",
            ".git",
            ".tsfm",
            "data",
            "__pycache__",
            "*.egg-info",
            ".*_cache",
            ".hypothesis",
            "results",
            "out",
            "test-artifacts",
            "mlruns",
        ),
    )
    csv = _small_csv(tmp_path / "small.csv")
    params = yaml.safe_load((work / "params.yaml").read_text())
    params["sources"] = {"small": {"source": str(csv), "horizon": 4, "min_train": 8}}
    (work / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    env = {**_env(tmp_path), "TSFM_PARAMS": str(work / "params.yaml")}
    env.pop("TSFM_PATHS__DATA_DIR")  # the DVC output lives inside the repo
    run = lambda *cmd: subprocess.run(cmd, cwd=work, env=env, capture_output=True, text=True)  # noqa: E731
    assert run("git", "init", "-q").returncode == 0
    # params.yaml edited, dvc.params.yaml not rewritten yet: the pipeline refuses rather than use old values
    stale = run(str(BIN / "dvc"), "repro", "settings")
    assert stale.returncode != 0 and "tsfm config --write-dvc" in stale.stdout + stale.stderr, stale.stderr[-2000:]
    assert run(str(BIN / "tsfm"), "config", "--write-dvc").returncode == 0
    assert run(str(BIN / "dvc"), "repro", "settings").returncode == 0
    proc = run(str(BIN / "dvc"), "repro", "ingest@small")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    store = work / "data" / "store" / "small"
    assert len(pd.read_parquet(store / "series.parquet")) == 6 * 40
    lock = yaml.safe_load((work / "dvc.lock").read_text())
    outs = lock["stages"]["ingest@small"]["outs"]
    assert outs[0]["path"] == "data/store/small" and outs[0]["md5"]


def test_cli_onboard_rejects_bad_parameters_before_any_work(tmp_path, monkeypatch):
    cases = [
        (["--set", "nope=1"], "--set nope: unknown key; keys are"),
        (["--set", "teacher.k=0"], "--set teacher.k must be >= 1"),
        (["--set", "k=3"], "--set k: unknown key; did you mean teacher.k?"),  # sections are nested
        (["--context-length", "2"], "--context-length must be >= 8"),
    ]
    # as a user runs it: its own process, one message, no traceback, nothing written
    args, fragment = cases[0]
    proc = subprocess.run(
        [str(BIN / "tsfm"), "onboard", "--domain", "x", *args],
        cwd=tmp_path,
        env=_env(tmp_path),
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2 and fragment in proc.stderr, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr and not (tmp_path / ".tsfm").exists()
    # the other cases through the same app in this process (the imports are paid once)
    from typer.testing import CliRunner

    from tsfm_cli.main import app

    for name, value in _env(tmp_path).items():
        if name.startswith("TSFM_") or name == "PREFECT_HOME":
            monkeypatch.setenv(name, value)
    monkeypatch.chdir(tmp_path)
    for args, fragment in cases[1:]:
        res = CliRunner().invoke(app, ["onboard", "--domain", "x", *args])
        assert res.exit_code == 2 and fragment in res.stderr, (args, res.output)
        assert res.exception is None or isinstance(res.exception, SystemExit)
    assert not (tmp_path / ".tsfm").exists()


def test_dvc_yaml_follows_the_settings(monkeypatch):
    """dvc.params.yaml is what `tsfm config --write-dvc` writes from the repository's settings (a stale
    copy fails here, not in a user's `dvc repro`); the pretrain stage depends on the stores of exactly
    `pretrain.domains`; every `${...}` dvc.yaml reads and every param it tracks is in that file."""
    import re

    from infra.settings import load_settings
    from store.dvc_params import FILE, render

    monkeypatch.setenv("TSFM_PARAMS", str(REPO / "params.yaml"))
    for name in [n for n in os.environ if n.startswith("TSFM_") and n != "TSFM_PARAMS"]:
        monkeypatch.delenv(name)
    settings = load_settings()
    assert (REPO / FILE).read_text() == render(settings), f"{FILE} is stale: run `tsfm config --write-dvc`"
    dvc = yaml.safe_load((REPO / "dvc.yaml").read_text())
    assert dvc["vars"] == [FILE]
    stages = dvc["stages"]
    stores = sorted(d.removeprefix("data/store/") for d in stages["pretrain"]["deps"] if d.startswith("data/store/"))
    assert stores == sorted(settings.pretrain.domains)
    params = yaml.safe_load((REPO / FILE).read_text())

    def lookup(ref: str) -> None:
        node = params
        for part in ref.split("."):
            assert isinstance(node, dict) and part in node, f"dvc.yaml reads {ref}, which {FILE} lacks"
            node = node[part]

    for ref in re.findall(r"\$\{([a-z_.]+)\}", (REPO / "dvc.yaml").read_text()):
        if ref.split(".")[0] not in ("item", "key"):
            lookup(ref)
    for stage in stages.values():
        for entry in stage.get("params", []):
            assert isinstance(entry, dict) and list(entry) == [FILE], entry  # never params.yaml: it holds overrides
            for ref in entry[FILE]:
                lookup(ref)
