"""Serving benchmark (issue 5): tsfm's multi-domain server vs MLflow's scoring server.

Both serve the same registered fused model (the domain's newest ``fused-<domain>`` version,
registered as ``forecaster-bench0..9@champion``) over HTTP on 127.0.0.1 with the same request
body (one series of real data per request,
MLflow's ``dataframe_split`` protocol). For 1, 8 and 32 concurrent clients it
prints throughput (requests/s) and p50/p99 latency, and the ratio of the two
servers. Then it measures the resident memory of one tsfm server process serving
1 vs 10 domains (the backbone is loaded once), next to what 1 and 10 MLflow
scoring servers (one process per model) take.

The state is what `make demo` leaves (``.tsfm`` and ``data``; ``--state``/``--data`` for another
one). Its MLflow database is copied into ``--work`` so the ten bench domains this script
registers never touch it.

Usage: python benchmarks/serving_throughput.py [--state .tsfm --data data] [--domain m3-other] [--clients 1,8,32]

``--families``: instead, the latency of one request for 64 known series (their whole stored history)
served by the domain's newest ensemble version against its fused model alone, in one tsfm server,
and the same series under names the ensemble has not seen (its statistical members refit them).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import requests
from bench_common import (
    REPO,
    failed_requests,
    machine,
    markdown_table,
    run_threads,
    store_horizon,
    warn_if_busy,
    write_json,
)

from infra.servers import free_port, stop, wait_http


def bench_state(source: Path, work: Path, domain: str, n_domains: int) -> tuple[str, list[str]]:
    """A copy of ``source``'s MLflow db in ``work`` where ``forecaster-bench0`` .. ``bench<n-1>`` each
    have the domain's fused candidate (its newest ``fused-<domain>`` version) as champion: both
    servers then serve the same neural model whatever family the domain's own gate chose."""
    import mlflow
    from mlflow import MlflowClient

    work.mkdir(parents=True, exist_ok=True)
    db = work / "mlflow.db"
    shutil.copy(source / "mlflow.db", db)
    uri = f"sqlite:///{db.resolve()}"
    mlflow.set_tracking_uri(uri)  # the registry resolves a version's models:/m-<id> source here
    mlflow.set_registry_uri(uri)
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    fused = max(client.search_model_versions(f"name='fused-{domain}'"), key=lambda v: int(v.version))
    domains = []
    for i in range(n_domains):
        name = f"forecaster-bench{i}"
        client.create_registered_model(name)
        mv = client.create_model_version(
            name, fused.source, tags={**fused.tags, "family": "fused", "domain": f"bench{i}"}
        )
        client.set_registered_model_alias(name, "champion", mv.version)
        domains.append(f"bench{i}")
    return uri, domains


def context_series(data: Path, domain: str, context: int) -> list[dict]:
    """Request bodies: one real series' last ``context`` points each (up to 64 bodies)."""
    import pandas as pd

    store = data / "store" / domain
    df = pd.read_parquet(store / "series.parquet")
    bodies = []
    for uid, g in df.groupby("unique_id", sort=False):
        g = g.sort_values("ds").tail(context)
        ds = g["ds"].astype(str) if not pd.api.types.is_integer_dtype(g["ds"]) else g["ds"]
        bodies.append(
            {
                "dataframe_split": {
                    "columns": ["unique_id", "ds", "y"],
                    "data": [[str(uid), d, float(y)] for d, y in zip(ds, g["y"])],
                }
            }
        )
        if len(bodies) == 64:
            break
    return bodies


def start(cmd: list[str], env: dict, log: Path) -> subprocess.Popen:
    env = {**os.environ, **env, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    with open(log, "w") as out:
        return subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True, cwd=REPO)


def tree_rss_mib(proc: subprocess.Popen) -> float:
    p = psutil.Process(proc.pid)
    return sum(q.memory_info().rss for q in [p, *p.children(recursive=True)]) / 2**20


def load(url: str, bodies: list[dict], params: dict, clients: int, per_client: int, headers=None) -> dict:
    """``clients`` threads, each sending ``per_client`` requests back to back."""
    latencies: list[float] = []
    errors = [0]
    lock = threading.Lock()

    def client(k: int) -> None:
        s = requests.Session()
        mine = []
        for i in range(per_client):
            body = {**bodies[(k * per_client + i) % len(bodies)], "params": params}
            t = time.perf_counter()
            r = s.post(f"{url}/invocations", json=body, headers=headers, timeout=300)
            mine.append(time.perf_counter() - t)
            if r.status_code != 200:
                with lock:
                    errors[0] += 1
        with lock:
            latencies.extend(mine)

    wall = run_threads([threading.Thread(target=client, args=(k,)) for k in range(clients)])
    q = statistics.quantiles(latencies, n=100)
    return {
        "clients": clients,
        "requests": len(latencies),
        "errors": errors[0],
        "rps": len(latencies) / wall,
        "p50_ms": 1000 * q[49],
        "p99_ms": 1000 * q[98],
    }


