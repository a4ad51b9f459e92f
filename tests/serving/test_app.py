"""tsfm's serving app in process (FastAPI TestClient): shared backbone, answers, validation,
token, /health and /metrics. The real-socket tests are in test_server.py."""

from __future__ import annotations

import json
import tempfile

import mlflow
import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient

from infra.settings import ServeParams
from models.forecasting.fused import FusedForecaster
from models.forecasting.protocol import QUANTILE_COLUMNS, parse_context
from models.forecasting.statistical import StatisticalForecaster
from serving import MODEL_HEADER
from serving.app import create_app
from serving.catalog import Catalog
from serving.launch import request_body
from tests.serving.conftest import COPY, TWIN
from tracking import registry as tracking

TOKEN = "s3cret-token"


def _app(registry, **params):
    settings = registry["settings"]
    cfg = ServeParams(**{"domains": ["m3-other", COPY, TWIN], "reload_interval_s": 0, **params})
    return create_app(cfg, settings.tracking_uri)


@pytest.fixture(scope="module")
def client(registry):
    # every request of this module counts for drift: they come from one test client within a minute
    with TestClient(_app(registry, max_body_mb=0.05, drift_requests_per_minute=10**6)) as c:
        yield c


def _quantiles(predictions: list[dict], ids: list[str], horizon: int) -> np.ndarray:
    out = pd.DataFrame(predictions)
    assert list(out["unique_id"].unique()) == ids
    return out[QUANTILE_COLUMNS].to_numpy().reshape(len(ids), horizon, len(QUANTILE_COLUMNS))


def test_two_domains_share_one_backbone_object(client, registry):
    catalog: Catalog = client.app.state.catalog
    served = catalog.snapshot()
    assert set(served) == {"m3-other", COPY, TWIN}
    assert served[COPY].family == "fused" and served[TWIN].family == "backbone"
    assert served[COPY].forecaster.backbone is served[TWIN].forecaster.backbone
    assert catalog.backbone_count() == 1 and len(catalog._backbones) == 1
    health = client.get("/health").json()
    assert health["backbones_loaded"] == 1
    assert health["domains"][COPY]["version"] == registry["copy_v1"]
    assert health["domains"][COPY]["family"] == "fused"
    assert health["domains"]["m3-other"]["family"] == registry["other_family"]
    assert health["domains"][TWIN]["backbone_version"] == health["domains"][COPY]["backbone_version"]


def test_answers_equal_the_forecaster_and_the_mlflow_pyfunc(client, registry, context):
    settings = registry["settings"]
    horizon = 5
    resp = client.post("/invocations", json=request_body(context, horizon, COPY))
    assert resp.status_code == 200, resp.text
    assert resp.headers[MODEL_HEADER] == f"forecaster-{COPY}/{registry['copy_v1']} (fused)"
    ids, values, _ = parse_context(context)
    got = _quantiles(resp.json()["predictions"], ids, horizon)

    uri = f"models:/forecaster-{COPY}/{registry['copy_v1']}"
    mlflow.set_tracking_uri(settings.tracking_uri)
    mlflow.set_registry_uri(settings.tracking_uri)
    folder = mlflow.artifacts.download_artifacts(f"{uri}/artifacts/fused", dst_path=tempfile.mkdtemp())
    expected = FusedForecaster.load(folder).predict(values, horizon).quantiles
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5 * np.abs(expected).max())

    pyfunc = mlflow.pyfunc.load_model(uri).predict(context[["unique_id", "ds", "y"]], params={"horizon": horizon})
    answer = pd.DataFrame(resp.json()["predictions"])
    assert list(answer.columns) == list(pyfunc.columns)
    assert list(answer["ds"]) == list(pyfunc["ds"]) and list(answer["unique_id"]) == list(pyfunc["unique_id"])
    np.testing.assert_allclose(
        answer[QUANTILE_COLUMNS + ["mean"]].to_numpy(),
        pyfunc[QUANTILE_COLUMNS + ["mean"]].to_numpy(),
        rtol=1e-5,
        atol=1e-5 * np.abs(expected).max(),
    )


