"""Reading a domain's canonical store ``<data_dir>/store/<domain>/``, and the one rule for how
its series are split.

The store holds ``series.parquet`` (good rows: unique_id, ds, y), ``quarantine.parquet``
(rejected rows with the reason), ``meta.json`` (counts, frequency, the horizon it was
validated for, the data md5) and, when the source knows them, ``series_meta.parquet`` (each
series' official horizon and season length, e.g. M3).
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pandas as pd

from infra.errors import InputError, NotFoundError
from models.splits import SeriesSplit
from store.frequency import season_from_freq

SERIES_FILE, QUARANTINE_FILE, META_FILE = "series.parquet", "quarantine.parquet", "meta.json"
SERIES_META_FILE = "series_meta.parquet"  # per-series official horizon and season, when the source has them


def read_meta(store_dir: Path | str) -> dict:
    path = Path(store_dir) / META_FILE
    if not path.is_file():
        raise NotFoundError(f"no store at {Path(store_dir)}: ingest the domain first (tsfm ingest)")
    return json.loads(path.read_text())


def read_store(store_dir: Path | str) -> tuple[pd.DataFrame, dict]:
    """(series frame, meta dict) of a store written by ``store.ingest.ingest_to_store``."""
    meta = read_meta(store_dir)
    return pd.read_parquet(Path(store_dir) / SERIES_FILE), meta


def read_series_meta(store_dir: Path | str) -> pd.DataFrame | None:
    """Per-series (unique_id, horizon, season_length) of a store, or None when the source had none."""
    path = Path(store_dir) / SERIES_META_FILE
    if not path.exists():
        return None
    df = pd.read_parquet(path)
    return df.assign(unique_id=df["unique_id"].astype(str))


def split_horizons(store_dir: Path | str, horizon: int | None = None, per_series: bool = True) -> int | dict[str, int]:
    """The horizon(s) the store's series are split with. The one rule: each series' own
    horizon where the source gave one (and ``per_series``); otherwise ``horizon``, by default
    the one the store was validated for, and never more than that."""
    per = read_series_meta(store_dir) if per_series else None
    if per is not None:
        return dict(zip(per["unique_id"], per["horizon"].astype(int)))
    validated = int(read_meta(store_dir)["horizon"])
    if horizon is None:
        return validated
    if horizon > validated:
        raise InputError(
            f"horizon {horizon} exceeds the {validated} the store at {Path(store_dir)} was validated "
            f"for; re-ingest with --horizon {horizon}"
        )
    return int(horizon)


def series_seasons(
    store_dir: Path | str, season_length: int | None = None, per_series: bool = True
) -> int | dict[str, int]:
    """Each series' season: ``season_length`` when the user set one; else the source's per-series
    seasons (M3); else the store's (the source's, or the one its frequency implies)."""
    if season_length is not None:
        return int(season_length)
    per = read_series_meta(store_dir) if per_series else None
    if per is not None:
        return dict(zip(per["unique_id"], per["season_length"].astype(int)))
    meta = read_meta(store_dir)
    return int(meta.get("season_length") or season_from_freq(meta.get("freq")))


def describe_seasons(store_dir: Path | str, season_length: int | None = None, per_series: bool = True) -> str:
    """Where the seasons come from, for reports and model tags: ``12 (from the frequency MS)``."""
    seasons = series_seasons(store_dir, season_length, per_series)
    if season_length is not None:
        return f"{seasons} (set by the user)"
    if isinstance(seasons, dict):
        counts = Counter(seasons.values())
        return "per series, from the source (" + ", ".join(f"{m}: {n} series" for m, n in sorted(counts.items())) + ")"
    meta = read_meta(store_dir)
    source = meta.get("season_source") or ("frequency" if meta.get("freq") else "default")
    return {
        "source": f"{seasons} (given by the source)",
        "frequency": f"{seasons} (from the frequency {meta.get('freq')})",
    }.get(source, f"{seasons} (no frequency known: integer steps)")


def read_split(
    store_dir: Path | str,
    horizon: int | None = None,
    season_length: int | None = None,
    per_series: bool = True,
    origins: int | None = 1,
) -> tuple[SeriesSplit, dict]:
    """The store read once and split by ``split_horizons``, with up to ``origins`` validation
    windows per series (None: by the domain's size, ``models.splits.resolve_origins``): (split, meta)."""
    df, meta = read_store(store_dir)
    horizons = split_horizons(store_dir, horizon, per_series)
    seasons = series_seasons(store_dir, season_length, per_series)
    try:
        return SeriesSplit.from_frame(df, horizons, seasons, origins), meta
    except ValueError as e:
        if not str(e).startswith("no series long enough"):
            raise
        longest = int(df.groupby("unique_id").size().max())
        raise InputError(
            f"{meta.get('domain', store_dir)}: horizon {horizon} is too long for this data: the longest "
            f"series has {longest} points and a series needs 2 x horizon + 1; horizon "
            f"{max((longest - 1) // 2, 1)} or less fits"
        ) from None
