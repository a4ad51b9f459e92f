"""Reviewing a fresh project where users look: `tsfm ingest` says what it kept and set aside,
Prefect's state stays in the project (not ~/.prefect), and `tsfm ui` opens MLflow's and
Prefect's UIs on it, with the runs there and the experiments described."""
from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import requests

from infra.servers import free_port
from tests.cli.test_user_mistakes import BIN, _env


def _wait_for_lines(proc: subprocess.Popen, prefixes: tuple[str, ...], timeout: float = 180) -> dict[str, str]:
    found: dict[str, str] = {}
    deadline = time.monotonic() + timeout
    while len(found) < len(prefixes) and time.monotonic() < deadline:
        line = proc.stderr.readline()
        if not line and proc.poll() is not None:
            break
        for prefix in prefixes:
            if line.startswith(prefix):
                found[prefix] = line[len(prefix):].strip()
    assert len(found) == len(prefixes), (found, proc.poll())
    return found


def test_ingest_summary_project_prefect_home_and_tsfm_ui(tmp_path):
    rows = [f"s{i},2020-{m:02d}-01,{10 * i + m}" for i in range(3) for m in range(1, 13)]
    rows.insert(4, "s0,2020-05-01,7,9")  # a field too many: quarantined, the file still ingested
    rows.append("s9,2020-01-01,1")  # a series far too short: dropped whole
    (tmp_path / "shop.csv").write_text("unique_id,ds,y\n" + "\n".join(rows) + "\n")
    env = _env(tmp_path)
    assert "PREFECT_HOME" not in env
    ingest = subprocess.run([str(BIN / "tsfm"), "ingest", "--source", "shop.csv", "--domain", "shop", "--horizon", "2",
                             "--min-train", "2"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert ingest.returncode == 0, ingest.stderr[-3000:]
    err = ingest.stderr
    assert "ingested shop: 38 rows in, 36 kept, 2 quarantined; 3 series; frequency MS, season 12" in err
    assert "1 x row has 4 fields, the header has 3" in err and "1 series dropped whole" in err and "s9" in err
    assert str(tmp_path / "data" / "store" / "shop" / "quarantine.parquet") in err
    assert (tmp_path / "state" / "prefect" / "prefect.db").is_file()  # Prefect's state is the project's

    printed = subprocess.run([str(BIN / "tsfm"), "ui", "--print"], cwd=tmp_path, env=env, capture_output=True,
                             text=True, timeout=60)
    assert "PREFECT_UI_API_URL=http://127.0.0.1:4200/api" in printed.stderr
    assert f"PREFECT_HOME={tmp_path / 'state' / 'prefect'}" in printed.stderr and "mlflow.db" in printed.stderr

    ports = free_port(), free_port()
    ui = subprocess.Popen([sys.executable, "-m", "tsfm_cli.main", "ui", "--mlflow-port", str(ports[0]),
                           "--prefect-port", str(ports[1])], cwd=tmp_path, env=env, stderr=subprocess.PIPE,
                          stdout=subprocess.DEVNULL, text=True, start_new_session=True)
    try:
        urls = _wait_for_lines(ui, ("MLflow UI: ", "Prefect UI: "))
        mlflow_url, prefect_url = urls["MLflow UI: "], urls["Prefect UI: "]
        assert mlflow_url.endswith(f":{ports[0]}") and prefect_url.endswith(f":{ports[1]}")
        runs = requests.post(f"{prefect_url}/api/flow_runs/filter", json={}, timeout=30).json()
        assert [r["state_type"] for r in runs] == ["COMPLETED"]  # the ingest above, in the project's state
        exp = requests.get(f"{mlflow_url}/api/2.0/mlflow/experiments/get-by-name",
                           params={"experiment_name": "tsfm-ingest"}, timeout=30).json()["experiment"]
        tags = {t["key"]: t["value"] for t in exp.get("tags", [])}
        assert "rows in, kept and quarantined" in tags["mlflow.note.content"]  # described, not bare
        assert requests.get(prefect_url, timeout=30).status_code == 200  # the UI itself is served
    finally:
        # SIGTERM: a background job (CI, nohup) starts with SIGINT ignored, and a supervisor sends TERM
        ui.send_signal(signal.SIGTERM)
        assert ui.wait(timeout=60) == 0
    for port in ports:  # both servers stopped with it
        try:
            requests.get(f"http://127.0.0.1:{port}", timeout=2)
            raise AssertionError(f"port {port} still answers after Ctrl-C")
        except requests.ConnectionError:
            pass


def test_every_prefect_home_default_is_under_the_state_folder(tmp_path):
    from infra.settings import Settings, runtime_env

    settings = Settings(paths={"state_dir": tmp_path / "st", "data_dir": tmp_path / "d"})
    assert Path(runtime_env(settings)["PREFECT_HOME"]) == (tmp_path / "st" / "prefect").resolve()
