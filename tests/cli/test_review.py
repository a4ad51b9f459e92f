"""Reviewing a fresh project where users look: `tsfm ingest` says what it kept and set aside,
Prefect's state stays in the project (not ~/.prefect), and `tsfm ui --print` says what it would
start on it."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import requests

from tests.helpers import BIN, _env


def test_ingest_summary_project_prefect_home_and_tsfm_ui_commands(tmp_path):
    rows = [f"s{i},2020-{m:02d}-01,{10 * i + m}" for i in range(3) for m in range(1, 13)]
    rows.insert(4, "s0,2020-05-01,7,9")  # a field too many: quarantined, the file still ingested
    rows.append("s9,2020-01-01,1")  # a series far too short: dropped whole
    (tmp_path / "shop.csv").write_text("unique_id,ds,y\n" + "\n".join(rows) + "\n")
    env = _env(tmp_path)
    assert "PREFECT_HOME" not in env
    ingest = subprocess.run(
        [str(BIN / "tsfm"), "ingest", "--source", "shop.csv", "--domain", "shop", "--horizon", "2", "--min-train", "2"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert ingest.returncode == 0, ingest.stderr[-3000:]
    err = ingest.stderr
    assert "ingested shop: 38 rows in, 36 kept, 2 quarantined; 3 series; frequency MS, season 12" in err
    assert "1 x row has 4 fields, the header has 3" in err and "1 series dropped whole" in err and "s9" in err
    assert str(tmp_path / "data" / "store" / "shop" / "quarantine.parquet") in err
    assert (tmp_path / "state" / "prefect" / "prefect.db").is_file()  # Prefect's state is the project's
    # the ingest's flow run, on the project's own Prefect API (started by that command, still up)
    api = json.loads((tmp_path / "state" / "prefect-api.json").read_text())["url"]
    runs = requests.post(f"{api}/flow_runs/filter", json={}, timeout=30).json()
    assert [r["state_type"] for r in runs] == ["COMPLETED"]
    # MLflow's experiment is described for a reviewer, not bare
    from mlflow import MlflowClient

    exp = MlflowClient(f"sqlite:///{tmp_path / 'state' / 'mlflow.db'}").get_experiment_by_name("tsfm-ingest")
    assert "rows in, kept and quarantined" in exp.tags["mlflow.note.content"]

    printed = subprocess.run(
        [str(BIN / "tsfm"), "ui", "--print"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60
    )
    assert "PREFECT_UI_API_URL=http://127.0.0.1:4200/api" in printed.stderr
    assert f"PREFECT_HOME={tmp_path / 'state' / 'prefect'}" in printed.stderr and "mlflow.db" in printed.stderr
    # `tsfm ui` itself (MLflow's and Prefect's UIs, the one-click form) on a fresh project:
    # tests/integration/test_one_click.py


def test_every_prefect_home_default_is_under_the_state_folder(tmp_path):
    from infra.settings import Settings, runtime_env

    settings = Settings(paths={"state_dir": tmp_path / "st", "data_dir": tmp_path / "d"})
    assert Path(runtime_env(settings)["PREFECT_HOME"]) == (tmp_path / "st" / "prefect").resolve()
