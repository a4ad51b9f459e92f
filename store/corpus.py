"""The pre-training corpus: the TRAIN part of each ingested store (never a validation window or test),
one Parquet file per domain so the trainer can weight domains."""

from __future__ import annotations

import os
from pathlib import Path

from models.columns import COLUMNS
from models.splits import train_part
from store.canonical import read_meta, read_store, split_horizons


def store_versions(store_dirs: list[str]) -> dict[str, str]:
    """domain -> data md5 of each store, from its meta.json (cheap: no data read)."""
    versions = {}
    for store in store_dirs:
        meta = read_meta(store)
        versions[meta["domain"]] = meta["md5"]
    return versions


def build_corpus(store_dirs: list[str], out_dir: Path, val_origins: int | None = 1) -> dict:
    """-> {"files": {domain: parquet}, "rows", "series", "data_versions": {domain: md5}}.

    ``val_origins``: the validation windows onboarding keeps per series (``onboard.val_origins``);
    none of them may reach pre-training, or the backbone would be scored on what it learned."""
    files, versions, rows, series = {}, {}, 0, 0
    out_dir.mkdir(parents=True, exist_ok=True)
    for store in store_dirs:
        df, meta = read_store(Path(store))
        domain = meta["domain"]
        part = train_part(df, split_horizons(store), val_origins)
        part = part.assign(unique_id=domain + "/" + part["unique_id"].astype(str))
        # the trainer only needs order within a series: integer steps avoid mixed ds types
        part["ds"] = part.groupby("unique_id").cumcount()
        files[domain] = out_dir / f"{domain}.parquet"
        # the run folder is keyed by the data versions, so an existing file is this same part:
        # leaving it untouched keeps its mtime and the trainer's memory-mapped cache of it on resume
        if not files[domain].is_file():
            tmp = files[domain].with_suffix(".tmp")
            part[list(COLUMNS)].to_parquet(tmp, index=False)
            os.replace(tmp, files[domain])
        versions[domain] = meta["md5"]
        rows, series = rows + len(part), series + part["unique_id"].nunique()
    return {"files": files, "rows": rows, "series": series, "data_versions": versions}
