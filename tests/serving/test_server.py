"""tsfm's server as its own process on a real 127.0.0.1 socket: concurrent clients are
batched and each gets its own series back; alias moves (promote, rollback, a new domain,
a removed alias) are picked up while a client keeps sending, with no failed request."""

from __future__ import annotations

import tempfile
import threading
import time
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
import requests
from mlflow import MlflowClient

from models.forecasting.fused import FusedForecaster
from models.forecasting.protocol import QUANTILE_COLUMNS, parse_context
from serving import MODEL_HEADER
from serving.launch import request_body, start_tsfm_server, stop_server, wait_ready
from tests.serving.conftest import COPY, TWIN, family_version
from tracking import registry as tracking
from tracking.registry import rollback_domain

LATE = "m3-late"  # gains the alias while the server runs


@pytest.fixture(scope="module")
def server(registry):
    settings = registry["settings"]
    client = tracking.configure(settings)
    source = client.get_model_version(tracking.forecaster_name(COPY), registry["copy_v1"])
    registry["late_v"] = tracking.register(
        source.source, tracking.forecaster_name(LATE), {**source.tags, "domain": LATE}
    )
    naive = family_version(client, "m3-other", "seasonal_naive")
    registry["late_naive_v"] = tracking.register(
        naive.source, tracking.forecaster_name(LATE), {**naive.tags, "domain": LATE}
    )
    # every forecaster-* model with the alias; poll each second; a 50 ms window to gather a batch
    proc, url = start_tsfm_server(
        settings,
        None,
        reload_interval_s=1.0,
        log_file=Path(registry["root"]) / "tsfm-serve-test.log",
        env={"TSFM_SERVE__MAX_WAIT_MS": "50"},
    )
    try:
        wait_ready(url, proc)
        yield url
    finally:
        stop_server(proc)
        tracking.set_alias(tracking.forecaster_name(COPY), "champion", registry["copy_v1"])


def _scrape(url: str, name: str) -> float:
    text = requests.get(f"{url}/metrics", timeout=10).text
    return sum(float(ln.rsplit(" ", 1)[1]) for ln in text.splitlines() if ln.startswith(name))


def _forecaster(registry, version: str) -> FusedForecaster:
    settings = registry["settings"]
    mlflow.set_tracking_uri(settings.tracking_uri)
    mlflow.set_registry_uri(settings.tracking_uri)
    folder = mlflow.artifacts.download_artifacts(
        f"models:/forecaster-{COPY}/{version}/artifacts/fused", dst_path=tempfile.mkdtemp()
    )
    return FusedForecaster.load(folder)


def test_serves_every_domain_with_the_alias(server, registry):
    health = requests.get(f"{server}/health", timeout=10).json()
    assert {"m3-other", COPY, TWIN} <= set(health["domains"])
    assert health["domains"][COPY]["version"] == registry["copy_v1"]
    assert health["backbones_loaded"] == 1  # the demo's backbone, shared by every neural domain