def family_latency(state: Path, data: Path, work: Path, domain: str, requests_per_case: int) -> int:
    """p50/p99 of a 64-series request: the ensemble champion vs the fused model alone (same server, same
    bodies). Exits non-zero, with no ratio, when any request failed."""
    import pandas as pd
    from mlflow import MlflowClient

    uri, _ = bench_state(state, work, domain, 1)  # forecaster-bench0 = the domain's fused model
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    ensembles = [
        v for v in client.search_model_versions(f"name='forecaster-{domain}'") if v.tags.get("family") == "ensemble"
    ]
    if not ensembles:
        print(f"error: forecaster-{domain} has no ensemble version: onboard it first", file=sys.stderr)
        return 2
    ens = max(ensembles, key=lambda v: int(v.version))
    client.create_registered_model("forecaster-benchens")
    mv = client.create_model_version("forecaster-benchens", ens.source, tags={**ens.tags, "domain": "benchens"})
    client.set_registered_model_alias("forecaster-benchens", "champion", mv.version)
    store = data / "store" / domain
    horizon = store_horizon(data, domain)
    df = pd.read_parquet(store / "series.parquet")
    ids = list(dict.fromkeys(df["unique_id"].astype(str)))[:64]
    part = df[df["unique_id"].astype(str).isin(ids)].sort_values(["unique_id", "ds"])
    ds = part["ds"].astype(str) if not pd.api.types.is_integer_dtype(part["ds"]) else part["ds"]
    rows = [[str(u), d, float(y)] for u, d, y in zip(part["unique_id"], ds, part["y"])]
    known = {"dataframe_split": {"columns": ["unique_id", "ds", "y"], "data": rows}}
    unseen = {"dataframe_split": {"columns": ["unique_id", "ds", "y"], "data": [[f"new-{r[0]}", *r[1:]] for r in rows]}}
    env = {
        "TSFM_MLFLOW__TRACKING_URI": uri,
        "TSFM_PATHS__STATE_DIR": str(work),
        "TSFM_PARAMS": str(work / "none.yaml"),
        "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
    }
    port = free_port()
    log = work / "tsfm-serve-families.log"
    proc = start(
        [sys.executable, "-m", "serving"],
        {**env, "TSFM_SERVE__PORT": str(port), "TSFM_SERVE__DOMAINS": json.dumps(["bench0", "benchens"])},
        log,
    )
    results = []
    try:
        url = f"http://127.0.0.1:{port}"
        wait_http(f"{url}/health", proc, 300, "tsfm server", log)
        for label, served, body in (
            ("fused alone", "bench0", known),
            ("ensemble, known series", "benchens", known),
            ("ensemble, unseen series", "benchens", unseen),
        ):
            params = {"horizon": horizon, "domain": served}
            load(url, [body], params, 1, 2)  # warm-up
            row = load(url, [body], params, 1, requests_per_case if "unseen" not in label else 3)
            row.update(case=label, series=len(ids), horizon=horizon)
            print(json.dumps(row), flush=True)
            results.append(row)
    finally:
        stop(proc)
    if failed_requests(results, str(log)):
        return 1
    base = results[0]["p50_ms"]
    for r in results:
        r["p50_vs_fused"] = r["p50_ms"] / base
    print(f"ensemble members: {ens.tags.get('ensemble_weights')} (forecaster-{domain} v{ens.version})")
    print(
        markdown_table(
            results,
            [
                ("case", "request of 64 series", ""),
                ("requests", "requests", "d"),
                ("p50_ms", "p50 ms", ".1f"),
                ("p99_ms", "p99 ms", ".1f"),
                ("p50_vs_fused", "p50 / fused", ".2f"),
            ],
        )
    )
    return 0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--state", default=str(REPO / ".tsfm"), help="a state folder (mlflow.db) after `make demo`")
    ap.add_argument("--data", default=str(REPO / "data"), help="its data folder (the domain's store)")
    ap.add_argument("--work", default=str(REPO / ".tsfm" / "bench-serving"))
    ap.add_argument("--domain", default="m3-other")
    ap.add_argument("--clients", default="1,8,32")
    ap.add_argument("--requests", type=int, default=640, help="requests per level (split over the clients)")
    ap.add_argument("--context", type=int, default=128)
    ap.add_argument(
        "--horizon",
        type=int,
        default=None,
        help="steps asked for; default: the domain's own horizon (its store's), which its models forecast",
    )
    ap.add_argument("--skip-mlflow", action="store_true")
    ap.add_argument("--json", default=None)
    ap.add_argument("--families", action="store_true", help="ensemble vs fused latency for 64 known series")
    args = ap.parse_args()
    warn_if_busy()
    state, work = Path(args.state), Path(args.work)
    if args.families:
        sys.exit(family_latency(state, Path(args.data), work, args.domain, 30))
    args.horizon = args.horizon or store_horizon(Path(args.data), args.domain)
    uri, domains = bench_state(state, work, args.domain, 10)
    bodies = context_series(Path(args.data), args.domain, args.context)
    levels = [int(c) for c in args.clients.split(",")]
    env = {
        "TSFM_MLFLOW__TRACKING_URI": uri,
        "TSFM_PATHS__STATE_DIR": str(work),
        "TSFM_PARAMS": str(work / "none.yaml"),
        "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
    }
    results, memory = [], []

    def run_levels(server: str, url: str, params: dict) -> None:
        load(url, bodies, params, 2, 16)  # warm-up
        for c in levels:
            row = {"server": server, **load(url, bodies, params, c, max(1, args.requests // c))}
            print(json.dumps(row), flush=True)
            results.append(row)

    # tsfm: one process, every domain
    for n in (1, 10):
        port = free_port()
        served = domains[:n]
        log = work / f"tsfm-serve-{n}.log"
        proc = start(
            [sys.executable, "-m", "serving"],
            {**env, "TSFM_SERVE__PORT": str(port), "TSFM_SERVE__DOMAINS": json.dumps(served)},
            log,
        )
        try:
            url = f"http://127.0.0.1:{port}"
            wait_http(f"{url}/health", proc, 300, "tsfm server", log)
            for d in served:  # touch every domain once so lazily built state is counted
                r = requests.post(f"{url}/invocations", json={**bodies[0], "params": {"horizon": 6, "domain": d}})
                r.raise_for_status()
            memory.append({"server": "tsfm (one process)", "domains": n, "rss_mib": tree_rss_mib(proc)})
            print(json.dumps(memory[-1]), flush=True)
            if n == 1:
                run_levels("tsfm", url, {"horizon": args.horizon, "domain": domains[0]})
        finally:
            stop(proc)

    if not args.skip_mlflow:
        from serving.launch import server_command

        procs = []
        try:
            for i, d in enumerate(domains):
                port = free_port()
                log = work / f"mlflow-serve-{d}.log"
                proc = start(
                    server_command(d, "127.0.0.1", port),
                    {**env, "MLFLOW_TRACKING_URI": uri, "MLFLOW_REGISTRY_URI": uri},
                    log,
                )
                procs.append(proc)
                url = f"http://127.0.0.1:{port}"
                wait_http(f"{url}/ping", proc, 300, "mlflow scoring server", log)
                if i == 0:
                    memory.append(
                        {"server": "MLflow scoring server (one per model)", "domains": 1, "rss_mib": tree_rss_mib(proc)}
                    )
                    run_levels("mlflow", url, {"horizon": args.horizon})
            if len(procs) == 10:
                memory.append(
                    {
                        "server": "MLflow scoring server (one per model)",
                        "domains": 10,
                        "rss_mib": sum(tree_rss_mib(p) for p in procs),
                    }
                )
        finally:
            for p in procs:
                stop(p)

    if failed_requests(results, str(work)):
        sys.exit(1)
    by = {(r["server"], r["clients"]): r for r in results}
    for r in results:
        if r["server"] == "tsfm" and ("mlflow", r["clients"]) in by:
            m = by[("mlflow", r["clients"])]
            r["rps_ratio"] = r["rps"] / m["rps"]
            r["p99_ratio"] = r["p99_ms"] / m["p99_ms"]
    print(
        markdown_table(
            results,
            [
                ("server", "server", ""),
                ("clients", "clients", "d"),
                ("requests", "requests", "d"),
                ("errors", "errors", "d"),
                ("rps", "req/s", ".1f"),
                ("p50_ms", "p50 ms", ".1f"),
                ("p99_ms", "p99 ms", ".1f"),
                ("rps_ratio", "req/s tsfm/MLflow", ".2f"),
                ("p99_ratio", "p99 tsfm/MLflow", ".2f"),
            ],
        )
    )
    print(
        markdown_table(memory, [("server", "server", ""), ("domains", "domains", "d"), ("rss_mib", "RSS MiB", ".0f")])
    )
    write_json(args.json, {"machine": machine(), "args": vars(args), "throughput": results, "memory": memory})


if __name__ == "__main__":
    main()
