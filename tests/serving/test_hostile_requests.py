"""Whatever a client sends, tsfm's server answers 2xx or 4xx with a strict JSON body (RFC 8259: no
NaN or Infinity), and still answers a valid request afterwards. Thousands of generated bodies
(Hypothesis: shapes, types, sizes, nesting, encodings) go to the real server process on
127.0.0.1; then the cases that once broke it, one by one: float32-limit values, NaN literals, a
series with no observed value, a client that leaves mid-upload (counted as 499, never 500) and
a stalled upload (408 after ``body_timeout_s``)."""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path
from urllib.parse import urlparse

import numpy as np
import pandas as pd
import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from serving.launch import request_body, start_tsfm_server, stop_server, wait_ready
from tests.serving.conftest import COPY

DOMAINS = [COPY, "m3-other"]  # a fused champion and whatever family m3-other's gate chose
BODY_TIMEOUT_S = 2


def strict_json(text: str) -> object:
    def refuse(name):
        raise AssertionError(f"{name} in a JSON answer")

    return json.loads(text, parse_constant=refuse)


@pytest.fixture(scope="module")
def server(registry):
    proc, url = start_tsfm_server(
        registry["settings"],
        DOMAINS,
        reload_interval_s=0,
        log_file=Path(registry["root"]) / "tsfm-serve-hostile.log",
        env={"TSFM_SERVE__BODY_TIMEOUT_S": str(BODY_TIMEOUT_S)},
    )
    try:
        wait_ready(url, proc)
        yield url
    finally:
        stop_server(proc)


@pytest.fixture(scope="module")
def session():
    with requests.Session() as s:
        yield s


def _post(session, url: str, data: bytes, content_type: str = "application/json") -> requests.Response:
    return session.post(f"{url}/invocations", data=data, headers={"Content-Type": content_type}, timeout=60)


def _check(response: requests.Response) -> None:
    assert response.status_code < 500, (response.status_code, response.text[:500])
    body = strict_json(response.text)
    if response.status_code == 200:
        rows = body["predictions"]
        assert rows and all(np.isfinite(r["mean"]) and np.isfinite(r["0.9"]) for r in rows)
    else:
        assert isinstance(body.get("message"), str) and body["message"], body


# ------------------------------------------------------------------------------ generated bodies
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.sampled_from(
        [
            "2020-01-31",
            "2020-02-29T00:00:00+02:00",
            "2020-03-01Z",
            "1e308",
            "NaN",
            "",
            "2020-13-01",
            "0001-01-01",
            "99999-01-01",
            "-inf",
            "1,5",
            "\u0000",
            "\ud7ff",
            "12",
        ]
    ),
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3),
    max_leaves=12,
)
Y = st.one_of(
    st.floats(-1e6, 1e6),
    st.floats(-1e6, 1e6),
    st.sampled_from([3e38, -3e38, 1e308, -1.7e308, 5e-324, 0.0, 1e19, 2.0**60]),
    VALUES,
)
DS = st.one_of(st.integers(-5, 2**62), VALUES)
COLUMN = st.sampled_from(["unique_id", "ds", "y", "item_id", "timestamp", "target", "x", ""])
# mostly a served domain and a sane horizon, so that a good share of bodies reaches the models
PARAMS = st.one_of(
    st.fixed_dictionaries(
        {"domain": st.sampled_from(DOMAINS)},
        optional={"horizon": st.one_of(st.sampled_from([1, 6, 8]), st.integers(1, 40))},
    ),
    st.fixed_dictionaries(
        {"domain": st.sampled_from(DOMAINS)}, optional={"horizon": st.one_of(st.integers(-3, 1100), VALUES)}
    ),
    st.fixed_dictionaries({}, optional={"horizon": VALUES, "domain": st.one_of(st.just("nope"), VALUES)}),
)


@st.composite
def contexts(draw) -> tuple[list[str], list[list]]:
    """Mostly well-formed series (integer steps or month ends) with some cells replaced."""
    columns = ["unique_id", "ds", "y"]
    if draw(st.integers(0, 9)) == 0:
        columns = draw(st.lists(COLUMN, max_size=5))
    rows = []
    monthly = draw(st.booleans())
    for s in range(draw(st.integers(1, 3))):
        n = draw(st.integers(1, 40))
        level = draw(st.sampled_from([1.0, 100.0, 1e6, 3e37, 1e300, 1e-30]))
        for t in range(n):
            ds = f"{2000 + (t + 1) // 12}-{(t + 1) % 12 + 1:02d}-01" if monthly else t
            rows.append([f"s{s}", ds, level * (1 + 0.1 * np.sin(t))])
    for _ in range(draw(st.integers(0, 3))):
        if rows:
            row = draw(st.integers(0, len(rows) - 1))
            col = draw(st.integers(0, 2))
            rows[row][col] = draw([st.text(max_size=6) | VALUES, DS, Y][col])
    if len(columns) != 3:
        rows = [row[: len(columns)] + [None] * (len(columns) - 3) for row in rows]
    return columns, rows


