"""A domain's frequency and season come from its timestamps (or its source), unless the user sets one."""

from __future__ import annotations

import pandas as pd
import pytest

from store.canonical import describe_seasons, read_meta, read_split, series_seasons
from store.frequency import season_from_freq
from store.ingest import ingest_to_store


@pytest.mark.parametrize(
    "freq, season",
    [
        ("MS", 12),
        ("ME", 12),
        ("QS-JAN", 4),
        ("W-MON", 52),
        ("D", 7),
        ("B", 5),
        ("h", 24),
        ("30min", 48),
        ("15min", 96),
        ("YS", 1),
        (None, 1),
    ],
)
def test_season_follows_the_frequency(freq, season):
    assert season_from_freq(freq) == season


def _csv(tmp_path, freq: str | None, n: int = 40) -> str:
    ds = pd.date_range("2015-01-31", periods=n, freq=freq) if freq else range(n)
    frame = pd.concat(
        [pd.DataFrame({"unique_id": f"s{i}", "ds": ds, "y": [float(i + t % 12) for t in range(n)]}) for i in range(3)]
    )
    path = tmp_path / f"data-{freq}.csv"
    frame.to_csv(path, index=False)
    return str(path)


@pytest.mark.parametrize("freq, season", [("ME", 12), ("W-MON", 52), ("D", 7), ("h", 24), (None, 1)])
def test_ingest_records_frequency_and_season_and_onboarding_uses_them(tmp_path, freq, season):
    store = ingest_to_store(_csv(tmp_path, freq), "d", 4, 8, tmp_path)
    meta = read_meta(store)
    assert meta["freq"] == freq and meta["season_length"] == season
    assert meta["season_source"] == ("frequency" if freq else "default")
    split, _ = read_split(store, 4)
    assert set(split.seasons.tolist()) == {season}
    assert describe_seasons(store).startswith(f"{season} (")
    # set by the user, it wins
    assert series_seasons(store, 3) == 3 and describe_seasons(store, 3) == "3 (set by the user)"


def test_a_source_that_knows_its_seasons_keeps_them(tmp_path):
    store = ingest_to_store("builtin:m3-other", "m3-other", 8, 8, tmp_path)
    seasons = series_seasons(store)
    assert isinstance(seasons, dict) and set(seasons.values()) == {1, 12}  # yearly/other and monthly series
    assert describe_seasons(store) == "per series, from the source (1: 152 series, 12: 52 series)"
    store = ingest_to_store("builtin:aus_retail", "au-retail", 8, 8, tmp_path)
    assert read_meta(store)["freq"] == "MS" and series_seasons(store) == 12


@pytest.mark.parametrize(
    "freq, finer",
    [
        ("D", True),
        ("B", True),
        ("h", True),
        ("30min", True),
        ("15T", True),
        ("2D", False),
        ("W-SUN", False),
        ("MS", False),
        ("QE", False),
        (None, False),
        ("nonsense", False),
    ],
)
def test_daily_or_finer_is_what_the_long_context_backbone_is_offered_to(freq, finer):
    from store.frequency import daily_or_finer

    assert daily_or_finer(freq) is finer


@pytest.mark.parametrize(
    "freq, season", [("15T", 96), ("2H", 12), ("A-DEC", 1), ("Q-DEC", 4), ("BM", 12), ("BQE", 4), ("BME", 12)]
)
def test_older_aliases_and_business_calendars_keep_their_season(freq, season):
    assert season_from_freq(freq) == season
