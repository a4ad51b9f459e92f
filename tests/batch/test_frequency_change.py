"""A domain re-ingested at another frequency (month ends, then weekly Sundays under the same ids): the
ingest says so loudly, and a batch refuses to run the champion fitted on the old frequency, which had
forecast the weekly series as months without a word."""

from __future__ import annotations

import pandas as pd
import pytest

from batch.run import check_frequency
from infra.errors import InputError
from reports.summary import ingest_summary
from store.ingest import ingest_to_store


def _csv(path, freq: str, periods: int) -> str:
    ds = pd.date_range("2019-01-01", periods=periods, freq=freq).strftime("%Y-%m-%d")
    rows = ["unique_id,ds,y"] + [f"s{s},{d},{100 + s + i % 12}" for s in range(2) for i, d in enumerate(ds)]
    path.write_text("\n".join(rows) + "\n")
    return str(path)


def test_a_new_frequency_is_news_at_ingest_and_stops_the_old_champion(tmp_path):
    ingest_to_store(_csv(tmp_path / "m.csv", "ME", 48), "shop", 6, 8, tmp_path)
    store = ingest_to_store(_csv(tmp_path / "w.csv", "W-SUN", 120), "shop", 6, 8, tmp_path)
    assert "WARNING: the frequency changed from ME to W-SUN" in ingest_summary(store)
    model = {"name": "forecaster-shop", "version": "3"}
    with pytest.raises(InputError, match="fitted on ME data: onboard the domain again .*--domain shop"):
        check_frequency("W-SUN", "ME", model)
    check_frequency("ME", "M", model)  # one frequency, two spellings
    check_frequency("W-SUN", None, model)  # a model that knows no frequency (integer steps, per-series seasons)
