"""The demo flow end to end, and what it leaves in the registry."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
from mlflow import MlflowClient

from evaluation.domain import validation_evidence
from evaluation.gate import choose_candidate
from models.forecasting.kinds import FAMILIES
from models.memory.result import MODELS, OnboardingResult


def test_demo_flow_served_one_request(demo_run):
    served = demo_run["result"]["served"]
    assert served["rows"] == 3 * 8  # 3 series x horizon 8
    row = served["head"][0]
    assert {"unique_id", "ds", "mean", "0.1", "0.5", "0.9"} <= set(row)
    assert row["0.1"] <= row["0.5"] <= row["0.9"]


def test_demo_tables_cover_every_model(demo_run):
    onboarded = demo_run["result"]["onboarded"]
    result_dir = Path(onboarded["result_dir"])
    for part in ("val", "test"):
        table = pd.read_csv(result_dir / f"{part}_metrics.csv", index_col=0)
        # every model, the fully fine-tuned comparison included (finetune_steps > 0 in SMALL)
        # and the weighted ensemble of the candidates where it mixes two or more of them
        offered = {"ensemble"} if OnboardingResult.load(result_dir).ensemble_record()["offered"] else set()
        assert set(table.index) == {"seasonal_naive", "auto_ets", "theta", *MODELS} | offered
        assert (table["ms_per_series"] > 0).all()
        assert {"MASE", "sCRPS", "sMAPE"} <= set(table.columns)
        assert table[["MASE", "sCRPS", "sMAPE"]].notna().all().all()
        assert (table["sMAPE"] > 0).all() and (table["sMAPE"] < 200).all()
    assert (result_dir / "test_fan_chart.png").stat().st_size > 10_000
    assert (result_dir / "test_per_horizon.png").stat().st_size > 10_000
    result = OnboardingResult.load(result_dir)
    assert 0.0 <= result.alpha <= 1.0
    # m3-other mixes yearly, monthly and "other" series: each is scored on its official horizon
    assert result.provenance["per_series_horizons"] and result.horizon == 18
    assert json.loads((result_dir / "summary.json").read_text())["horizon"] == 18
    per = pd.read_csv(result_dir / "test_per_series.csv")
    assert set(per["horizon"]) == {6, 8, 18} and per.groupby("model").size().nunique() == 1
    assert (result_dir / "finetuned" / "backbone").is_dir()


def test_registry_holds_every_model_with_tags(demo_run):
    client = MlflowClient(demo_run["settings"].tracking_uri, demo_run["settings"].tracking_uri)
    names = {m.name for m in client.search_registered_models()}
    assert {"backbone", "teacher-m3-other", "adapter-m3-other", "fused-m3-other", "forecaster-m3-other"} <= names
    onboarded = demo_run["result"]["onboarded"]
    # one version per candidate family, each tagged with its family and validation scores
    versions = {mv.tags["family"]: mv for mv in client.search_model_versions("name = 'forecaster-m3-other'")}
    assert set(versions) == set(FAMILIES) - {"mstl"}  # monthly data have no second cycle: no MSTL candidate
    assert {f: str(v.version) for f, v in versions.items()} == onboarded["versions"]
    for family, mv in versions.items():
        for tag in ("data_version", "git_commit", "val_sCRPS", "freq", "season", "run_id"):
            assert mv.tags.get(tag), (family, tag)
    fused = versions["fused"]
    assert "Validation" in fused.description and "| fused |" in fused.description
    backbone = client.get_model_version_by_alias("backbone", "champion")
    assert fused.tags["backbone_version"] == str(backbone.version) == versions["backbone"].tags["backbone_version"]
    assert "backbone_version" not in versions["seasonal_naive"].tags
    # components keep no serving aliases: only forecaster-<domain> holds champion/challenger
    for component in ("teacher-m3-other", "adapter-m3-other", "fused-m3-other"):
        assert not client.get_registered_model(component).aliases, component
    challenger = client.get_model_version_by_alias("forecaster-m3-other", "challenger")
    assert challenger.tags["family"] == onboarded["challenger"]["family"]
    run = client.get_run(fused.tags["run_id"])
    assert "test_fused_sCRPS" in run.data.metrics and "val_backbone_sCRPS" in run.data.metrics
    assert "val_theta_sCRPS" in run.data.metrics
    assert run.inputs.dataset_inputs[0].dataset.digest


def test_every_stage_logged_a_run(demo_run):
    client = MlflowClient(demo_run["settings"].tracking_uri, demo_run["settings"].tracking_uri)
    for stage in ("tsfm-ingest", "tsfm-pretrain", "tsfm-onboard", "tsfm-promote"):
        exp = client.get_experiment_by_name(stage)
        assert exp is not None, stage
        assert client.search_runs([exp.experiment_id]), stage
    ingest = client.search_runs(
        [client.get_experiment_by_name("tsfm-ingest").experiment_id], filter_string="tags.domain = 'm3-other'"
    )[0]
    assert ingest.data.metrics["rows_in"] == ingest.data.metrics["rows_kept"] + ingest.data.metrics["rows_quarantined"]
    assert ingest.data.metrics["n_series"] == 204
    pretrain = client.search_runs([client.get_experiment_by_name("tsfm-pretrain").experiment_id])[0]
    assert pretrain.data.metrics["final_train_loss"] < pretrain.data.metrics["initial_train_loss"]
    assert "train_loss" in pretrain.data.metrics  # logged per step by the trainer process


def test_every_registered_kind_forecasts_in_process(demo_run):
    import mlflow

    from models.splits import split_frame
    from store.canonical import read_store

    mlflow.set_tracking_uri(demo_run["settings"].tracking_uri)
    mlflow.set_registry_uri(demo_run["settings"].tracking_uri)
    df, _ = read_store(demo_run["settings"].store_dir("m3-other"))
    context = split_frame(df, 8).train
    context = context[context["unique_id"].isin(sorted(context["unique_id"].unique())[:2])]
    versions = demo_run["result"]["onboarded"]["versions"]
    uris = [
        "models:/backbone@champion",
        "models:/teacher-m3-other/1",
        "models:/adapter-m3-other/1",
        "models:/fused-m3-other/1",
    ] + [f"models:/forecaster-m3-other/{v}" for v in versions.values()]
    for uri in uris:
        out = mlflow.pyfunc.load_model(uri).predict(context, params={"horizon": 4})
        assert len(out) == 2 * 4, uri
        assert out[[f"0.{i}" for i in range(1, 10)]].notna().all().all(), uri
    # the backbone has no trained horizon: a long one works too
    long = mlflow.pyfunc.load_model("models:/backbone@champion").predict(context, params={"horizon": 40})
    assert len(long) == 2 * 40


def test_promotion_decision_matches_validation(demo_run):
    """The challenger is the best validated family (the fused model only by the margin over all
    others); with no champion before, it became champion; nothing served loses to seasonal naive
    on validation."""
    onboarded = demo_run["result"]["onboarded"]
    promo = onboarded["promotion"]
    margin = demo_run["settings"].promote.margin
    val = pd.read_csv(Path(onboarded["result_dir"]) / "val_metrics.csv", index_col=0)
    evidence = validation_evidence(OnboardingResult.load(onboarded["result_dir"]), tuple(onboarded["versions"]))
    assert set(evidence.scores) == set(onboarded["versions"]) <= set(FAMILIES)
    assert all(abs(evidence.mean(f) - val.loc[f, "sCRPS"]) < 1e-9 for f in evidence.scores)  # the table's means
    expected = choose_candidate(evidence, margin, demo_run["settings"].promote.confidence)
    assert onboarded["challenger"]["family"] == expected.family
    assert promo["family"] == expected.family and promo["version"] == onboarded["versions"][expected.family]
    assert promo["promoted"] is True and promo["previous_champion"] is None
    client = MlflowClient(demo_run["settings"].tracking_uri, demo_run["settings"].tracking_uri)
    champion = client.get_model_version_by_alias("forecaster-m3-other", "champion")
    assert str(champion.version) == promo["version"] and champion.tags["family"] == expected.family
    assert float(champion.tags["val_sCRPS"]) <= float(val.loc["seasonal_naive", "sCRPS"])
    if expected.family == "ensemble":  # the reason names what it was weighed against
        assert "ensemble" in promo["chosen_because"] and "seasonal naive" in promo["chosen_because"]
    elif expected.family != "fused":
        assert "fused model" in promo["chosen_because"]


def test_onboarding_published_prefect_artifacts(demo_run):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    published = demo_run["result"]["onboarded"]["artifacts"]
    assert {"report", "test_table", "fan_chart"} <= set(published)
    keys = ["onboard-m3-other", "onboard-test-m3-other", "onboard-fan-chart-m3-other"]
    with get_client(sync_client=True) as client:
        found = {
            a.key: a for a in client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=keys)))
        }
    assert set(found) == set(keys)
    report = found["onboard-m3-other"].data
    assert "# Onboarding of `m3-other`" in report and "| fused |" in report and "alpha =" in report
    assert "mlflow ui --backend-store-uri sqlite:///" in report  # no tracking server: how to open the run
    assert found["onboard-fan-chart-m3-other"].data.startswith("data:image/png;base64,")
    rows = found["onboard-test-m3-other"].data
    assert "fused" in str(rows) and "sCRPS" in str(rows)


def test_the_ensemble_is_registered_with_its_members_and_served_like_any_family(demo_run):
    """The demo domain mixes its candidates (the ensemble is offered there); its version names its
    members and weights, loads in the serving catalog with the shared backbone, and answers a known
    series from the statistical member's fitted parameters."""
    from serving.catalog import Catalog
    from store.canonical import read_store

    onboarded = demo_run["result"]["onboarded"]
    assert onboarded["ensemble"]["offered"] and "ensemble" in onboarded["versions"]
    settings = demo_run["settings"]
    client = MlflowClient(settings.tracking_uri, settings.tracking_uri)
    tags = client.get_model_version("forecaster-m3-other", onboarded["versions"]["ensemble"]).tags
    used = {f: w for f, w in onboarded["ensemble"]["weights"].items() if w > 0}
    assert tags["family"] == "ensemble" and set(tags["members"].split(", ")) == {
        f"{f}:v{onboarded['versions'][f]}" for f in used
    }
    assert abs(sum(float(p.split("=")[1]) for p in tags["ensemble_weights"].split(", ")) - 1) < 0.02
    catalog = Catalog(settings.tracking_uri, "ensemble-check", ["m3-other"])  # an alias of its own: no side effect
    client.set_registered_model_alias("forecaster-m3-other", "ensemble-check", onboarded["versions"]["ensemble"])
    catalog.refresh()
    served = catalog.get("m3-other")
    assert served is not None and served.family == "ensemble" and not catalog.errors
    df, _ = read_store(settings.store_dir("m3-other"))
    ids = sorted(df["unique_id"].astype(str).unique())[:5]
    contexts = [g["y"].to_numpy("float32") for _, g in df[df["unique_id"].isin(ids)].groupby("unique_id")]
    q = served.forecaster.predict(contexts, 6, ids=ids).quantiles
    assert q.shape == (5, 6, 9) and (pd.DataFrame(q.reshape(-1, 9)).diff(axis=1).iloc[:, 1:] >= 0).all().all()
    statistical = [m for f, m in served.forecaster.members.items() if f in ("auto_ets", "theta")]
    assert all(m.reused == len(ids) for m in statistical)  # whole store histories extend the fitted ones