@st.composite
def bodies(draw) -> bytes:
    kind = draw(st.integers(0, 9))
    columns, rows = draw(contexts())
    params = draw(PARAMS)
    if kind <= 4:
        body: object = {"dataframe_split": {"columns": columns, "data": rows}, "params": params}
    elif kind <= 6:
        body = {"dataframe_records": [dict(zip(columns, r)) for r in rows], "params": params}
    elif kind == 7:
        body = draw(VALUES)
    elif kind == 8:
        body = {"dataframe_split": draw(VALUES), "dataframe_records": draw(VALUES), "params": draw(VALUES)}
    else:
        return draw(st.binary(max_size=200))
    text = json.dumps(body)  # NaN/Infinity literals where floats are not finite, as careless clients send
    encoding = draw(st.sampled_from(["utf-8", "utf-8", "utf-8", "utf-16", "utf-32", "latin-1"]))
    data = text.encode(encoding, errors="replace")
    if draw(st.integers(0, 19)) == 0:
        data = data[: draw(st.integers(0, len(data)))]  # truncated
    return data


def test_generated_bodies_get_2xx_or_4xx_with_strict_json_and_the_server_still_answers(server, session, context):
    @settings(
        max_examples=3000,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example],
    )
    @given(data=bodies())
    def throw(data: bytes) -> None:
        _check(_post(session, server, data))

    throw()
    response = _post(session, server, json.dumps(request_body(context, 6, COPY)).encode())
    assert response.status_code == 200, response.text[:500]
    assert len(response.json()["predictions"]) == 6 * context["unique_id"].nunique()
    metrics = session.get(f"{server}/metrics", timeout=10).text
    assert 'code="500"' not in metrics, [ln for ln in metrics.splitlines() if 'code="500"' in ln]
    answered = {code: _count(session, server, code) for code in ("200", "400", "404", "413", "422", "503")}
    print(f"generated bodies answered by status: {answered}")
    assert sum(answered.values()) > 2000, answered
    # every kind arrived: about 300 of the 3,000 bodies are valid (297 or 379, by what the earlier tests of the
    # demo state registered), so 250 says the generator still reaches the models, not an exact share
    assert answered["200"] > 250 and answered["400"] > 1000 and answered["404"] > 10, answered


# ------------------------------------------------------------------------------ the cases that broke it
def _body(series: dict[str, list], horizon: int = 6, domain: str = COPY) -> dict:
    rows = [[uid, t, v] for uid, values in series.items() for t, v in enumerate(values)]
    return {
        "dataframe_split": {"columns": ["unique_id", "ds", "y"], "data": rows},
        "params": {"horizon": horizon, "domain": domain},
    }


@pytest.mark.parametrize("domain", DOMAINS)
def test_values_near_the_float_limits_are_forecast_or_refused_never_nan(server, session, domain):
    wave = 1 + 0.1 * np.sin(np.arange(30))
    response = _post(
        session, server, json.dumps(_body({"big": list(3e38 * wave), "ok": list(10 * wave)}, domain=domain)).encode()
    )
    _check(response)
    assert response.status_code == 200, response.text[:500]
    means = {r["unique_id"]: r["mean"] for r in response.json()["predictions"]}
    assert 1e37 < abs(means["big"]) < 1e40 and 1 < abs(means["ok"]) < 100, means  # forecast in float64, scaled back
    response = _post(session, server, json.dumps(_body({"huge": list(1.6e308 * wave)}, domain=domain)).encode())
    _check(response)  # 200 with finite numbers, or a 4xx that names the series
    if response.status_code != 200:
        assert response.status_code == 422 and "'huge'" in response.json()["message"]


