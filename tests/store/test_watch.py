"""Folder / S3-prefix sources and the source watcher: a new file at a domain's source is new data."""

from __future__ import annotations

import os
import time

import boto3
import pandas as pd

from infra.events import SOURCE_UPDATED, source_resource
from infra.settings import PathSettings, SourceSpec, load_settings
from store.canonical import QUARANTINE_FILE, read_store
from store.ingest import ingest_to_store
from store.sources import read_source
from store.watch import changed_sources, fingerprint, load_state, watch_sources


def _series(uid: str, n: int = 30, start: int = 0) -> str:
    return "".join(f"{uid},{start + i},{float(i % 7)}\n" for i in range(n))


def test_a_folder_source_reads_all_its_files_and_keeps_quarantine(tmp_path):
    src = tmp_path / "incoming"
    src.mkdir()
    (src / "a.csv").write_text("unique_id,ds,y\n" + _series("a"))
    (src / "b.csv").write_text("unique_id,ds,y\n" + _series("b") + "b,99,not-a-number\n")
    (src / ".partial.csv").write_text("unique_id,ds,y\nz,0,1\n")  # an upload in progress: skipped
    (src / "notes.txt").write_text("not data")
    store = ingest_to_store(str(src), "folder-demo", 4, 8, tmp_path / "data")
    df, meta = read_store(store)
    assert sorted(df["unique_id"].unique()) == ["a", "b"] and meta["rows_in"] == 61 and meta["rows_kept"] == 60
    quarantine = pd.read_parquet(store / QUARANTINE_FILE)
    # each row keeps its own file's name and row number: b.csv's bad row is its 31st data row
    assert quarantine[["file", "row", "column"]].values.tolist() == [[f"{src}/b.csv", 31, "y"]]


def test_an_s3_prefix_source_and_its_fingerprint(moto_endpoint, aws_env, tmp_path):
    aws_env.setenv("AWS_ENDPOINT_URL_S3", moto_endpoint)
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket="arrivals")
    s3.put_object(Bucket="arrivals", Key="shop/2026-01.csv", Body=("unique_id,ds,y\n" + _series("a")).encode())
    uri = "s3://arrivals/shop/"
    assert sorted(read_source(uri).frame["unique_id"].unique()) == ["a"]
    before = fingerprint(uri)
    assert fingerprint(uri) == before  # unchanged prefix, same fingerprint
    s3.put_object(Bucket="arrivals", Key="shop/2026-02.csv", Body=("unique_id,ds,y\n" + _series("b")).encode())
    assert fingerprint(uri) != before
    assert sorted(read_source(uri).frame["unique_id"].unique()) == ["a", "b"]
    one = fingerprint("s3://arrivals/shop/2026-01.csv")
    s3.put_object(Bucket="arrivals", Key="shop/2026-01.csv", Body=("unique_id,ds,y\n" + _series("c")).encode())
    assert fingerprint("s3://arrivals/shop/2026-01.csv") != one  # new ETag


def test_fingerprints_change_with_new_files_only(tmp_path):
    src = tmp_path / "incoming"
    src.mkdir()
    (src / "a.csv").write_text("unique_id,ds,y\n" + _series("a"))
    first = fingerprint(str(src))
    assert fingerprint(str(src)) == first
    (src / "b.csv").write_text("unique_id,ds,y\n" + _series("b"))
    assert fingerprint(str(src)) != first
    assert fingerprint("builtin:m3-other") is None and fingerprint("synthetic:kernelsynth") is None
    assert fingerprint(str(tmp_path / "not-yet.csv")) != fingerprint(str(src / "a.csv"))


def test_the_watcher_emits_an_event_for_a_changed_source_only(prefect_harness, tmp_path, monkeypatch):
    from prefect.client.orchestration import get_client
    from prefect.events.filters import EventFilter, EventNameFilter

    changing, steady = tmp_path / "changing", tmp_path / "steady"
    for folder in (changing, steady):
        folder.mkdir()
        (folder / "part-1.csv").write_text("unique_id,ds,y\n" + _series(folder.name))
    sources = {
        "changing": SourceSpec(source=str(changing)),
        "steady": SourceSpec(source=str(steady)),
        "m3-other": SourceSpec(source="builtin:m3-other"),
    }
    settings = load_settings(
        paths=PathSettings(data_dir=tmp_path / "data", state_dir=tmp_path / "state"), sources=sources
    )

    assert watch_sources(settings) == []  # first look: fingerprints recorded, nothing announced
    assert set(load_state(settings.paths.state_dir)) == {"changing", "steady"}  # builtin: not watched
    assert watch_sources(settings) == []
    (changing / "part-2.csv").write_text("unique_id,ds,y\n" + _series("new"))
    assert watch_sources(settings) == ["changing"]
    assert watch_sources(settings) == []  # announced once

    # the event reached the (real, ephemeral) Prefect API: for the changed source, not the steady one
    with get_client(sync_client=True) as client:
        deadline = time.monotonic() + 30
        while True:
            page = client.read_events(EventFilter(event=EventNameFilter(name=[SOURCE_UPDATED])), limit=50)
            ours = [e for e in page.events if e.payload.get("source") in (str(changing), str(steady))]
            if ours or time.monotonic() > deadline:
                break
            time.sleep(0.5)
    assert [e.resource.id for e in ours] == [source_resource("changing")]
    assert ours[0].payload["domain"] == "changing" and ours[0].payload["previous"]


def test_a_changed_source_uri_is_a_new_baseline_not_an_update(tmp_path):
    a, b = tmp_path / "a.csv", tmp_path / "b.csv"
    a.write_text("unique_id,ds,y\n" + _series("a"))
    b.write_text("unique_id,ds,y\n" + _series("b", 40))
    state: dict = {}
    assert changed_sources({"d": SourceSpec(source=str(a))}, state) == {}
    assert changed_sources({"d": SourceSpec(source=str(b))}, state) == {}
    os.utime(b, ns=(1, 1))  # same name and size, other mtime: new data
    assert set(changed_sources({"d": SourceSpec(source=str(b))}, state)) == {"d"}
