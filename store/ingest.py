"""Ingest a source into the canonical store ``<data_dir>/store/<domain>/`` (files: ``store.canonical``).

The store is built in a temporary folder and swapped in by rename, so a failed ingest
never leaves a half store.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
import tempfile
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path

from infra.files import file_digest
from infra.settings import DOMAIN_PATTERN
from store.canonical import META_FILE, QUARANTINE_FILE, SERIES_FILE, SERIES_META_FILE
from store.frequency import season_from_freq
from store.sources import read_source
from store.validate import IngestError, map_columns, validate_frame

log = logging.getLogger("tsfm.ingest")


def check_domain(domain: str) -> str:
    if not re.fullmatch(DOMAIN_PATTERN, domain):
        raise IngestError(f"domain {domain!r} must match {DOMAIN_PATTERN} (lowercase, digits, _ or -)")
    return domain


def ingest_to_store(
    source: str,
    domain: str,
    horizon: int,
    min_train: int,
    data_dir: Path,
    columns: dict[str, str] | None = None,
    date_format: str | None = None,
) -> Path:
    """Read, validate and store ``source`` as domain ``domain``; returns the store folder.
    ``columns``: the source's names for unique_id, ds and y, where they differ; ``date_format``: the
    strftime codes of its ds column, where the rules of ``store.validate`` cannot read it."""
    check_domain(domain)
    if horizon < 1 or min_train < 2:
        raise IngestError("horizon must be >= 1 and min_train >= 2")
    src = read_source(source)
    src = replace(src, frame=map_columns(src.frame, columns, src.name))
    series_horizons = None
    if src.series_meta is not None:
        # the source's own per-series horizons (M3) replace the single one for the length rule
        series_horizons = dict(zip(src.series_meta["unique_id"].astype(str), src.series_meta["horizon"].astype(int)))
    # a source with per-series seasons (M3) mixes frequencies on purpose: no common grid to check
    result = validate_frame(
        src.frame,
        src.name,
        horizon,
        min_train,
        series_horizons,
        freq=src.freq,
        check_grid=src.series_meta is None,
        date_format=date_format,
    )
    if result.rows_kept == 0:  # an empty store would only fail later, further from the cause
        rejected = Path(data_dir) / "store" / ".rejected" / f"{domain}-quarantine.csv"
        rejected.parent.mkdir(parents=True, exist_ok=True)
        result.quarantine.to_csv(rejected, index=False)  # every row with its reason, for the user to read
        raise IngestError(
            f"{nothing_kept_message(src.name, result, horizon, min_train)}; every row with its reason: {rejected}"
        )

    store = Path(data_dir) / "store" / domain
    store.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{domain}.tmp-", dir=store.parent))
    try:
        result.good.to_parquet(tmp / SERIES_FILE, index=False)
        result.quarantine.to_parquet(tmp / QUARANTINE_FILE, index=False)
        per_series = None
        if src.series_meta is not None:
            kept = set(result.good["unique_id"].unique())
            per_series = src.series_meta[src.series_meta["unique_id"].astype(str).isin(kept)].copy()
            per_series.to_parquet(tmp / SERIES_META_FILE, index=False)
        freq = src.freq or result.freq
        season, season_source = (
            (src.season_length, "source")
            if src.season_length
            else ((season_from_freq(freq), "frequency") if freq else (1, "default"))
        )
        meta = {
            "domain": domain,
            "source": source,
            "columns": columns or {},  # how it was read: a scheduled re-ingest reads it the same way
            "date_format": date_format,
            # with per-series horizons: the longest of them (what models must forecast)
            "horizon": int(per_series["horizon"].max()) if per_series is not None and len(per_series) else horizon,
            "series_horizons": per_series is not None,
            "min_train": min_train,
            "freq": freq,
            "timezone": result.timezone,
            "rows_off_grid": result.off_grid,
            "notes": list(result.notes),
            "season_length": season,
            "season_source": season_source,
            "n_series": result.n_series,
            "rows_in": result.rows_in,
            "rows_kept": result.rows_kept,
            "rows_quarantined": result.rows_quarantined,
            "md5": file_digest(tmp / SERIES_FILE),
            "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }
        (tmp / META_FILE).write_text(json.dumps(meta, indent=2) + "\n")
        _swap_in(tmp, store)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    for note in meta["notes"]:
        log.warning("ingest %s: %s", src.name, note)
    log.info(
        "ingest %s -> %s: %d series, %d rows in, %d kept, %d quarantined, freq=%s",
        src.name,
        store,
        meta["n_series"],
        meta["rows_in"],
        meta["rows_kept"],
        meta["rows_quarantined"],
        meta["freq"],
    )
    return store


def nothing_kept_message(name: str, result, horizon: int, min_train: int) -> str:
    """Why no row survived; when only length did it, the longest horizon that fits."""
    q = result.quarantine
    first = q.iloc[0]
    too_short = q["reason"].str.contains("2*horizon + min_train", regex=False)
    if too_short.any():  # every series that had good points was too short
        longest = int(q.loc[too_short, "unique_id"].value_counts().max())
        fits = (longest - min_train) // 2
        hint = (
            f"the longest series has {longest} points; horizon {fits} or less fits (a series needs "
            f"2 x horizon + min_train points)"
            if fits >= 1
            else f"the longest series has {longest} points, fewer than 2 + min_train ({min_train}); lower --min-train"
        )
        return f"{name}: horizon {horizon} is too long for this data: {hint}"
    return (
        f"{name}: no usable rows, all {result.rows_in} quarantined "
        f"(first: row {first['row']}, column {first['column']}: {first['reason']})"
    )


KEEP_VERSIONS = 5  # earlier stores of a domain kept under <data_dir>/store/.versions/<domain>/


def versions_dir(store: Path) -> Path:
    return store.parent / ".versions" / store.name


def _swap_in(tmp: Path, store: Path) -> None:
    """Replace ``store`` by ``tmp`` (a directory rename cannot overwrite a non-empty one, so the old
    store steps aside first). The old store is kept as a version (``versions_dir``, the newest
    ``KEEP_VERSIONS``): a re-ingest that quarantined most of a new file never loses the last good one."""
    old = None
    if store.exists():
        old = store.with_name(f".{store.name}.old-{tmp.name.rsplit('-', 1)[-1]}")
        store.rename(old)
    try:
        tmp.rename(store)
    except BaseException:
        if old is not None:
            old.rename(store)
        raise
    if old is not None:
        _keep_version(old, store)


def _keep_version(old: Path, store: Path) -> None:
    try:
        meta = json.loads((old / META_FILE).read_text())
        name = f"{meta['created_at'].replace(':', '').replace('+0000', 'Z')}-{meta['md5'][:8]}"
    except (OSError, ValueError, KeyError):
        shutil.rmtree(old, ignore_errors=True)  # not a complete store: nothing worth keeping
        return
    target = versions_dir(store) / name
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.exists():
        shutil.rmtree(old, ignore_errors=True)  # the same version is kept already
    else:
        old.rename(target)
    for stale in sorted(p for p in target.parent.iterdir() if p.is_dir())[:-KEEP_VERSIONS]:
        shutil.rmtree(stale, ignore_errors=True)


def previous_version(store: Path) -> tuple[Path, dict] | None:
    """The newest kept earlier version of a store and its meta, if any."""
    kept = sorted(p for p in versions_dir(store).glob("*") if (p / META_FILE).is_file())
    return (kept[-1], json.loads((kept[-1] / META_FILE).read_text())) if kept else None
