"""A source read with --columns or --date-format is re-read the same way by every scheduled run: the store
records how it was read, onboarding remembers it in the registry, and the deployments' parameters carry it."""

from __future__ import annotations

import json

import mlflow
import pandas as pd

from infra.settings import IngestParams, load_settings
from store.canonical import read_meta
from store.ingest import ingest_to_store
from tracking import registry
from tracking.known_sources import known_sources, missing_ingests


def test_how_a_source_was_read_is_kept_from_ingest_to_the_deployments(write_file, tmp_path, monkeypatch):
    monkeypatch.setenv("TSFM_PATHS__DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("TSFM_PATHS__STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("TSFM_PARAMS", str(tmp_path / "none.yaml"))
    settings = load_settings()
    text = "Series,Serial,Value\n" + "\n".join(f"a,{43831 + i},{i % 7}" for i in range(40)) + "\n"
    path = write_file("book.csv", text)
    columns = {"Series": "unique_id", "Serial": "ds", "Value": "y"}
    store = ingest_to_store(str(path), "book", 4, 8, settings.paths.data_dir, columns, "excel")
    meta = read_meta(store)
    assert (meta["columns"], meta["date_format"], meta["freq"]) == (columns, "excel", "D")

    # what onboarding remembers (tracking.onboarding_runs), read back as the domain's known source
    registry.configure(settings)
    mlflow.MlflowClient().create_registered_model(registry.forecaster_name("book"))
    registry.remember_domain(
        "book", {"source": str(path), "columns": json.dumps(columns), "date_format": "excel", "horizon": 4}
    )
    spec = known_sources(settings)["book"].spec
    assert (spec.columns, spec.date_format, spec.horizon) == (columns, "excel", 4)

    # a scheduled re-ingest, and the one an onboarding of a wiped store starts with, read it the same way
    from flows.deployments import build_deployments

    deployments = {d.name: d.parameters.get("params") for d in build_deployments(settings)}
    for name in ("ingest-book", "onboard-book"):
        assert (deployments[name]["columns"], deployments[name]["date_format"]) == (columns, "excel")
    store.joinpath("meta.json").unlink()
    (again,) = missing_ingests(["book"], settings)
    assert again == IngestParams(domain="book", source=str(path), horizon=4, columns=columns, date_format="excel")
    reread = ingest_to_store(again.source, "book", 4, 8, settings.paths.data_dir, again.columns, again.date_format)
    assert pd.read_parquet(reread / "series.parquet")["ds"].iloc[0] == pd.Timestamp("2020-01-01")

    # onboarded again from a source read with the default rules: the earlier format is forgotten
    registry.remember_domain("book", {"source": str(path), "columns": "{}", "date_format": "", "horizon": 4})
    spec = known_sources(settings)["book"].spec
    assert (spec.columns, spec.date_format) == ({}, None)
