"""The canonical store: files, meta, atomic replacement, and the Prefect task wrapper."""

from __future__ import annotations

import logging
import random

import pandas as pd
import pytest

from infra.files import file_digest
from store.canonical import read_store
from store.ingest import ingest_to_store
from store.validate import IngestError
from tasks.ingest import ingest_task
from tracking.retries import retry_if_transient


def daily_csv(write_file, name="good.csv", n=12):
    rows = [f"{uid},2024-01-{d:02d},{d * k}" for k, uid in ((1, "a"), (2, "b")) for d in range(1, n + 1)]
    random.Random(0).shuffle(rows)  # the store sorts, the source need not
    return write_file(name, "unique_id,ds,y\n" + "\n".join(rows) + "\n")


def test_good_csv_makes_a_complete_store(write_file, tmp_path, caplog):
    src = daily_csv(write_file)
    with caplog.at_level(logging.INFO, logger="tsfm.ingest"):
        store = ingest_to_store(str(src), "shop", horizon=2, min_train=3, data_dir=tmp_path / "data")
    assert store == tmp_path / "data" / "store" / "shop"
    assert sorted(p.name for p in store.iterdir()) == ["meta.json", "quarantine.parquet", "series.parquet"]
    df, meta = read_store(store)
    assert meta["domain"] == "shop" and meta["source"] == str(src)
    assert (meta["horizon"], meta["min_train"], meta["freq"], meta["n_series"]) == (2, 3, "D", 2)
    assert (meta["rows_in"], meta["rows_kept"], meta["rows_quarantined"]) == (24, 24, 0)
    assert meta["md5"] == file_digest(store / "series.parquet") and meta["created_at"]
    assert df["ds"].dtype == "datetime64[ns]" and df["y"].dtype == "float64"
    assert df.equals(df.sort_values(["unique_id", "ds"]).reset_index(drop=True))
    assert df[df.unique_id == "b"]["y"].tolist() == [2.0 * d for d in range(1, 13)]
    assert len(pd.read_parquet(store / "quarantine.parquet")) == 0
    assert "good.csv" in caplog.text and "24 kept" in caplog.text


def test_counts_reconcile_in_meta_and_quarantine_file(write_file, tmp_path):
    body = "".join(f"s,{i},{'bad' if i % 5 == 0 else i}\n" for i in range(30))
    store = ingest_to_store(str(write_file("some_bad.csv", "unique_id,ds,y\n" + body)), "mixed", 2, 2, tmp_path)
    _, meta = read_store(store)
    q = pd.read_parquet(store / "quarantine.parquet")
    assert meta["rows_in"] == 30 == meta["rows_kept"] + meta["rows_quarantined"]
    assert q["row"].tolist() == [1, 6, 11, 16, 21, 26] and set(q["column"]) == {"y"}
    assert meta["freq"] is None  # integer steps


def test_same_input_gives_same_series_file(write_file, tmp_path):
    src = str(daily_csv(write_file))
    m1 = read_store(ingest_to_store(src, "d1", 2, 2, tmp_path))[1]["md5"]
    m2 = read_store(ingest_to_store(src, "d2", 2, 2, tmp_path))[1]["md5"]
    assert m1 == m2  # so DVC sees no change when nothing changed


def test_failed_ingest_keeps_the_old_store_and_leaves_no_temp(write_file, tmp_path):
    store = ingest_to_store(str(daily_csv(write_file)), "shop", 2, 2, tmp_path)
    before = (store / "series.parquet").read_bytes()
    bad = write_file("bad.csv", "id,when,value\n1,2,3\n")
    with pytest.raises(IngestError, match="bad.csv"):
        ingest_to_store(str(bad), "shop", 2, 2, tmp_path)
    assert (store / "series.parquet").read_bytes() == before
    assert [p.name for p in store.parent.iterdir()] == ["shop"]
    # a good re-ingest replaces the store in place; the previous one is kept as a version, no temp is left
    ingest_to_store(str(daily_csv(write_file, "longer.csv", n=20)), "shop", 2, 2, tmp_path)
    assert read_store(store)[1]["rows_in"] == 40
    assert sorted(p.name for p in store.parent.iterdir()) == [".versions", "shop"]
    [kept] = (store.parent / ".versions" / "shop").iterdir()
    assert (kept / "series.parquet").read_bytes() == before


def test_nothing_usable_is_fatal(write_file, tmp_path):
    path = write_file("tiny.csv", "unique_id,ds,y\na,1,1\na,2,2\n")
    with pytest.raises(IngestError, match=r"tiny\.csv: horizon 2 is too long .* has 2 points.*lower --min-train"):
        ingest_to_store(str(path), "tiny", 2, 2, tmp_path)
    assert not (tmp_path / "store" / "tiny").exists()
    bad = write_file("bad.csv", "unique_id,ds,y\na,1,x\na,2,y\n")
    with pytest.raises(IngestError, match=r"bad\.csv: no usable rows, all 2 quarantined .*row 1, column y"):
        ingest_to_store(str(bad), "bad", 1, 2, tmp_path)
    with pytest.raises(IngestError, match="min_train >= 2"):  # a datastore window needs two train points
        ingest_to_store(str(bad), "bad", 1, 1, tmp_path)


def test_a_horizon_too_long_says_the_longest_that_fits(write_file, tmp_path):
    rows = "".join(f"{u},{t},{t}\n" for u, n in (("a", 30), ("b", 20)) for t in range(n))
    path = write_file("two.csv", "unique_id,ds,y\n" + rows)
    with pytest.raises(
        IngestError, match=r"horizon 12 is too long .* longest series has 30 points; horizon 11 or less"
    ):
        ingest_to_store(str(path), "two", 12, 8, tmp_path)
    assert ingest_to_store(str(path), "two", 11, 8, tmp_path).is_dir()  # the horizon it names does fit


@pytest.mark.parametrize("domain", ["Shop", "-x", "a b", "", "a" * 64])
def test_bad_domain_names_are_refused(domain, tmp_path):
    with pytest.raises(ValueError, match="must match"):
        ingest_to_store("synthetic:kernelsynth?n_series=2&length=16", domain, 2, 2, tmp_path)


def test_synthetic_source_through_the_prefect_task_fn(tmp_path):
    path = ingest_task.fn("synthetic:kernelsynth?n_series=5&length=40&seed=3", "synthetic", 4, 8, str(tmp_path))
    assert isinstance(path, str)
    df, meta = read_store(path)
    assert meta["n_series"] == 5 and meta["rows_kept"] == 200 and meta["freq"] is None
    assert df["ds"].dtype == "int64"
    assert ingest_task.name == "ingest" and ingest_task.retries == 2


def test_retry_only_transient_failures():
    from prefect.states import Failed

    assert retry_if_transient(None, None, Failed(data=ConnectionError("endpoint down"))) is True
    assert retry_if_transient(None, None, Failed(data=IngestError("bad.csv: no rows"))) is False
