"""Files as careless exports write them: a ragged first row, an unclosed quote, time zones mixed
with naive times, a series that turns from daily to hourly. Each bad row is quarantined with its
file, row and reason; the rest is kept; nothing is shifted or reinterpreted silently."""

from __future__ import annotations

import pandas as pd

from store.canonical import QUARANTINE_FILE, read_store
from store.ingest import ingest_to_store
from store.sources import read_source
from store.validate import validate_frame


def _daily(n: int = 30, uid: str = "a", start: str = "2024-01-01", suffix: str = "") -> list[str]:
    return [
        f"{uid},{d.strftime('%Y-%m-%dT%H:%M:%S')}{suffix},{i + 1.5}"
        for i, d in enumerate(pd.date_range(start, periods=n, freq="D"))
    ]


def _validate(path):
    src = read_source(str(path))
    return validate_frame(src.frame, src.name, 2, 2, freq=src.freq)


def test_one_ragged_or_unquoted_row_is_quarantined_and_the_rest_kept(write_file):
    rows = _daily()
    first = write_file("first.csv", "\n".join(["unique_id,ds,y", rows[0] + ",extra", *rows[1:]]) + "\n")
    r = _validate(first)
    assert (r.rows_in, r.rows_kept) == (30, 29)
    assert r.quarantine[["file", "row"]].values.tolist() == [[str(first), 1]]
    assert "row has 4 fields, the header has 3" in r.quarantine["reason"][0]
    assert r.good["y"].tolist() == [i + 1.5 for i in range(1, 30)]  # no column shifted

    quote = write_file(
        "quote.csv", "\n".join(["unique_id,ds,y", *rows[:4], rows[4].replace(",5.5", ',"5.5'), *rows[5:]]) + "\n"
    )
    r = _validate(quote)
    assert (r.rows_in, r.rows_kept) == (30, 29)  # the lines after the quote are not swallowed
    assert r.quarantine["row"].tolist() == [5] and "an unclosed quote" in r.quarantine["reason"][0]


def test_offsets_are_converted_to_utc_and_a_series_mixing_them_with_naive_times_is_refused(write_file, tmp_path):
    from reports.summary import ingest_summary

    # midnight with an offset is a calendar date: 2024-01-01T00:00+02:00 is 1 January, not the evening
    # before in UTC (which the store held until 2026-12-08, and every forecast's date was a day early)
    aware = write_file("aware.csv", "\n".join(["unique_id,ds,y", *_daily(suffix="+02:00")]) + "\n")
    store = ingest_to_store(str(aware), "aware", 2, 2, tmp_path / "data")
    df, meta = read_store(store)
    assert df["ds"].iloc[0] == pd.Timestamp("2024-01-01")
    kept = "midnight on its own clock everywhere, kept as calendar dates with offset +02:00"
    assert meta["freq"] == "D" and meta["timezone"] == kept
    assert f"timestamps: {kept}" in ingest_summary(store)
    # daily dates across a daylight-saving change (+01:00, then +02:00) are the same calendar
    paris = [f"a,{t.isoformat()},1.0" for t in pd.date_range("2024-03-20", periods=30, freq="D", tz="Europe/Paris")]
    r = _validate(write_file("dst-daily.csv", "\n".join(["unique_id,ds,y", *paris]) + "\n"))
    assert r.rows_kept == 30 and r.freq == "D" and r.good["ds"].iloc[-1] == pd.Timestamp("2024-04-18")
    # so are a Parquet file's midnights in a time zone
    zoned = pd.DataFrame(
        {"unique_id": "a", "ds": pd.date_range("2024-03-20", periods=30, freq="D", tz="America/New_York"), "y": 1.0}
    )
    zoned.to_parquet(tmp_path / "zoned.parquet")
    r = _validate(tmp_path / "zoned.parquet")
    assert r.freq == "D" and r.good["ds"].iloc[0] == pd.Timestamp("2024-03-20")
    assert r.timezone == "midnight on its own clock everywhere, kept as calendar dates in time zone America/New_York"
    # a time of day with an offset is an instant: converted to UTC
    noon = write_file(
        "noon.csv", "\n".join(["unique_id,ds,y", *(f"a,2024-01-{d:02d}T12:00:00+02:00,1" for d in range(1, 29))])
    )
    assert _validate(noon).good["ds"].iloc[0] == pd.Timestamp("2024-01-01 10:00")

    # series a mixes the two kinds: refused whole; b (naive) and c (offsets) are each on one clock
    rows = (
        _daily(20)
        + _daily(10, start="2024-01-21", suffix="+02:00")
        + _daily(30, uid="b")
        + _daily(30, uid="c", suffix="-05:00")
    )
    r = _validate(write_file("mixed.csv", "\n".join(["unique_id,ds,y", *rows]) + "\n"))
    assert sorted(r.good["unique_id"].unique()) == ["b", "c"] and len(r.quarantine) == 30
    assert set(r.quarantine["reason"]) == {
        "series 'a' mixes timestamps with a UTC offset (+02:00) and without "
        "one: refused (write every timestamp of a series one way)"
    }
    assert r.good.loc[r.good["unique_id"] == "c", "ds"].iloc[0] == pd.Timestamp("2024-01-01")  # a date, as written

    hourly = [f"a,{t.isoformat()},1.0" for t in pd.date_range("2024-03-30", periods=48, freq="h", tz="Europe/Paris")]
    r = _validate(write_file("dst.csv", "\n".join(["unique_id,ds,y", *hourly]) + "\n"))
    assert r.rows_kept == 48 and r.freq == "h"  # across the spring change: one UTC hour apart each
    assert r.timezone == "converted to UTC from offsets +01:00, +02:00"


