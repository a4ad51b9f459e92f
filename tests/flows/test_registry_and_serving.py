"""Alias round trip and the HTTP scoring protocol, on the models the demo registered: both
servers (tsfm's own and MLflow's scoring server) answer the same requests identically."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import requests
from mlflow import MlflowClient

from models.splits import split_frame
from serving import MODEL_HEADER
from serving.launch import request_body, start_server, start_tsfm_server, stop_server, wait_ready
from store.canonical import read_store
from tasks.promote import promote_domain
from tracking.registry import rollback_domain


def test_alias_round_trip(demo_run):
    """Rollback and promotion move forecaster-m3-other@champion across families."""
    settings = demo_run["settings"]
    client = MlflowClient(settings.tracking_uri, settings.tracking_uri)
    name = "forecaster-m3-other"
    versions = demo_run["result"]["onboarded"]["versions"]
    before = str(client.get_model_version_by_alias(name, "champion").version)
    other = next(v for v in versions.values() if v != before)  # another family's version

    out = rollback_domain("m3-other", other, settings)
    assert str(client.get_model_version_by_alias(name, "champion").version) == other
    assert out["champion"] == other and out["previous_champion"] == before
    assert out["family"] == client.get_model_version(name, other).tags["family"]
    assert promote_domain("m3-other", settings, version=other)["promoted"] is False  # already champion

    client.delete_registered_model_alias(name, "champion")
    refused = promote_domain("m3-other", settings, version=other, margin=0.99)
    assert refused["promoted"] is True  # no champion: the first candidate is promoted whatever the margin
    refused = promote_domain("m3-other", settings, version=before, margin=0.99)
    assert refused["promoted"] is False and "does not beat" in refused["reason"] and "99%" in refused["reason"]
    assert str(client.get_model_version_by_alias(name, "champion").version) == other

    client.set_registered_model_alias(name, "champion", before)  # leave the registry as the demo left it


def test_gate_rescores_the_champion_on_the_candidates_validation_split(demo_run, tmp_path):
    """A champion is judged on the candidate's validation windows, not by its old tag, whatever its
    family: here the champion is the demo's seasonal naive version with a tag claiming an unbeatable
    score, so only re-scoring can show the candidate is better; re-scored, it must equal seasonal
    naive's validation sCRPS of the candidate's own table."""
    import mlflow

    from tracking import registry as tracking

    settings = demo_run["settings"]
    onboarded = demo_run["result"]["onboarded"]
    client = tracking.configure(settings)
    name = tracking.forecaster_name("m3-gate")
    naive = client.get_model_version("forecaster-m3-other", onboarded["versions"]["seasonal_naive"])
    best = client.get_model_version("forecaster-m3-other", onboarded["challenger"]["version"])
    candidate = tracking.register(best.source, name, dict(best.tags))
    old = tracking.register(naive.source, name, {**naive.tags, "val_sCRPS": "0.0"})
    tracking.set_alias(name, "champion", old)
    assert mlflow.get_registry_uri() == settings.tracking_uri

    by_tags = promote_domain("m3-gate", settings, candidate, margin=0.0)
    assert by_tags["promoted"] is False and by_tags["champion_rescored"] is False

    decision = promote_domain("m3-gate", settings, candidate, margin=0.0, result_dir=onboarded["result_dir"])
    assert decision["champion_rescored"] is True and decision["champion_family"] == "seasonal_naive"
    naive_val = float(naive.tags["val_sCRPS"])
    assert decision["champion_val_sCRPS"] == pytest.approx(naive_val, rel=1e-5)
    assert decision["val_sCRPS"] == pytest.approx(float(best.tags["val_sCRPS"]), rel=1e-5)
    assert decision["promoted"] == (decision["val_sCRPS"] < naive_val)
    expected = candidate if decision["promoted"] else old
    assert str(client.get_model_version_by_alias(name, "champion").version) == expected


def test_demo_served_through_tsfm_server(demo_run):
    served = demo_run["result"]["served"]
    champion = demo_run["result"]["onboarded"]["promotion"]
    # the X-Tsfm-Model header of the answer names the model, its version and its family
    assert served["model"] == f"forecaster-m3-other/{champion['version']} ({champion['family']})"
    assert served["rows"] == len(served["series"]) * 8


def _start(kind: str, demo_run):
    settings, root = demo_run["settings"], Path(demo_run["root"])
    if kind == "mlflow":
        return start_server("m3-other", settings, alias="challenger", log_file=root / "serve-test.log")
    return start_tsfm_server(
        settings, ["m3-other"], alias="challenger", reload_interval_s=0, log_file=root / "tsfm-serve-flows-test.log"
    )


@pytest.fixture(scope="module")
def servers(demo_run):
    """Both servers for forecaster-m3-other@challenger, started side by side."""
    started = {kind: _start(kind, demo_run) for kind in ("mlflow", "tsfm")}
    try:
        for proc, url in started.values():
            wait_ready(url, proc)
        yield {kind: url for kind, (_, url) in started.items()}
    finally:
        for proc, _ in started.values():
            stop_server(proc)


@pytest.fixture(scope="module", params=["mlflow", "tsfm"])
def server(request, servers):
    return servers[request.param]


@pytest.fixture(scope="module")
def context(demo_run):
    df, _ = read_store(demo_run["settings"].store_dir("m3-other"))
    split = split_frame(df, 8)
    history = pd.concat([split.train, split.val])
    ids = sorted(history["unique_id"].unique())[:2]
    return history[history["unique_id"].isin(ids)].sort_values(["unique_id", "ds"])


def test_invocations_answer_per_series_and_step(server, context):
    resp = requests.post(f"{server}/invocations", json=request_body(context, 5), timeout=60)
    assert resp.status_code == 200, resp.text
    out = pd.DataFrame(resp.json()["predictions"])
    assert list(out.columns) == ["unique_id", "ds", "mean", "median"] + [f"0.{i}" for i in range(1, 10)]
    assert len(out) == 2 * 5
    assert set(out["unique_id"]) == set(context["unique_id"])
    q = out[[f"0.{i}" for i in range(1, 10)]].to_numpy()
    assert (q[:, 1:] >= q[:, :-1]).all()
    # the first forecast step comes right after each series' last context stamp
    last = context.groupby("unique_id")["ds"].max()
    first = out.groupby("unique_id")["ds"].first()
    for uid in last.index:
        if pd.api.types.is_integer_dtype(context["ds"]):
            assert int(first[uid]) == int(last[uid]) + 1
        else:
            assert pd.Timestamp(first[uid]) > pd.Timestamp(last[uid])


@pytest.mark.parametrize(
    "body, fragment",
    [
        ({"dataframe_split": {"columns": ["unique_id", "y"], "data": [["a", 1.0]]}}, "ds"),
        ({"dataframe_split": {"columns": ["unique_id", "ds", "y"], "data": [["a", 1, "x"]]}}, "y"),
        (
            {
                "dataframe_split": {"columns": ["unique_id", "ds", "y"], "data": [["a", 1, 1.0], ["a", 2, 2.0]]},
                "params": {"horizon": 5000},
            },
            "horizon",
        ),
        (
            {
                "dataframe_split": {"columns": ["unique_id", "ds", "y"], "data": [["a", 1, 1.0]]},
                "params": {"horizon": "soon"},
            },
            "horizon",
        ),
    ],
)
def test_malformed_requests_get_4xx_with_message(server, body, fragment):
    resp = requests.post(f"{server}/invocations", json=body, timeout=60)
    assert 400 <= resp.status_code < 500
    assert fragment in resp.json()["message"]


def test_both_servers_answer_identically(servers, context, demo_run):
    body = request_body(context, 6)  # no params.domain: the tsfm server serves one domain here
    answers = {kind: requests.post(f"{url}/invocations", json=body, timeout=60) for kind, url in servers.items()}
    for resp in answers.values():
        assert resp.status_code == 200, resp.text
    mlflow_out = pd.DataFrame(answers["mlflow"].json()["predictions"])
    tsfm_out = pd.DataFrame(answers["tsfm"].json()["predictions"])
    pd.testing.assert_frame_equal(tsfm_out, mlflow_out, rtol=1e-5)
    challenger = demo_run["result"]["onboarded"]["challenger"]
    assert (
        answers["tsfm"].headers[MODEL_HEADER] == f"forecaster-m3-other/{challenger['version']} ({challenger['family']})"
    )


def test_a_new_backbone_champion_leaves_every_domain_as_it_was(demo_run, tmp_path):
    """Each registered forecaster carries its own backbone weights: moving backbone@champion to
    another version changes no domain's forecasts (a domain moves only through its next onboarding)."""
    import numpy as np

    from models.forecasting.kinds import load_forecaster
    from tracking import registry

    settings = demo_run["settings"]
    client = registry.configure(settings)
    fused = demo_run["result"]["onboarded"]["versions"]["fused"]
    context = [np.sin(np.arange(60) / 3.0) * 5 + 20]

    def forecast(dst: str) -> np.ndarray:
        kind, folder, _ = registry.download_forecaster("forecaster-m3-other", fused, tmp_path / dst)
        return load_forecaster(kind, folder).predict(context, 8).quantiles

    before = forecast("before")
    old = str(client.get_model_version_by_alias("backbone", "champion").version)
    other = client.create_model_version("backbone", client.get_model_version("backbone", old).source)
    try:
        client.set_registered_model_alias("backbone", "champion", other.version)
        assert np.array_equal(forecast("after"), before)
    finally:
        client.set_registered_model_alias("backbone", "champion", old)  # as the demo left it
        client.delete_model_version("backbone", other.version)