def test_a_statistical_champion_answers_like_any_other(client, registry, context):
    """Whatever family the gate chose for m3-other answers with the same protocol; a statistical one
    is fitted on the request's own context and equals the family's forecaster and its pyfunc."""
    horizon = 6
    resp = client.post("/invocations", json=request_body(context, horizon, "m3-other"))
    assert resp.status_code == 200, resp.text
    family = registry["other_family"]
    assert resp.headers[MODEL_HEADER] == f"forecaster-m3-other/{registry['other_champion']} ({family})"
    answer = pd.DataFrame(resp.json()["predictions"])
    assert len(answer) == 4 * horizon and list(answer.columns[:2]) == ["unique_id", "ds"]
    uri = f"models:/forecaster-m3-other/{registry['other_champion']}"
    mlflow.set_tracking_uri(registry["settings"].tracking_uri)
    pyfunc = mlflow.pyfunc.load_model(uri).predict(context[["unique_id", "ds", "y"]], params={"horizon": horizon})
    np.testing.assert_allclose(answer[QUANTILE_COLUMNS].to_numpy(), pyfunc[QUANTILE_COLUMNS].to_numpy(), rtol=1e-5)
    if family in ("seasonal_naive", "auto_ets", "theta"):
        _, folder, _ = tracking.download_forecaster(
            "forecaster-m3-other", registry["other_champion"], tempfile.mkdtemp()
        )
        ids, values, _ = parse_context(context)
        expected = StatisticalForecaster.load(folder).predict(values, horizon, ids=ids).quantiles
        np.testing.assert_allclose(_quantiles(resp.json()["predictions"], ids, horizon), expected, rtol=1e-5)


def test_records_input_and_default_horizon(client, context):
    records = json.loads(context[["unique_id", "ds", "y"]].to_json(orient="records"))
    resp = client.post("/invocations", json={"dataframe_records": records, "params": {"domain": "m3-other"}})
    assert resp.status_code == 200, resp.text
    out = pd.DataFrame(resp.json()["predictions"])
    default = client.app.state.catalog.get("m3-other").default_horizon
    assert len(out) == context["unique_id"].nunique() * default


@pytest.mark.parametrize(
    "body, status, fragment",
    [
        (
            {"dataframe_split": {"columns": ["unique_id", "y"], "data": [["a", 1.0]]}, "params": {"domain": COPY}},
            400,
            "ds",
        ),
        (
            {
                "dataframe_split": {"columns": ["unique_id", "ds", "y"], "data": [["a", 1, "x"]]},
                "params": {"domain": COPY},
            },
            400,
            "y",
        ),
        (
            {
                "dataframe_split": {"columns": ["unique_id", "ds", "y"], "data": [["a", 1, 1.0]]},
                "params": {"horizon": 99, "domain": COPY},
            },
            400,
            "horizon",
        ),
        (
            {
                "dataframe_split": {"columns": ["unique_id", "ds", "y"], "data": [["a", 1, 1.0]]},
                "params": {"horizon": "soon", "domain": COPY},
            },
            400,
            "horizon",
        ),
        ({"dataframe_split": {"columns": ["unique_id", "ds", "y"], "data": [["a", 1, 1.0]]}}, 400, "params.domain"),
        (
            {
                "dataframe_split": {"columns": ["unique_id", "ds", "y"], "data": [["a", 1, 1.0]]},
                "params": {"domain": "nowhere"},
            },
            404,
            "m3-other",
        ),
        ({"instances": [1]}, 400, "dataframe_split"),
    ],
)
def test_bad_requests_get_4xx_with_a_message(client, body, status, fragment):
    resp = client.post("/invocations", json=body)
    assert resp.status_code == status, resp.text
    answer = resp.json()
    assert fragment in answer["message"]
    assert answer["error_code"] == {400: "INVALID_PARAMETER_VALUE", 404: "RESOURCE_DOES_NOT_EXIST"}[status]
    if status == 404:
        assert answer["domains"] == sorted(["m3-other", COPY, TWIN])


def test_invalid_json_and_too_large_bodies(client):
    resp = client.post("/invocations", content=b"{not json", headers={"content-type": "application/json"})
    assert resp.status_code == 400 and "invalid request body" in resp.json()["message"]
    big = json.dumps(
        {"dataframe_split": {"columns": ["unique_id", "ds", "y"], "data": [["a", i, 1.0] for i in range(5000)]}}
    ).encode()
    assert len(big) > 0.05 * 2**20
    resp = client.post("/invocations", content=big, headers={"content-type": "application/json"})
    assert resp.status_code == 413 and "exceeds the limit" in resp.json()["message"]

    def chunks():  # no Content-Length: the bytes actually read are capped
        for i in range(0, len(big), 4096):
            yield big[i : i + 4096]

    resp = client.post("/invocations", content=chunks(), headers={"content-type": "application/json"})
    assert resp.status_code == 413, resp.text