def test_a_series_that_turns_hourly_in_a_daily_domain_is_told(write_file, tmp_path):
    a = _daily(40)
    b = _daily(20, uid="b") + [
        f"b,{t.strftime('%Y-%m-%dT%H:%M:%S')},1.0" for t in pd.date_range("2024-01-21", periods=48, freq="h")
    ]
    c = _daily(40, uid="c")
    path = write_file("turns.csv", "\n".join(["unique_id,ds,y", *a, *b, *c]) + "\n")
    store = ingest_to_store(str(path), "turns", 2, 2, tmp_path / "data")
    df, meta = read_store(store)
    # b keeps its 20 daily points; from its first hourly step (01:00 on the 21st) every row is set aside
    assert meta["freq"] == "D" and meta["rows_off_grid"] == 47
    assert df.loc[df["unique_id"] == "b", "ds"].max() == pd.Timestamp("2024-01-21")
    q = pd.read_parquet(store / QUARANTINE_FILE)
    assert len(q) == 47 and set(q["unique_id"]) == {"b"}
    assert set(q["reason"]) == {
        "series 'b' leaves the D grid at 2024-01-21 01:00:00 (its spacing changes): quarantined from there on"
    }
    from reports.summary import ingest_summary

    assert (
        "1 series change their spacing (off the D grid): 47 rows from the change on quarantined: b"
        in ingest_summary(store)
    )


def test_a_half_bad_reingest_keeps_the_previous_version(write_file, tmp_path):
    from reports.summary import ingest_summary
    from store.ingest import KEEP_VERSIONS, versions_dir

    good = "\n".join(["unique_id,ds,y", *_daily(40), *_daily(40, uid="b")]) + "\n"
    store = ingest_to_store(str(write_file("v1.csv", good)), "shop", 2, 2, tmp_path / "data")
    first_md5 = read_store(store)[1]["md5"]
    half_bad = "\n".join(["unique_id,ds,y", *_daily(40), *[r.replace(",", ";") for r in _daily(40, uid="b")]]) + "\n"
    ingest_to_store(str(write_file("v2.csv", half_bad)), "shop", 2, 2, tmp_path / "data")
    df, meta = read_store(store)
    assert meta["rows_kept"] == 40 and list(df["unique_id"].unique()) == ["a"]
    [kept] = versions_dir(store).iterdir()
    assert read_store(kept)[1]["md5"] == first_md5 and len(read_store(kept)[0]) == 80
    summary = ingest_summary(store)
    assert (
        f"WARNING: this version keeps 40 rows of 1 series; the previous one kept 80 rows of 2 series and is "
        f"kept at {kept}" in summary
    )
    for i in range(KEEP_VERSIONS + 2):  # only the newest versions stay
        ingest_to_store(
            str(write_file(f"v{i + 3}.csv", "\n".join(["unique_id,ds,y", *_daily(30 + i)]) + "\n")),
            "shop",
            2,
            2,
            tmp_path / "data",
        )
    assert len(list(versions_dir(store).iterdir())) == KEEP_VERSIONS
