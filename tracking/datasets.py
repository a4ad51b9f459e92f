"""A domain's canonical store as an MLflow dataset whose digest is the one DVC records.

``data/store/<domain>`` is a DVC stage output (dvc.yaml); dvc.lock names its version by
the md5 of the folder's ``.dir`` object. Logging runs' inputs under that same digest lets
a reviewer go from an MLflow run to the exact DVC data version. Only metadata is logged:
the schema comes from the Parquet footer and the profile from meta.json, so a large store
is hashed but never loaded into memory here.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import mlflow
import pyarrow as pa
import pyarrow.parquet as pq
from mlflow.data.dataset_source_registry import resolve_dataset_source
from mlflow.data.meta_dataset import MetaDataset
from mlflow.types import ColSpec, DataType, Schema

from store.canonical import META_FILE, SERIES_FILE


def dvc_md5(path: Path | str) -> str:
    """The md5 DVC records for ``path`` as an output: ``<md5>.dir`` for a folder, the file's md5 otherwise.

    Computed by DVC's own hashing library (dvc_data), so it always agrees with dvc.lock / ``dvc add``.
    """
    from dvc_data.hashfile.build import build
    from dvc_data.hashfile.db import HashFileDB
    from dvc_objects.fs import LocalFileSystem, MemoryFileSystem

    # dry_run: hash only; the staging object db is in memory, no DVC cache or repo is touched
    odb = HashFileDB(MemoryFileSystem(), "/tsfm-dvc-digest")
    _, _, obj = build(odb, str(Path(path).resolve()), LocalFileSystem(), "md5", dry_run=True)
    return obj.hash_info.value


_ARROW_TO_MLFLOW = (
    (pa.types.is_boolean, DataType.boolean),
    (pa.types.is_integer, DataType.long),
    (pa.types.is_floating, DataType.double),
    (pa.types.is_timestamp, DataType.datetime),
    (lambda t: pa.types.is_string(t) or pa.types.is_large_string(t), DataType.string),
)


def parquet_schema(path: Path) -> Schema:
    """MLflow column schema of a Parquet file, read from its footer only."""
    cols = []
    for field in pq.read_schema(path):
        dtype = next((dt for check, dt in _ARROW_TO_MLFLOW if check(field.type)), DataType.string)
        cols.append(ColSpec(dtype, field.name))
    return Schema(cols)


class StoreDataset(MetaDataset):
    """MetaDataset with a profile: the store's counts and both hashes (data md5 and DVC md5)."""

    def __init__(self, source, name: str, digest: str, schema: Schema, profile: dict[str, Any]):
        self._profile = profile
        super().__init__(source=source, name=name, digest=digest, schema=schema)

    @property
    def profile(self) -> dict[str, Any]:
        return self._profile

    def to_dict(self) -> dict[str, str]:
        return {**super().to_dict(), "profile": json.dumps(self._profile)}


def store_dataset(store_dir: Path | str) -> StoreDataset:
    """The store as a dataset: name = domain, source = the store path, digest = DVC's md5 of it."""
    store_dir = Path(store_dir)
    meta = json.loads((store_dir / META_FILE).read_text())
    digest = dvc_md5(store_dir)  # "<32 hex>.dir": 36 characters, MLflow's digest limit
    with warnings.catch_warnings():  # local paths match two equivalent registered sources
        warnings.simplefilter("ignore", UserWarning)
        source = resolve_dataset_source(str(store_dir))
    profile = {
        "num_rows": int(meta["rows_kept"]),
        "n_series": int(meta["n_series"]),
        "rows_quarantined": int(meta["rows_quarantined"]),
        "freq": meta.get("freq"),
        "data_md5": meta["md5"],
        "dvc_md5": digest,
    }
    return StoreDataset(
        source, name=meta["domain"], digest=digest, schema=parquet_schema(store_dir / SERIES_FILE), profile=profile
    )


def log_store_input(store_dir: Path | str, context: str) -> StoreDataset:
    """Log the store as an input of the active MLflow run (``context``: ingest, training, domain ...)."""
    ds = store_dataset(store_dir)
    mlflow.log_input(ds, context=context, tags={"data_md5": ds.profile["data_md5"], "dvc_md5": ds.digest})
    return ds