def test_metrics_count_requests_and_describe_inputs(client, context):
    def scrape() -> str:
        resp = client.get("/metrics")
        assert resp.status_code == 200 and resp.headers["content-type"].startswith("text/plain")
        return resp.text

    def value(text: str, line_start: str) -> float:
        found = [ln for ln in text.splitlines() if ln.startswith(line_start)]
        return float(found[0].rsplit(" ", 1)[1]) if found else 0.0

    ok = f'tsfm_serve_requests_total{{code="200",domain="{COPY}"}}'
    unknown = 'tsfm_serve_requests_total{code="404",domain="unknown"}'
    before = scrape()
    with_gap = context.copy()
    with_gap.loc[with_gap.index[1], "y"] = np.nan  # one missing value
    assert client.post("/invocations", json=request_body(with_gap, 3, COPY)).status_code == 200
    assert client.post("/invocations", json=request_body(context, 3, "nowhere")).status_code == 404
    after = scrape()
    assert value(after, ok) == value(before, ok) + 1
    assert value(after, unknown) == value(before, unknown) + 1
    n_series, n_rows = context["unique_id"].nunique(), len(context)
    for name, delta in [
        (f'tsfm_serve_input_series_total{{domain="{COPY}"}}', n_series),
        (f'tsfm_serve_input_values_total{{domain="{COPY}"}}', n_rows),
        (f'tsfm_serve_input_missing_values_total{{domain="{COPY}"}}', 1),
        (f'tsfm_serve_input_context_length_count{{domain="{COPY}"}}', n_series),
        (f'tsfm_serve_input_level_log10_count{{domain="{COPY}"}}', n_series),
        (f'tsfm_serve_input_cv_count{{domain="{COPY}"}}', n_series),
        (f'tsfm_serve_request_seconds_count{{domain="{COPY}"}}', 1),
        (f'tsfm_serve_batch_requests_count{{domain="{COPY}"}}', 1),
    ]:
        assert value(after, name) == value(before, name) + delta, name
    assert 'tsfm_serve_model_info{alias="champion",backbone_version=' in after
    assert value(after, "tsfm_serve_backbones_loaded") == 1


def test_ping_and_health_while_nothing_is_served(registry):
    with TestClient(_app(registry, domains=["absent-domain"])) as c:
        assert c.get("/ping").status_code == 503
        health = c.get("/health")
        assert health.status_code == 503
        assert "absent-domain" in health.json()["errors"]
        resp = c.post("/invocations", json={"dataframe_records": [{"unique_id": "a", "ds": 1, "y": 1.0}]})
        assert resp.status_code == 503


def test_bearer_token(registry, context):
    with TestClient(_app(registry, domains=[COPY], token=TOKEN)) as c:
        body = request_body(context, 2)  # one domain served: params.domain may be left out
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN}):
            resp = c.post("/invocations", json=body, headers=headers)
            assert resp.status_code == 401 and "bearer token" in resp.json()["message"]
            assert c.get("/metrics", headers=headers).status_code == 401
            assert c.post("/reload", headers=headers).status_code == 401
        good = {"Authorization": f"Bearer {TOKEN}"}
        resp = c.post("/invocations", json=body, headers=good)
        assert resp.status_code == 200, resp.text
        assert resp.headers[MODEL_HEADER].startswith(f"forecaster-{COPY}/")
        assert c.get("/metrics", headers=good).status_code == 200
        assert c.post("/reload", headers=good).json()["domains"] == {COPY: c.app.state.catalog.get(COPY).version}
        assert c.get("/ping").status_code == 200 and c.get("/health").status_code == 200  # probes stay open


def test_drift_counts_answered_requests_only_and_a_few_per_client(registry, context):
    """Test traffic (422s included) pushed the served-context PSI to about 10 and raised the drift
    alarm: now a refused request counts nothing and one client counts at most N requests a minute.
    A request of more series than the limit gets 413 with the limit."""
    with TestClient(_app(registry, drift_requests_per_minute=2, max_request_series=3)) as c:

        def counted() -> float:
            line = [
                ln
                for ln in c.get("/metrics").text.splitlines()
                if ln.startswith(f'tsfm_serve_input_series_total{{domain="{COPY}"}}')
            ]
            return float(line[0].rsplit(" ", 1)[1]) if line else 0.0

        small = context[context["unique_id"].isin(context["unique_id"].unique()[:2])]
        refused = request_body(small, 3, COPY) | {"params": {"horizon": 999, "domain": COPY}}
        assert c.post("/invocations", json=refused).status_code == 400
        assert counted() == 0  # refused: not counted
        for _ in range(4):
            assert c.post("/invocations", json=request_body(small, 3, COPY)).status_code == 200
        assert counted() == 2 * 2  # two requests of two series, the other two not counted
        many = c.post("/invocations", json=request_body(context, 3, COPY))
        if context["unique_id"].nunique() > 3:
            assert many.status_code == 413 and "the limit is 3" in many.json()["message"]