def test_concurrent_requests_are_batched_and_split_back(server, registry, context):
    ids = list(context["unique_id"].unique())
    forecaster = _forecaster(registry, registry["copy_v1"])
    _, values, _ = parse_context(context)
    expected = dict(zip(ids, forecaster.predict(values, 8).quantiles))
    before = (
        _scrape(server, f'tsfm_serve_batch_requests_count{{domain="{COPY}"}}'),
        _scrape(server, f'tsfm_serve_batch_requests_sum{{domain="{COPY}"}}'),
    )
    results, errors = [], []
    start = threading.Barrier(8)

    def client(k: int) -> None:
        uid, horizon = ids[k % len(ids)], 3 + k % 6  # different series and horizons in one batch
        body = request_body(context[context["unique_id"] == uid], horizon, COPY)
        session = requests.Session()
        start.wait()
        for _ in range(3):
            r = session.post(f"{server}/invocations", json=body, timeout=60)
            if r.status_code != 200:
                errors.append(r.text)
                continue
            results.append((uid, horizon, pd.DataFrame(r.json()["predictions"])))

    threads = [threading.Thread(target=client, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(results) == 24
    for uid, horizon, out in results:
        assert set(out["unique_id"]) == {uid} and len(out) == horizon  # its own series, its own horizon
        np.testing.assert_allclose(
            out[QUANTILE_COLUMNS].to_numpy(),
            expected[uid][:horizon],
            rtol=1e-5,
            atol=1e-5 * np.abs(expected[uid]).max(),
        )
    batches = _scrape(server, f'tsfm_serve_batch_requests_count{{domain="{COPY}"}}') - before[0]
    requests_in_batches = _scrape(server, f'tsfm_serve_batch_requests_sum{{domain="{COPY}"}}') - before[1]
    assert requests_in_batches == 24
    assert batches < 24  # at least one forward pass answered several requests
    singles = _scrape(server, f'tsfm_serve_batch_requests_bucket{{domain="{COPY}",le="1.0"}}')
    assert singles < _scrape(server, f'tsfm_serve_batch_requests_count{{domain="{COPY}"}}')


def _label(version: str, domain: str = COPY, family: str = "fused") -> str:
    return f"forecaster-{domain}/{version} ({family})"


def _wait_for(predicate, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError("condition not met in time")


def test_alias_moves_are_picked_up_without_failing_a_request(server, registry, context):
    settings = registry["settings"]
    v1, v2 = registry["copy_v1"], registry["copy_v2"]
    body = request_body(context, 4, COPY)
    seen: list[tuple[str, int, pd.DataFrame | None]] = []
    stop = threading.Event()

    def client() -> None:
        session = requests.Session()
        while not stop.is_set():
            r = session.post(f"{server}/invocations", json=body, timeout=60)
            frame = pd.DataFrame(r.json()["predictions"]) if r.status_code == 200 else None
            seen.append((r.headers.get(MODEL_HEADER), r.status_code, frame))

    thread = threading.Thread(target=client)
    thread.start()
    try:
        _wait_for(lambda: len(seen) >= 3)
        tracking.set_alias(tracking.forecaster_name(COPY), "champion", v2)  # a promotion
        _wait_for(lambda: seen[-1][0] == _label(v2))
        n_after_promotion = len(seen)
        rollback_domain(COPY, v1, settings)  # `tsfm rollback`
        _wait_for(lambda: len(seen) > n_after_promotion and seen[-1][0] == _label(v1))
        time.sleep(0.5)
    finally:
        stop.set()
        thread.join(timeout=60)
    assert all(code == 200 for _, code, _ in seen), [code for _, code, _ in seen if code != 200]
    labels = [label for label, _, _ in seen]
    assert labels[0] == _label(v1) and _label(v2) in labels and labels[-1] == labels[0]
    first_v2 = labels.index(_label(v2))
    assert all(label == _label(v1) for label in labels[:first_v2])  # one clean switch
    if registry["alpha"] != 0.0:  # v2 is the same model with alpha 0: the answers change with the header
        q = {label: frame[QUANTILE_COLUMNS].to_numpy() for label, _, frame in seen}
        assert not np.allclose(q[_label(v1)], q[_label(v2)])
    health = requests.get(f"{server}/health", timeout=10).json()
    assert health["domains"][COPY]["version"] == v1 and health["backbones_loaded"] == 1
    reloads = _scrape(server, f'tsfm_serve_reloads_total{{domain="{COPY}",outcome="ok"}}')
    assert reloads >= 2


def test_a_new_domain_joins_and_a_removed_alias_leaves(server, registry, context):
    client = MlflowClient(registry["settings"].tracking_uri, registry["settings"].tracking_uri)
    body = request_body(context, 2, LATE)
    assert requests.post(f"{server}/invocations", json=body, timeout=60).status_code == 404
    tracking.set_alias(tracking.forecaster_name(LATE), "champion", registry["late_v"])
    # POST /reload checks at once (the poller would within a second as well)
    changes = requests.post(f"{server}/reload", timeout=60).json()
    _wait_for(lambda: LATE in requests.get(f"{server}/health", timeout=10).json()["domains"])
    resp = requests.post(f"{server}/invocations", json=body, timeout=60)
    assert resp.status_code == 200 and resp.headers[MODEL_HEADER] == _label(registry["late_v"], LATE)
    assert isinstance(changes["changes"], list)
    assert requests.get(f"{server}/health", timeout=10).json()["backbones_loaded"] == 1  # shared again
    # a promotion across families: the same domain now answers with seasonal naive, hot
    tracking.set_alias(tracking.forecaster_name(LATE), "champion", registry["late_naive_v"])
    requests.post(f"{server}/reload", timeout=60)
    resp = requests.post(f"{server}/invocations", json=body, timeout=60)
    assert resp.status_code == 200
    assert resp.headers[MODEL_HEADER] == _label(registry["late_naive_v"], LATE, "seasonal_naive")
    assert len(pd.DataFrame(resp.json()["predictions"])) == 2 * context["unique_id"].nunique()
    client.delete_registered_model_alias(tracking.forecaster_name(LATE), "champion")
    _wait_for(lambda: LATE not in requests.get(f"{server}/health", timeout=10).json()["domains"])
    assert requests.post(f"{server}/invocations", json=body, timeout=60).status_code == 404


def test_two_replicas_on_one_registry_follow_the_same_alias_move(server, registry, context):
    """Two server processes on two ports (as a Kubernetes Deployment of 2 replicas runs): the same
    champion, and the same alias move picked up by both, without talking to each other."""
    name, v1, v2 = tracking.forecaster_name(COPY), registry["copy_v1"], registry["copy_v2"]
    proc, replica = start_tsfm_server(
        registry["settings"], [COPY], reload_interval_s=1.0, log_file=Path(registry["root"]) / "tsfm-serve-replica.log"
    )
    body = request_body(context, 4, COPY)

    def answers() -> list[tuple[str, np.ndarray]]:
        out = []
        for url in (server, replica):
            r = requests.post(f"{url}/invocations", json=body, timeout=60)
            assert r.status_code == 200, r.text
            out.append((r.headers[MODEL_HEADER], pd.DataFrame(r.json()["predictions"])[QUANTILE_COLUMNS].to_numpy()))
        return out

    try:
        wait_ready(replica, proc)
        first = answers()
        assert [label for label, _ in first] == [_label(v1)] * 2
        np.testing.assert_array_equal(first[0][1], first[1][1])
        tracking.set_alias(name, "champion", v2)
        _wait_for(lambda: [label for label, _ in answers()] == [_label(v2)] * 2)
        moved = answers()
        np.testing.assert_array_equal(moved[0][1], moved[1][1])
    finally:
        stop_server(proc)
        tracking.set_alias(name, "champion", v1)
