"""A crashed onboarding resumes: adapt comes from Prefect's cache, and no model version is duplicated.

`tsfm onboard` runs as a real subprocess on the demo run's registry (its backbone), is SIGKILLed once
adapt has persisted its result, and is run again (adapt Cached, the rest finishes) and a third time
(everything cached or found: no new versions). The domain is `m3-other-resume`, so `fused-m3-other`,
which other tests check, is left alone.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import mlflow

from models.forecasting.kinds import FAMILIES

BIN = Path(sys.executable).parent
REPO = Path(__file__).resolve().parents[2]
DOMAIN = "m3-other-resume"
SOURCE = "builtin:m3-other-monthly"  # M3's 52 monthly "other" series: what is tested is the resume, not the size
CMD = [str(BIN / "tsfm"), "onboard", "--domain", DOMAIN, "--source", SOURCE, "--horizon", "8"]
SMALL = {
    "TSFM_ONBOARD__ADAPTER__EPOCHS": "2",
    "TSFM_ONBOARD__STRIDE": "4",
    "TSFM_ONBOARD__FINETUNE__MAX_STEPS": "0",
    "PREFECT_LOGGING_LEVEL": "INFO",
}


def _env(tmp_path: Path) -> dict[str, str]:
    # a Prefect home of its own: the subprocess runs an ephemeral API, not the test harness
    return {
        **os.environ,
        **SMALL,
        "PREFECT_HOME": str(tmp_path / "prefect"),
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
    }


def _run(env: dict, log: Path) -> tuple[subprocess.CompletedProcess, dict]:
    proc = subprocess.run(CMD, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    log.write_text(proc.stdout + proc.stderr)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    lines = proc.stdout.splitlines()
    start = max(i for i, line in enumerate(lines) if line == "{")  # the printed result comes last
    return proc, json.loads("\n".join(lines[start:]))


def _complete(records: Path, before: set[Path]) -> bool:
    """A new adapt record that is whole: a record caught mid-write (a loaded machine) is no cache hit."""
    for record in set(records.glob("onboard-adapt-*")) - before:
        try:
            json.loads(record.read_text())
            return True
        except (OSError, ValueError):
            continue
    return False


def _versions(settings) -> dict[str, list[str]]:
    client = mlflow.MlflowClient(tracking_uri=settings.tracking_uri, registry_uri=settings.tracking_uri)
    return {
        kind: sorted(str(v.version) for v in client.search_model_versions(f"name='{kind}-{DOMAIN}'"))
        for kind in ("teacher", "adapter", "fused", "forecaster")
    }


def test_killed_onboarding_resumes_from_the_cache_without_duplicate_versions(demo_run, tmp_path):
    settings = demo_run["settings"]
    env = _env(tmp_path)
    records = settings.paths.state_dir.resolve() / "prefect-results"
    results = settings.run_dir("onboard", DOMAIN)
    before = set(records.glob("onboard-adapt-*")) if records.is_dir() else set()

    # 1. start, and SIGKILL the whole process group once adapt's result is persisted
    proc = subprocess.Popen(
        CMD, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    try:
        deadline = time.monotonic() + 400
        while time.monotonic() < deadline and proc.poll() is None:
            if _complete(records, before):
                break
            time.sleep(0.2)
        assert proc.poll() is None, "the onboarding finished (or died) before it could be killed"
        assert _complete(records, before), "adapt did not finish in time"
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    (folder,) = [d for d in results.iterdir() if d.is_dir()]
    assert (folder / "summary.json").is_file()
    adapted_at = (folder / "summary.json").stat().st_mtime_ns
    assert _versions(settings) == {
        "teacher": [],
        "adapter": [],
        "fused": [],
        "forecaster": [],
    }  # killed before register

    # 2. the same command again: adapt is not recomputed, the rest finishes
    second, out2 = _run(env, tmp_path / "second.log")
    logs = second.stdout + second.stderr
    assert "Cached" in next(line for line in logs.splitlines() if "adapt-" in line and "Finished in state" in line)
    assert (folder / "summary.json").stat().st_mtime_ns == adapted_at  # the result folder is untouched
    assert [d for d in results.iterdir() if d.is_dir()] == [folder] and out2["result_dir"] == str(folder)
    assert (folder / "test_metrics.csv").is_file()
    versions = _versions(settings)
    # one version per candidate family (monthly data have no second cycle: no MSTL)
    families = [str(i) for i in range(1, len(set(FAMILIES) - {"mstl"}) + 1)]
    assert versions == {"teacher": ["1"], "adapter": ["1"], "fused": ["1"], "forecaster": families}
    assert out2["fused_version"] == "1"

    # 3. once more: every stage is cached or found, no new versions, the same MLflow run
    third, out3 = _run(env, tmp_path / "third.log")
    logs = third.stdout + third.stderr
    for name in ("adapt-", "evaluate-"):
        assert "Cached" in next(line for line in logs.splitlines() if name in line and "Finished in state" in line)
    assert _versions(settings) == versions
    assert (out3["run_id"], out3["fused_version"]) == (out2["run_id"], "1")
    client = mlflow.MlflowClient(tracking_uri=settings.tracking_uri)
    tags = client.get_model_version(f"fused-{DOMAIN}", "1").tags
    assert tags["tsfm_result_id"] and tags["run_id"] == out2["run_id"]
    runs = client.search_runs(
        [client.get_experiment_by_name("tsfm-onboard").experiment_id],
        f"tags.tsfm_result_id = '{tags['tsfm_result_id']}'",
    )
    assert len(runs) == 1

    # onboarded from the command line with --source, not declared in `sources`: the registry remembers
    # it, so `tsfm deploy` re-ingests and re-onboards it on schedule without an edit of params.yaml
    from flows.deployments import build_deployments

    assert DOMAIN not in settings.sources
    deployments = {d.name: d for d in build_deployments(settings)}
    assert deployments[f"ingest-{DOMAIN}"].parameters["params"]["source"] == SOURCE
    onboard = deployments[f"onboard-{DOMAIN}"].parameters["params"]
    assert (onboard["domain"], onboard["source"], onboard["horizon"]) == (DOMAIN, SOURCE, 8)


def test_a_cache_record_without_its_result_folder_is_recomputed(demo_run, tmp_path):
    """A wiped result folder (another session, a cleaned state dir) is rebuilt, not returned dangling."""
    from infra.settings import OnboardParams
    from tasks.onboard import _adapt_cache_key, adapt_dir, results_storage

    settings = demo_run["settings"]
    params = OnboardParams(domain="m3-other", horizon=8, adapter={"epochs": 2})
    store = str(settings.store_dir("m3-other"))
    inputs = {"params": params, "store_dir": store, "backbone_uri": "models:/backbone@champion", "settings": settings}
    folder = adapt_dir(params, store, "models:/backbone@champion", settings)
    record = results_storage(settings) / f"onboard-adapt-{folder.name}"
    record.parent.mkdir(parents=True, exist_ok=True)
    record.write_text("{}")  # a record of a result whose folder does not exist
    assert not folder.exists()
    assert _adapt_cache_key(None, inputs) == record.name and not record.exists()  # dropped: recompute
    # the key follows the resolved backbone version and the data, not the alias URI or the source
    pinned = f"models:/backbone/{demo_run['result']['backbone'].rsplit('/', 1)[-1]}"
    assert adapt_dir(params, store, pinned, settings) == folder
    assert adapt_dir(params.model_copy(update={"source": "builtin:m3-other"}), store, pinned, settings) == folder
    assert (
        adapt_dir(
            params.model_copy(update={"adapter": params.adapter.model_copy(update={"epochs": 3})}),
            store,
            pinned,
            settings,
        )
        != folder
    )
