"""Soak (issue 14): tsfm's server under a hostile mix for ``--minutes`` (default 10).

One `tsfm serve` process (a copy of a demo state: every forecaster-*@champion, alias poll every
second) takes ``--clients`` (32) concurrent clients that send, back to back, a mix of
- valid requests (70%): one real series each, to the demo domain or to ``bench``, whose champion
  alternates between its fused and its AutoETS version (an alias move every ``--move-every`` s);
- malformed requests (20%): broken JSON, NaN literals, wrong types, duplicate columns, a series
  with no observed value, deep nesting;
- slow requests (10%): half a body, then a stall past the server's body timeout (408 expected).
Halfway through, the demo domain is re-onboarded (`tsfm onboard`, new adapter settings) into the
same registry while the load runs. At the end: requests and answers by class, p50/p99 latency
of the valid ones, 5xx and connection errors (both must be 0), and the server's RSS at start and
end. Prints a markdown table and writes ``--json``.

    python benchmarks/soak.py --state .tsfm --data data --minutes 10
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import psutil
import requests
from bench_common import REPO, machine, run_threads, warn_if_busy, write_json
from serving_throughput import context_series

from infra.servers import free_port, stop, wait_http

BODY_TIMEOUT_S = 3


def setup(state: Path, work: Path, domain: str) -> tuple[str, dict]:
    """A copy of the state's registry with ``forecaster-bench`` v1 (the domain's fused candidate) and v2
    (its AutoETS candidate); v1 is champion."""
    import mlflow
    from mlflow import MlflowClient

    work.mkdir(parents=True, exist_ok=True)
    shutil.copy(state / "mlflow.db", work / "mlflow.db")
    uri = f"sqlite:///{(work / 'mlflow.db').resolve()}"
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    client = MlflowClient(uri, uri)
    candidates = {mv.tags.get("family"): mv for mv in client.search_model_versions(f"name='forecaster-{domain}'")}
    client.create_registered_model("forecaster-bench")
    versions = {}
    for family in ("fused", "auto_ets"):
        mv = candidates[family]
        versions[family] = client.create_model_version(
            "forecaster-bench", mv.source, tags={**mv.tags, "domain": "bench"}
        ).version
    client.set_registered_model_alias("forecaster-bench", "champion", versions["fused"])
    return uri, versions


MALFORMED = [
    b'{"dataframe_split": {"columns": ["unique_id","ds","y"], "data": [["a",1,NaN],["a",2,1.0]]}}',
    b'{"dataframe_split": {"columns": ["unique_id","ds","y","y"], "data": [["a",1,1.0,2.0]]}}',
    b'{"dataframe_split": {"columns": ["unique_id","ds","y"], "data": [["a",1,null],["a",2,null]]}}',
    b'{"dataframe_split": {"columns": ["unique_id","ds","y"], "data": [["a",1,true],["a",2,1.0]]}}',
    b'{"dataframe_split": {"columns": ["unique_id","ds","y"], "data": [["a",1,1.0],["a","2020-01-01",2.0]]}}',
    b'{"dataframe_records": "nope"}',
    b'{"dataframe_split": {"columns": ["unique_id","ds","y"], "data": [["a",1,1.0]]}, "params": {"horizon": true}}',
    b'{"dataframe_split": ',
    b"\xff\xfe\x00garbage",
    b"[" * 5000 + b"]" * 5000,
]


def slow_request(port: int) -> str:
    """Half a body, then silence: the server must answer 408 after its body timeout."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=BODY_TIMEOUT_S + 30)
    try:
        sock.sendall(
            b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b'Content-Length: 4000\r\n\r\n{"dataframe_split": '
        )
        answer = sock.recv(4096)
        return answer.split(b" ", 2)[1].decode() if answer.startswith(b"HTTP/1.1 ") else "conn"
    except OSError:
        return "conn"
    finally:
        sock.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--state", default=str(REPO / ".tsfm"))
    ap.add_argument("--data", default=str(REPO / "data"))
    ap.add_argument("--domain", default="m3-other")
    ap.add_argument("--work", default=str(REPO / ".tsfm" / "bench-soak"))
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--clients", type=int, default=32)
    ap.add_argument("--move-every", type=float, default=20.0)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    warn_if_busy()
    work = Path(args.work)
    shutil.rmtree(work, ignore_errors=True)
    uri, versions = setup(Path(args.state), work, args.domain)
    bodies = context_series(Path(args.data), args.domain, 128)
    env = {
        **os.environ,
        "TSFM_MLFLOW__TRACKING_URI": uri,
        "TSFM_PATHS__STATE_DIR": str(work),
        "TSFM_PATHS__DATA_DIR": str(Path(args.data).resolve()),
        "TSFM_PARAMS": str(work / "none.yaml"),
        "TSFM_SERVE__BODY_TIMEOUT_S": str(BODY_TIMEOUT_S),
        "TSFM_SERVE__RELOAD_INTERVAL_S": "1",
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
    }
    port = free_port()
    log = work / "serve.log"
    with open(log, "w") as out:
        server = subprocess.Popen(
            [sys.executable, "-m", "serving", "--port", str(port)],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=REPO,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    wait_http(f"{url}/health", server, 300, "tsfm server", log)
    proc = psutil.Process(server.pid)
    for d in ("bench", args.domain):
        requests.post(
            f"{url}/invocations", json={**bodies[0], "params": {"horizon": 6, "domain": d}}
        ).raise_for_status()
    rss_start = proc.memory_info().rss / 2**20

    stop_at = time.monotonic() + 60 * args.minutes
    answers: Counter[str] = Counter()
    latencies: list[float] = []
    lock = threading.Lock()

    def client(k: int) -> None:
        rng = random.Random(k)
        s = requests.Session()
        while time.monotonic() < stop_at:
            draw = rng.random()
            t = time.perf_counter()
            try:
                if draw < 0.7:
                    body = {
                        **rng.choice(bodies),
                        "params": {"horizon": 6, "domain": rng.choice(["bench", args.domain])},
                    }
                    code = str(s.post(f"{url}/invocations", json=body, timeout=120).status_code)
                    kind = "valid"
                elif draw < 0.9:
                    code = str(
                        s.post(
                            f"{url}/invocations",
                            data=rng.choice(MALFORMED),
                            timeout=120,
                            headers={"Content-Type": "application/json"},
                        ).status_code
                    )
                    kind = "malformed"
                else:
                    code, kind = slow_request(port), "slow"
            except requests.RequestException:
                code, kind = "conn", "valid" if draw < 0.7 else "malformed"
            with lock:
                answers[f"{kind} {code}"] += 1
                if kind == "valid" and code == "200":
                    latencies.append(time.perf_counter() - t)

    def mover() -> None:
        from mlflow import MlflowClient

        client = MlflowClient(uri, uri)
        order = [versions["auto_ets"], versions["fused"]]
        i = 0
        while time.monotonic() < stop_at - args.move_every:
            time.sleep(args.move_every)
            client.set_registered_model_alias("forecaster-bench", "champion", order[i % 2])
            i += 1
        with lock:
            answers["alias moves"] = i

    def reonboard() -> None:
        time.sleep(30 * args.minutes)  # halfway
        started = time.perf_counter()
        res = subprocess.run(
            [
                str(Path(sys.executable).parent / "tsfm"),
                "onboard",
                "--domain",
                args.domain,
                "--set",
                "adapter.epochs=3",
                "--set",
                "finetune.max_steps=0",
            ],
            env=env,
            cwd=REPO,
            capture_output=True,
            text=True,
        )
        with lock:
            answers[f"re-onboarding exit {res.returncode} in {time.perf_counter() - started:.0f} s"] += 1
        (work / "reonboard.log").write_text(res.stdout + res.stderr)

    threads = [threading.Thread(target=client, args=(k,)) for k in range(args.clients)]
    threads += [threading.Thread(target=mover), threading.Thread(target=reonboard)]
    wall = run_threads(threads)
    rss_end = proc.memory_info().rss / 2**20
    metrics = requests.get(f"{url}/metrics", timeout=10).text
    stop(server)

    q = statistics.quantiles(latencies, n=100)
    total = sum(v for k, v in answers.items() if k.split()[0] in ("valid", "malformed", "slow"))
    fives = sum(v for k, v in answers.items() if k.split()[-1].startswith("5"))
    conn = sum(v for k, v in answers.items() if k.endswith(" conn"))
    result = {
        "minutes": wall / 60,
        "clients": args.clients,
        "requests": total,
        "answers": dict(sorted(answers.items())),
        "valid_ok_p50_ms": 1000 * q[49],
        "valid_ok_p99_ms": 1000 * q[98],
        "server_5xx": fives,
        "connection_errors": conn,
        "rss_start_mib": rss_start,
        "rss_end_mib": rss_end,
        "metrics_500_lines": [ln for ln in metrics.splitlines() if 'code="500"' in ln],
        "machine": machine(),
    }
    print(json.dumps(result, indent=2))
    print("\n| answer class | count |\n|---|---|")
    for k, v in sorted(answers.items()):
        print(f"| {k} | {v:,} |")
    if args.json:
        write_json(args.json, result)


if __name__ == "__main__":
    main()
