"""Registration is idempotent across processes: two processes registering the same result at the
same moment (a retried flow and its original, two onboardings) end with one model version, and
both are told its number."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import mlflow
from mlflow import MlflowClient

ROOT = Path(__file__).resolve().parents[2]
ROUNDS = 4

RACER = """
import json, os, sys, time
from pathlib import Path
import mlflow
from tracking.registry import register
mlflow.set_tracking_uri(os.environ["URI"]); mlflow.set_registry_uri(os.environ["URI"])
go, uri, out = Path(sys.argv[1]), sys.argv[2], {}
for r in range(int(sys.argv[3])):
    flag = go / f"round-{r}"
    while not flag.exists():
        time.sleep(0.005)
    out[r] = register(uri, "forecaster-race", {"domain": "race"}, result_id=f"result-{r}")
print(json.dumps(out))
"""


def test_two_processes_registering_one_result_make_one_version(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "weights.json").write_text("{}")
    mlflow.set_experiment("race")
    with mlflow.start_run():
        mlflow.log_artifacts(str(tmp_path / "model"), "model")
        model_uri = mlflow.get_artifact_uri("model")
    MlflowClient().create_registered_model("forecaster-race")  # both racers find it: only versions race

    go = tmp_path / "go"
    go.mkdir()
    env = {"URI": uri, "PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"}
    racers = [
        subprocess.Popen(
            [sys.executable, "-c", RACER, str(go), model_uri, str(ROUNDS)],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    time.sleep(8)  # both imported mlflow and are polling
    for r in range(ROUNDS):
        (go / f"round-{r}").touch()
        time.sleep(1.5)
    answers = []
    for proc in racers:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err[-3000:]
        answers.append(json.loads(out.strip().splitlines()[-1]))
    assert answers[0] == answers[1], answers  # both were told the same version for every result
    versions = MlflowClient().search_model_versions("name='forecaster-race'")
    by_result = {}
    for v in versions:
        by_result.setdefault(v.tags["tsfm_result_id"], []).append(v.version)
    assert sorted(by_result) == [f"result-{r}" for r in range(ROUNDS)]
    assert all(len(found) == 1 for found in by_result.values()), by_result
    assert {r: str(found[0]) for r, found in by_result.items()} == {f"result-{r}": v for r, v in answers[0].items()}