def test_nan_literals_and_a_series_with_nothing_observed_are_refused(server, session):
    response = _post(
        session,
        server,
        b'{"dataframe_split": {"columns": ["unique_id","ds","y"], '
        b'"data": [["a",1,NaN],["a",2,1.0]]}, "params": {"horizon": 2}}',
    )
    assert response.status_code == 400 and "NaN is not JSON" in strict_json(response.text)["message"]
    response = _post(session, server, json.dumps(_body({"empty": [None] * 5, "fine": [1.0, 2.0, 3.0]})).encode())
    assert response.status_code == 400 and "'empty' has no observed value" in response.json()["message"]
    for body, fragment in [
        (
            {"dataframe_split": {"columns": ["unique_id", "ds", "y", "y"], "data": [["a", 1, 1.0, 2.0]]}},
            "more than once",
        ),
        (_body({"a": [1.0, 2.0, 3.0]}) | {"params": {"horizon": True, "domain": COPY}}, "got true"),
        (
            {
                "dataframe_split": {
                    "columns": ["unique_id", "ds", "y"],
                    "data": [["a", 1, 1.0], ["a", "2020-01-01", 2.0]],
                }
            },
            "mixes integer steps and timestamps",
        ),
        (
            {"dataframe_split": {"columns": ["unique_id", "ds", "y"], "data": [["a", 1, True], ["a", 2, 1.0]]}},
            "not numeric",
        ),
    ]:
        response = _post(session, server, json.dumps({"params": {"domain": COPY}, **body}).encode())
        assert response.status_code == 400 and fragment in response.json()["message"], response.text[:300]
    response = _post(session, server, b"[" * 100_000 + b"]" * 100_000)
    assert response.status_code == 400 and "nested" in response.json()["message"]


def _raw_request(url: str, head_extra: str, body: bytes) -> socket.socket:
    u = urlparse(url)
    sock = socket.create_connection((u.hostname, u.port), timeout=30)
    sock.sendall(
        f"POST /invocations HTTP/1.1\r\nHost: {u.hostname}\r\nContent-Type: application/json\r\n"
        f"{head_extra}\r\n".encode()
        + body
    )
    return sock


def _count(session, url: str, code: str) -> float:
    text = session.get(f"{url}/metrics", timeout=10).text
    return sum(
        float(ln.rsplit(" ", 1)[1])
        for ln in text.splitlines()
        if ln.startswith("tsfm_serve_requests_total") and f'code="{code}"' in ln
    )


def test_disconnects_are_counted_as_499_and_stalled_uploads_time_out(server, session):
    before = _count(session, server, "499")
    sock = _raw_request(server, "Content-Length: 5000\r\n", b'{"dataframe_split": ')
    time.sleep(0.3)
    sock.close()  # gone mid-upload
    deadline = time.time() + 10
    while _count(session, server, "499") <= before and time.time() < deadline:
        time.sleep(0.2)
    assert _count(session, server, "499") == before + 1
    assert _count(session, server, "500") == 0

    sock = _raw_request(server, "Content-Length: 5000\r\n", b'{"dataframe_split": ')  # and then nothing
    started = time.time()
    answer = b""
    while b"\r\n\r\n" not in answer or not answer.rstrip().endswith(b"}"):
        chunk = sock.recv(65536)
        if not chunk:
            break
        answer += chunk
    sock.close()
    assert BODY_TIMEOUT_S - 0.5 < time.time() - started < BODY_TIMEOUT_S + 10
    assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
    assert b"not received within 2 s" in answer


def test_one_or_two_points_get_a_bounded_naive_answer_named_in_the_header(server, session):
    """A neural champion handed one or two points answered 6-50x the level; now such a series gets
    the last value, spread by its own range, and the header says so."""
    series = {
        "pair": [100.0, 100.0],
        "one": [1.0],
        "sparse": [5.0, None, None],
        "spread": [90.0, 110.0],
        "fine": [float(v) for v in 50 + 5 * np.sin(np.arange(40))],
    }
    response = _post(session, server, json.dumps(_body(series, domain=COPY)).encode())
    assert response.status_code == 200, response.text[:500]
    rows = pd.DataFrame(response.json()["predictions"])
    assert "naive for 4 series with fewer than 3 points" in response.headers["X-Tsfm-Model"]
    for uid, values in series.items():
        seen = [v for v in values if v is not None]
        low, high = min(seen), max(seen)
        spread = max(high - low, 0.0)
        got = rows[rows["unique_id"] == uid]
        if uid == "fine":
            continue
        assert (got["0.9"] <= high + spread + 1e-6).all() and (got["0.1"] >= low - spread - 1e-6).all(), (uid, got)
    assert rows[rows["unique_id"] == "pair"]["0.9"].max() == pytest.approx(100.0)
