"""Batch forecasts (`forecast` flow) on the session's demo registry: a fused champion and a statistical one,
inline and on a real 2-worker local Dask cluster, locally and on a real S3 endpoint (moto)."""

from __future__ import annotations

import subprocess
import sys
from datetime import date
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest

from batch import partitions
from infra.settings import ForecastParams
from store.canonical import read_store
from tracking import registry as tracking

BATCH = "m3-batch"  # a domain whose champion is the demo's fused candidate: the neural path on every chunk
ORIGIN = date(2026, 11, 30)
BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def fused_domain(demo_run):
    settings = demo_run["settings"]
    client = tracking.configure(settings)
    fused = demo_run["result"]["onboarded"]["versions"]["fused"]
    mv = client.get_model_version(tracking.forecaster_name("m3-other"), fused)
    name = tracking.forecaster_name(BATCH)
    version = tracking.register(mv.source, name, {**dict(mv.tags), "domain": BATCH})
    tracking.set_alias(name, "champion", version)
    # its series are m3-other's: the store is shared by copying it under the new name
    src = settings.store_dir("m3-other")
    dst = settings.store_dir(BATCH)
    dst.mkdir(parents=True, exist_ok=True)
    for f in src.iterdir():
        if f.is_file():
            (dst / f.name).write_bytes(f.read_bytes())
    return {"settings": settings, "version": version, "root": demo_run["root"]}


def _run(params: ForecastParams) -> dict:
    from flows.forecast import forecast_flow

    return forecast_flow(params)


def _frame(root: str) -> pd.DataFrame:
    df = partitions.read_forecasts(root)
    return df.drop(columns=["created_at"]).sort_values(["unique_id", "ds"]).reset_index(drop=True)


