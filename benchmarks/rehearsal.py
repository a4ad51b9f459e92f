"""The scale-out rehearsal: every server of the cluster profile, for real, on loopback, started by the
project's own helpers (infra/servers.py), and the pipeline run against them as a team would.

  S3 (a moto server)  <-  mlflow server on PostgreSQL, artifacts in s3://tsfm/mlflow
  PostgreSQL          <-  prefect server (its database too)
  prefect worker      polls the tsfm-process pool and runs flow runs as subprocesses
  dask scheduler + 2 single-threaded workers   <- the chunks of batch forecasts

Then: `prefect deploy --all` of prefect.yaml, two domains onboarded at once through the work pool
(flow runs executed by the worker; both register the shipped backbone on first use, so they race
for it), a batch forecast of one domain through its deployment with the chunks on the Dask cluster,
written to S3, and two `tsfm serve` replicas answering with the champion and following an alias
move. It asserts on the registry (rows in PostgreSQL), the S3 objects and the forecasts, prints a
transcript with timings and exits non-zero on the first failed check.

Usage: python benchmarks/rehearsal.py [--work /tmp/tsfm-rehearsal]     (about 6-10 minutes on 2 cores)
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import psutil
from bench_common import REPO

from infra.servers import (
    LOOPBACK,
    free_port,
    postgres_bin,
    start_dask_scheduler,
    start_dask_worker,
    start_mlflow_server,
    start_postgres,
    start_prefect_server,
    start_prefect_worker,
    stop,
    wait_http,
)

DOMAINS = {"m3-other": "builtin:m3-other", "m3-finance": "builtin:m3-finance"}  # name -> source
SMALL = {"TSFM_ONBOARD__ADAPTER__EPOCHS": "4", "TSFM_ONBOARD__STRIDE": "2", "TSFM_ONBOARD__FINETUNE__MAX_STEPS": "0"}
T0 = time.monotonic()


def say(text: str) -> None:
    print(f"[{time.monotonic() - T0:6.1f}s] {text}", flush=True)


def check(ok: bool, what: str) -> None:
    say(("ok   " if ok else "FAIL ") + what)
    if not ok:
        raise SystemExit(f"rehearsal failed: {what}")


def psql(hostport: str, db: str, sql: str) -> list[list[str]]:
    host, port = hostport.split(":")
    out = subprocess.run(
        [str(postgres_bin("psql")), "-h", host, "-p", port, "-U", "tsfm", "-d", db, "-At", "-F", "\t", "-c", sql],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return [line.split("\t") for line in out.splitlines() if line]


def wait_runs(client, ids: list, timeout: float) -> dict:
    """Flow runs' final states (name -> state), polling the server."""
    deadline, final = time.monotonic() + timeout, {}
    while time.monotonic() < deadline and len(final) < len(ids):
        for i in ids:
            run = client.read_flow_run(i)
            if run.state and run.state.is_final():
                final[run.name] = run.state.type.value
        time.sleep(3)
    return final


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", default="/tmp/tsfm-rehearsal")
    ap.add_argument("--keep", action="store_true", help="leave the servers running (Ctrl-C stops them)")
    args = ap.parse_args()
    root = Path(args.work)
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    procs: list = []
    try:
        import logging

        from moto.server import ThreadedMotoServer

        logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one line per S3 request otherwise

        s3 = ThreadedMotoServer(ip_address=LOOPBACK, port=free_port())
        s3.start()
        s3_url = "http://{}:{}".format(*s3.get_host_and_port())
        aws = {
            "AWS_ACCESS_KEY_ID": "rehearsal",
            "AWS_SECRET_ACCESS_KEY": "rehearsal",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_ENDPOINT_URL_S3": s3_url,
            "MLFLOW_S3_ENDPOINT_URL": s3_url,
        }
        os.environ.update(aws)
        import boto3

        boto3.client("s3").create_bucket(Bucket="tsfm")
        say(f"S3 (moto) at {s3_url}, bucket tsfm")
        pg, hostport = start_postgres(root / "postgres")
        procs.append(pg)
        say(f"PostgreSQL {postgres_bin('postgres').parts[-3]} at {hostport} (databases mlflow, prefect)")
        ml, ml_url = start_mlflow_server(
            root / "mlflow",
            backend_uri=f"postgresql+psycopg2://tsfm@{hostport}/mlflow",
            artifacts="s3://tsfm/mlflow",
            env=aws,
            workers=2,
        )
        procs.append(ml)
        say(f"mlflow server at {ml_url} (PostgreSQL store, artifacts in s3://tsfm/mlflow)")
        pf, api = start_prefect_server(root / "prefect", database_url=f"postgresql+asyncpg://tsfm@{hostport}/prefect")
        procs.append(pf)
        say(f"prefect server at {api} (PostgreSQL)")
        sched, address = start_dask_scheduler(root)
        procs.append(sched)
        env = {
            **aws,
            "TSFM_PROFILE": "cluster",
            "TSFM_MLFLOW__TRACKING_URI": ml_url,
            "TSFM_MLFLOW__ARTIFACT_ROOT": "s3://tsfm/mlflow",
            "TSFM_PREFECT__API_URL": api,
            "PREFECT_API_URL": api,
            "TSFM_S3__ENDPOINT_URL": s3_url,
            "TSFM_FORECAST__DASK_ADDRESS": address,
            "TSFM_PATHS__DATA_DIR": str(root / "data"),
            "TSFM_PATHS__STATE_DIR": str(root / "state"),
            "TSFM_PARAMS": str(root / "no-params.yaml"),
            "PREFECT_HOME": str(root / "prefect-client"),
            "PREFECT_LOGGING_LEVEL": "WARNING",
            "MLFLOW_DISABLE_TELEMETRY": "true",
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            **SMALL,
        }
        os.environ.update(env)
        dask_workers = [start_dask_worker(root, address, f"w{i}", env) for i in range(2)]
        procs += dask_workers
        say(f"dask scheduler at {address} with 2 workers (1 thread each)")

        from prefect.client.orchestration import get_client
        from prefect.client.schemas.actions import WorkPoolCreate

        with get_client(sync_client=True) as client:
            client.create_work_pool(WorkPoolCreate(name="tsfm-process", type="process"), overwrite=True)
            client.create_work_pool(WorkPoolCreate(name="tsfm-k8s", type="process"), overwrite=True)  # not used here
        # prefect.yaml's flow runs start in the image's /opt/tsfm; here, in this checkout
        deploy_file = root / "prefect.yaml"
        deploy_file.write_text(
            (REPO / "prefect.yaml").read_text().replace("directory: /opt/tsfm", f"directory: {REPO}")
        )
        proc = subprocess.run(
            [
                str(Path(sys.executable).parent / "prefect"),
                "--no-prompt",
                "deploy",
                "--all",
                "--prefect-file",
                str(deploy_file),
            ],
            cwd=REPO,
            env={**os.environ, **env},
            capture_output=True,
            text=True,
            timeout=300,
        )
        check(
            proc.returncode == 0,
            "prefect deploy --all registered prefect.yaml's deployments"
            + ("" if proc.returncode == 0 else "\n" + (proc.stdout + proc.stderr)[-3000:]),
        )
        procs.append(start_prefect_worker(root, "tsfm-process", env, cwd=REPO))
        say("prefect process worker polling tsfm-process")

        from prefect.deployments import run_deployment

        t = time.monotonic()
        runs = [
            run_deployment(
                "onboard_domain/one-click-onboarding",
                timeout=0,
                flow_run_name=f"onboard-{d}",
                parameters={"params": {"domain": d, "source": src, "horizon": 8}},
            )
            for d, src in DOMAINS.items()
        ]
        say(f"two onboardings submitted to the work pool at once: {', '.join(r.name for r in runs)}")
        with get_client(sync_client=True) as client:
            states = wait_runs(client, [r.id for r in runs], 1800)
            ran_by = {r.name: client.read_flow_run(r.id).work_pool_name for r in runs}
        check(
            states == {f"onboard-{d}": "COMPLETED" for d in DOMAINS},
            f"both onboardings completed on the worker in {time.monotonic() - t:.0f}s: {states} (pools {ran_by})",
        )

        # the registry, as PostgreSQL holds it
        live = "current_stage != 'Deleted_Internal'"  # MLflow keeps a deleted version's row, marked so
        versions = psql(
            hostport, "mlflow", f"select name, count(*) from model_versions where {live} group by name order by name"
        )
        aliases = dict(
            ((n, a), v)
            for n, a, v in psql(hostport, "mlflow", "select name, alias, version from registered_model_aliases")
        )
        shipped = psql(
            hostport,
            "mlflow",
            "select t.version from model_version_tags t join model_versions v on "
            "v.name = t.name and v.version = t.version where t.name = 'backbone' "
            f"and t.key = 'shipped_default' and v.{live}",
        )
        raced = psql(hostport, "mlflow", "select count(*) from model_versions where name = 'backbone'")[0][0]
        say("registry in PostgreSQL: " + ", ".join(f"{n} x{c}" for n, c in versions))
        check(
            len(shipped) == 1,
            "the shipped backbone is registered once although both runs asked for it at once "
            f"({raced} version(s) created, the later ones deleted by the create-then-resolve rule)",
        )
        for d in DOMAINS:
            check(
                (f"forecaster-{d}", "champion") in aliases,
                f"forecaster-{d}@champion = v{aliases.get((f'forecaster-{d}', 'champion'))}",
            )
        families = dict(
            psql(
                hostport, "mlflow", "select name || '/' || version, value from model_version_tags where key = 'family'"
            )
        )
        objects = [
            o["Key"]
            for p in boto3.client("s3").get_paginator("list_objects_v2").paginate(Bucket="tsfm")
            for o in p.get("Contents", [])
        ]
        check(
            sum(k.startswith("mlflow/") for k in objects) > 20,
            f"model artifacts in S3: {sum(k.startswith('mlflow/') for k in objects)} objects under s3://tsfm/mlflow/",
        )

        # batch forecast through the deployment: the worker runs the flow, Dask runs the chunks, S3 holds it
        t = time.monotonic()
        out = "s3://tsfm/forecasts/m3-other"
        run = run_deployment(
            "forecast/forecast-m3-other",
            timeout=900,
            flow_run_name="forecast-m3-other",
            parameters={"params": {"domain": "m3-other", "output": out, "origin": "2026-11-30", "chunk_series": 50}},
        )
        check(
            run.state.is_completed(), f"batch forecast flow run {run.state.type.value} in {time.monotonic() - t:.0f}s"
        )
        from batch import partitions

        df = partitions.read_forecasts(out)
        manifest = partitions.manifest(out, "2026-11-30")
        champion = aliases[("forecaster-m3-other", "champion")]
        check(
            len(df) > 0 and set(df["model_version"]) == {champion} and not df.duplicated(["unique_id", "ds"]).any(),
            f"{df['unique_id'].nunique()} series x {len(df) // max(df['unique_id'].nunique(), 1)} steps in {out}/"
            f"origin=2026-11-30 by forecaster-m3-other v{champion} ({families.get(f'forecaster-m3-other/{champion}')})",
        )
        dask_pids = {
            c.pid for p in dask_workers for c in [psutil.Process(p.pid), *psutil.Process(p.pid).children(True)]
        }
        check(
            manifest["chunks"] >= 3 and set(manifest["worker_pids"]) <= dask_pids and len(manifest["worker_pids"]) == 2,
            f"{manifest['chunks']} chunks ran on both Dask worker processes {manifest['worker_pids']}; the manifest "
            f"lists {len(manifest['files'])} files",
        )

        # serving beside batch: two replicas on one registry follow the same alias move
        ports = [free_port(), free_port()]
        serve_env = {**os.environ, **env, "TSFM_SERVE__RELOAD_INTERVAL_S": "1"}
        servers = [
            subprocess.Popen(
                [sys.executable, "-m", "tsfm_cli.main", "serve", "--port", str(p)],
                env=serve_env,
                stdout=open(root / f"serve-{p}.log", "w"),
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            for p in ports
        ]
        procs += servers
        for p, s in zip(ports, servers):
            wait_http(f"http://{LOOPBACK}:{p}/ping", s, 180, "tsfm serve", root / f"serve-{p}.log")
        import pandas as pd
        import requests

        store = pd.read_parquet(root / "data" / "store" / "m3-other" / "series.parquet")
        one = store[store["unique_id"] == store["unique_id"].iloc[0]]
        body = {
            "dataframe_split": {
                "columns": ["unique_id", "ds", "y"],
                "data": [[u, int(d), float(y)] for u, d, y in one[["unique_id", "ds", "y"]].values],
            },
            "params": {"horizon": 6, "domain": "m3-other"},
        }

        def answered() -> list[str]:
            return [
                requests.post(f"http://{LOOPBACK}:{p}/invocations", json=body, timeout=60).headers["X-Tsfm-Model"]
                for p in ports
            ]

        before = answered()
        check(all(f"/{champion} " in h for h in before), f"both replicas answer with the champion: {before}")
        other = next(
            k.split("/")[1]
            for k, v in families.items()
            if k.startswith("forecaster-m3-other/") and k.split("/")[1] != champion
        )
        from mlflow import MlflowClient

        MlflowClient(ml_url, ml_url).set_registered_model_alias("forecaster-m3-other", "champion", other)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not all(f"/{other} " in h for h in answered()):
            time.sleep(1)
        after = answered()
        check(
            all(f"/{other} " in h for h in after),
            f"after the alias move to v{other} both replicas answer with it: {after}",
        )
        say(f"rehearsal passed in {time.monotonic() - T0:.0f}s")
        (root / "result.json").write_text(
            json.dumps(
                {
                    "seconds": round(time.monotonic() - T0),
                    "states": states,
                    "versions": versions,
                    "forecast_rows": len(df),
                },
                indent=2,
            )
        )
        if args.keep:
            say("servers kept running; Ctrl-C stops them")
            while True:
                time.sleep(3600)
    finally:
        for p in reversed(procs):
            stop(p)


if __name__ == "__main__":
    main()
