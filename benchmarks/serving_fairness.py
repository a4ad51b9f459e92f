"""Do large requests starve small ones? p50/p99 of small requests (one series) to ``tsfm serve``,
alone and while maximal requests (``serve.max_request_series`` series each) are answered beside
them, on one server (loopback, one process). Target: p99 beside a maximal request at most 2x
the p99 alone. Fails (exit 1, no ratio) when any request fails.

The maximal requests are sent by a process of their own, their body encoded once: encoding 600,000
rows in the measuring process held its interpreter lock for long enough to delay the small
requests' own clocks, which the first version of this benchmark counted against the server.

    python benchmarks/serving_fairness.py --domain m3-other --small 200
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import sys
import time

import numpy as np
import requests
from bench_common import machine, warn_if_busy, write_json


def _body(n_series: int, length: int, horizon: int, domain: str, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    rows = [
        [f"s{i}", t, float(50 + 10 * np.sin(t / 3 + i) + rng.normal())] for i in range(n_series) for t in range(length)
    ]
    return {
        "dataframe_split": {"columns": ["unique_id", "ds", "y"], "data": rows},
        "params": {"horizon": horizon, "domain": domain},
    }


JSON = {"Content-Type": "application/json"}


def _small_latencies(url: str, body: bytes, n: int, failures: list) -> list[float]:
    out = []
    with requests.Session() as s:
        for _ in range(n):
            started = time.perf_counter()
            r = s.post(f"{url}/invocations", data=body, headers=JSON, timeout=300)
            out.append(time.perf_counter() - started)
            if r.status_code != 200:
                failures.append(f"small: {r.status_code} {r.text[:200]}")
    return out


def _flood(url: str, body: bytes, stop, answered) -> None:
    """Maximal requests one after another until ``stop`` (in a process of its own); each one's
    seconds go to ``answered``, a failure as -status."""
    with requests.Session() as s:
        while not stop.is_set():
            started = time.perf_counter()
            r = s.post(f"{url}/invocations", data=body, headers=JSON, timeout=600)
            answered.put(time.perf_counter() - started if r.status_code == 200 else -r.status_code)
            if r.status_code != 200:
                return


def main() -> None:
    from infra.settings import load_settings
    from serving.launch import start_tsfm_server, stop_server, wait_ready

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--domain", required=True, help="an onboarded domain (its champion answers)")
    ap.add_argument("--horizon", type=int, default=None, help="default: the domain's")
    ap.add_argument("--small", type=int, default=200, help="small requests per phase")
    ap.add_argument("--length", type=int, default=120, help="context points per series")
    ap.add_argument(
        "--big", type=int, default=None, help="series per large request; default: the limit, serve.max_request_series"
    )
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    warn_if_busy()
    settings = load_settings()
    horizon = args.horizon or settings.onboard.horizon
    big_series = args.big or settings.serve.max_request_series
    proc, url = start_tsfm_server(settings, [args.domain], reload_interval_s=0)
    failures: list[str] = []
    try:
        wait_ready(url, proc)
        small = json.dumps(_body(1, args.length, horizon, args.domain, 0)).encode()
        big = json.dumps(_body(big_series, args.length, horizon, args.domain, 1)).encode()
        _small_latencies(url, small, 10, failures)  # warm-up
        alone = _small_latencies(url, small, args.small, failures)
        spawn = mp.get_context("spawn")
        stop, answered = spawn.Event(), spawn.Queue()
        flooder = spawn.Process(target=_flood, args=(url, big, stop, answered), daemon=True)
        flooder.start()
        time.sleep(5.0)  # the flooder is up and its first maximal request is being answered
        beside = _small_latencies(url, small, args.small, failures)
        stop.set()
        flooder.join(timeout=600)
        big_times: list[float] = []
        while not answered.empty():
            big_times.append(answered.get())
        failures += [f"big: status {-t:.0f}" for t in big_times if t < 0]
        big_times = [t for t in big_times if t >= 0]
        if not big_times:
            failures.append("no maximal request was answered while the small ones were timed")
    finally:
        stop_server(proc)
    if failures:
        print(f"{len(failures)} request(s) failed, e.g. {failures[0]}: no figures", file=sys.stderr)
        sys.exit(1)
    p = {
        name: (float(np.percentile(v, 50)) * 1000, float(np.percentile(v, 99)) * 1000)
        for name, v in (("alone", alone), ("beside", beside))
    }
    ratio = p["beside"][1] / p["alone"][1]
    print(f"small requests (1 series, {args.length} points, horizon {horizon}), {args.small} each:")
    print(f"  alone:                     p50 {p['alone'][0]:.1f} ms, p99 {p['alone'][1]:.1f} ms")
    print(
        f"  beside {big_series:,}-series requests: p50 {p['beside'][0]:.1f} ms, p99 {p['beside'][1]:.1f} ms "
        f"({len(big_times)} maximal requests answered, {np.mean(big_times):.1f} s each)"
    )
    print(f"  p99 ratio {ratio:.2f} (target <= 2)")
    write_json(
        args.out,
        {
            "machine": machine(),
            "domain": args.domain,
            "alone_ms": p["alone"],
            "beside_ms": p["beside"],
            "p99_ratio": ratio,
            "big_series": big_series,
            "big_seconds": big_times,
        },
    )


if __name__ == "__main__":
    main()