def test_two_dask_workers_write_what_one_process_writes_and_a_failed_chunk_is_retried_alone(
    fused_domain, tmp_path, monkeypatch
):
    root = fused_domain["root"]
    faults = tmp_path / "faults"
    faults.mkdir()
    (faults / "chunk-1").touch()  # chunk 1 fails on its first attempt, on whichever worker runs it
    monkeypatch.setenv("TSFM_FORECAST_FAULTS_DIR", str(faults))
    # what loading an MLflow pyfunc leaves behind: its code/ folder, a partial copy of `models`, first on
    # sys.path (spawned workers inherit it; they must still import the checkout's packages)
    code = tmp_path / "code"
    (code / "models" / "backbone").mkdir(parents=True)
    (code / "models" / "__init__.py").touch()
    (code / "models" / "backbone" / "__init__.py").touch()
    monkeypatch.syspath_prepend(str(code))
    base = dict(domain=BATCH, origin=ORIGIN, chunk_series=60, horizon=6)
    dask = _run(ForecastParams(**base, output=str(root / "fc-dask"), executor="dask", workers=2))
    assert not (faults / "chunk-1").exists() and dask["retried_chunks"] == 1
    assert dask["chunks"] == -(-dask["series"] // 60) >= 3 and dask["workers"] == 2  # both processes did work
    inline = _run(ForecastParams(**base, output=str(root / "fc-inline"), executor="inline"))
    assert inline["retried_chunks"] == 0 and inline["workers"] == 1
    a, b = _frame(str(root / "fc-inline")), _frame(str(root / "fc-dask"))
    pd.testing.assert_frame_equal(a, b)  # exactly: same chunks, same thread count, any worker

    store, _ = read_store(fused_domain["settings"].store_dir(BATCH))
    assert a["unique_id"].nunique() == store["unique_id"].nunique() == dask["series"]
    assert len(a) == dask["rows"] == dask["series"] * 6
    last = store.groupby("unique_id")["ds"].max()
    first = a.groupby("unique_id")["ds"].min()
    assert (first == last.loc[first.index] + 1).all()  # integer steps continue each series' own
    assert (a.groupby("unique_id")["last_ds"].first() == last.loc[first.index]).all()
    assert set(a["family"]) == {"fused"} and set(a["model_version"]) == {fused_domain["version"]}
    q = a[[f"{x:.1f}" for x in np.arange(1, 10) / 10]].to_numpy()
    assert (np.diff(q, axis=1) >= 0).all() and np.isfinite(q).all()
    # the median is the 0.5 quantile, the mean the average of the nine (the expected value's estimate)
    assert (a["median"] == a["0.5"]).all() and np.allclose(a["mean"], a[[f"0.{i}" for i in range(1, 10)]].mean(axis=1))
    assert set(a["origin"].astype(str)) == {"2026-11-30"}

    run = mlflow.get_run(dask["mlflow_run_id"])
    assert run.data.tags["output_uri"] == dask["output_uri"] and run.data.metrics["series"] == dask["series"]
    assert run.data.metrics["retried_chunks"] == 1.0


def test_rerunning_an_origin_replaces_it_and_a_failed_run_leaves_nothing(fused_domain, tmp_path, monkeypatch):
    root = str(tmp_path / "out")
    params = ForecastParams(domain=BATCH, origin=ORIGIN, chunk_series=100, horizon=4, output=root, executor="inline")
    first = _run(params)
    again = _run(params.model_copy(update={"horizon": 3}))
    df = partitions.read_forecasts(root)
    assert len(df) == again["series"] * 3 and not df.duplicated(["unique_id", "ds"]).any()
    assert partitions.manifest(root, "2026-11-30")["run_id"] == again["run_id"] != first["run_id"]
    assert pd.read_parquet(root)["unique_id"].nunique() == again["series"]  # a plain reader agrees

    faults = tmp_path / "faults"
    faults.mkdir()
    (faults / "chunk-0").touch()
    monkeypatch.setenv("TSFM_FORECAST_FAULTS_DIR", str(faults))
    with pytest.raises(Exception, match="injected fault"):
        _run(params.model_copy(update={"retries": 0, "horizon": 2}))
    assert partitions.manifest(root, "2026-11-30")["run_id"] == again["run_id"]  # the old partition stands
    assert sorted(p.name for p in Path(root).iterdir()) == ["origin=2026-11-30"]  # no staging left


def test_a_statistical_champion_forecasts_a_given_source_to_s3(demo_run, tmp_path, moto_endpoint, aws_env):
    import boto3

    aws_env.setenv("AWS_ENDPOINT_URL_S3", moto_endpoint)
    boto3.client("s3").create_bucket(Bucket="planning")
    store, _ = read_store(demo_run["settings"].store_dir("m3-other"))
    keep = store["unique_id"].drop_duplicates().iloc[:7]
    src = store[store["unique_id"].isin(keep)].rename(columns={"ds": "step", "y": "value"})
    path = tmp_path / "latest.csv"
    src.to_csv(path, index=False)
    with open(path, "a") as fh:
        fh.write(f"{keep.iloc[0]},not-a-step,1.0\n")  # quarantined, counted, not fatal
    out = "s3://planning/forecasts/m3"
    params = ForecastParams(
        domain="m3-other",
        source=str(path),
        columns={"step": "ds", "value": "y"},
        origin=ORIGIN,
        horizon=5,
        output=out,
        executor="inline",
    )
    result = _run(params)
    assert result["series"] == 7 and result["rows_quarantined"] == 1 and result["rows"] == 35
    again = _run(params)
    keys = [o["Key"] for o in boto3.client("s3").list_objects_v2(Bucket="planning")["Contents"]]
    parts = [k for k in keys if k.endswith(".parquet")]
    assert len(parts) == 1 and again["run_id"] in parts[0]  # the first run's file deleted after the commit
    assert not any("_staging" in k for k in keys)
    df = partitions.read_forecasts(out)
    name = tracking.forecaster_name("m3-other")
    champion = tracking.alias_version(name, "champion")
    assert len(df) == 35 and set(df["model_version"]) == {champion}
    assert set(df["family"]) == {tracking.version_tags(name, champion)["family"]}


def test_cli_mistakes_are_one_line(demo_run, tmp_path):
    def tsfm(*args):
        return subprocess.run([str(BIN / "tsfm"), "forecast", *args], capture_output=True, text=True, timeout=300)

    proc = tsfm("--domain", "nowhere")
    assert proc.returncode == 2 and "forecaster-nowhere has no version with alias 'champion'" in proc.stderr
    assert "Traceback" not in proc.stderr
    proc = tsfm("--domain", "m3-other", "--source", str(tmp_path / "missing.csv"))
    assert proc.returncode == 2 and "file not found" in proc.stderr and "Traceback" not in proc.stderr
    proc = tsfm("--domain", "m3-other", "--origin", "30/11/2026")
    assert proc.returncode == 2 and "--origin" in proc.stderr


def test_an_adhoc_source_never_replaces_the_domains_batch_nor_writes_an_empty_one(demo_run, tmp_path):
    """`--source other.csv` used to write into the domain's own partition of the day, and a run that
    forecast nothing replaced it with an empty one (exit 0)."""
    from infra.errors import InputError

    settings = demo_run["settings"]
    own = settings.forecast_dir("m3-other")
    before = partitions.origins(own) if Path(own).exists() else []
    rng = np.random.default_rng(0)
    monthly = pd.DataFrame(
        [
            (f"s{i}", d, 100.0 + i + np.sin(k))
            for i in range(3)
            for k, d in enumerate(pd.date_range("2021-01-01", "2023-11-01", freq="MS"))
        ],
        columns=["unique_id", "ds", "y"],
    )
    path = tmp_path / "other.csv"
    monthly.to_csv(path, index=False)
    params = ForecastParams(
        domain="m3-other", source=str(path), origin=date(2023, 11, 30), horizon=3, executor="inline"
    )
    result = _run(params)
    assert result["series"] == 3 and result["output_uri"].startswith(settings.adhoc_forecast_dir("m3-other", str(path)))
    assert (partitions.origins(own) if Path(own).exists() else []) == before  # the domain's batch untouched
    # an origin before the data's last point is refused: it would label forecasts of seen points
    with pytest.raises(InputError, match="before the data's last point"):
        _run(params.model_copy(update={"origin": date(2022, 1, 3)}))
    # irregular stamps: refused as they are read (no frequency fits them); nothing is written
    stamps = pd.Timestamp("2020-01-01") + pd.to_timedelta(np.cumsum(rng.integers(1, 9, size=30)), unit="D")
    irregular = pd.DataFrame(
        [(f"s{i}", d, 1.0 + k) for i in range(3) for k, d in enumerate(stamps)], columns=["unique_id", "ds", "y"]
    )
    odd = tmp_path / "odd.csv"
    irregular.to_csv(odd, index=False)
    out = tmp_path / "odd-out"
    with pytest.raises(InputError, match="no frequency fits the dates in ds"):
        _run(params.model_copy(update={"source": str(odd), "output": str(out), "origin": date(2026, 11, 30)}))
    assert not out.exists() or partitions.origins(str(out)) == []
    # one point per series: no grid to continue; nothing is written and the run fails with the reason
    single = irregular.groupby("unique_id").head(1).assign(ds=lambda f: f["ds"] + pd.to_timedelta([0, 3, 5], unit="D"))
    single.to_csv(odd, index=False)
    with pytest.raises(InputError, match="no series could be forecast") as e:
        _run(params.model_copy(update={"source": str(odd), "output": str(out), "origin": date(2026, 11, 30)}))
    assert "3 series" in str(e.value) and "nothing was written" in str(e.value)
    assert not out.exists() or partitions.origins(str(out)) == []
