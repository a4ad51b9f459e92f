"""A forecast dataset: ``<root>/origin=YYYY-MM-DD/part-NNNNN.parquet`` (Hive-style, so pandas, pyarrow,
Dask, Spark and DuckDB read ``origin`` from the folder name), locally or on S3.

A partition is visible only once complete, and re-running an origin replaces it whole:
- locally, chunks are written under ``<root>/.staging-<run>/`` (a dot folder every Parquet reader
  skips) and the finished folder is renamed into place: readers see the old partition or the new one;
- on S3, where nothing renames, chunks are copied into the partition with the run in their names and
  ``_manifest.json`` is written last: it is the commit, and ``read_forecasts`` reads only the files it
  lists (the previous run's files are deleted after it). A reader that lists objects itself must
  honour the manifest the same way.
Each partition's ``_manifest.json`` says what made it: model, version, family, counts, times.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import tempfile
import uuid
from datetime import date
from pathlib import Path
from urllib.parse import urlparse

import pandas as pd

from infra.errors import InputError

MANIFEST = "_manifest.json"
SKIPPED = "_skipped.parquet"  # series left without a forecast, and why


def check_output(root: str) -> None:
    """A local forecast dataset's root must be a folder that can be written to, or be creatable in
    one: checked before any forecasting work (an S3 root is checked when written). Creates nothing."""
    if is_s3(root):
        return
    path = Path(root).expanduser()
    probe = path
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    hint = "give --output (the settings' forecast.output) a folder you can write to; it is created if missing"
    if not probe.is_dir():
        raise InputError(f"forecast output {root}: {probe} is a file, not a folder: {hint}")
    try:
        os.rmdir(tempfile.mkdtemp(prefix=".tsfm-probe-", dir=probe))
    except OSError as e:
        raise InputError(f"forecast output {root}: cannot create files in {probe} ({e.strerror}): {hint}") from None


def partition_name(origin: date) -> str:
    return f"origin={origin.isoformat()}"


def is_s3(uri: str) -> bool:
    return str(uri).startswith("s3://")


def _s3():
    import boto3  # reads AWS_* credentials and AWS_ENDPOINT_URL_S3 itself

    return boto3.client("s3")


def _split(uri: str) -> tuple[str, str]:
    u = urlparse(uri)
    return u.netloc, u.path.lstrip("/")


def join(root: str, *parts: str) -> str:
    return "/".join([root.rstrip("/"), *parts]) if is_s3(root) else str(Path(root, *parts))


def write_parquet(df: pd.DataFrame, uri: str) -> str:
    if is_s3(uri):
        buf = io.BytesIO()
        df.to_parquet(buf, index=False)
        bucket, key = _split(uri)
        _s3().put_object(Bucket=bucket, Key=key, Body=buf.getvalue())
    else:
        Path(uri).parent.mkdir(parents=True, exist_ok=True)
        tmp = f"{uri}.{uuid.uuid4().hex[:8]}.tmp"
        df.to_parquet(tmp, index=False)
        os.replace(tmp, uri)  # a retried chunk overwrites its own file whole
    return uri


def read_parquet(uri: str) -> pd.DataFrame:
    if is_s3(uri):
        bucket, key = _split(uri)
        return pd.read_parquet(io.BytesIO(_s3().get_object(Bucket=bucket, Key=key)["Body"].read()))
    return pd.read_parquet(uri)


def _write_text(uri: str, text: str) -> None:
    if is_s3(uri):
        bucket, key = _split(uri)
        _s3().put_object(Bucket=bucket, Key=key, Body=text.encode(), ContentType="application/json")
    else:
        Path(uri).write_text(text)


def _read_text(uri: str) -> str | None:
    if is_s3(uri):
        bucket, key = _split(uri)
        try:
            return _s3().get_object(Bucket=bucket, Key=key)["Body"].read().decode()
        except _s3().exceptions.NoSuchKey:
            return None
    return Path(uri).read_text() if Path(uri).is_file() else None


def _s3_keys(bucket: str, prefix: str) -> list[str]:
    keys, token = [], None
    client = _s3()
    while True:
        page = client.list_objects_v2(Bucket=bucket, Prefix=prefix, **({"ContinuationToken": token} if token else {}))
        keys += [o["Key"] for o in page.get("Contents", [])]
        token = page.get("NextContinuationToken")
        if not token:
            return keys


def _s3_delete(bucket: str, keys: list[str]) -> None:
    client = _s3()
    for i in range(0, len(keys), 1000):
        client.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": k} for k in keys[i : i + 1000]]})


def staging(root: str, run_id: str) -> str:
    """Where a run writes before its commit: skipped by every reader (dot/underscore prefix)."""
    return join(root, f".staging-{run_id}") if not is_s3(root) else join(root, "_staging", run_id)


def commit(
    root: str, origin: date, run_id: str, parts: list[str], manifest: dict, skipped: pd.DataFrame | None = None
) -> str:
    """Make the run's parts the partition of ``origin`` (replacing an earlier run's); returns its URI."""
    partition = join(root, partition_name(origin))
    names = [f"part-{i:05d}.parquet" for i in range(len(parts))]
    if is_s3(root):
        bucket, prefix = _split(partition)
        client = _s3()
        names = [f"part-{i:05d}-{run_id}.parquet" for i in range(len(parts))]
        before = _s3_keys(bucket, prefix + "/")
        for src, name in zip(parts, names):
            sb, sk = _split(src)
            client.copy_object(Bucket=bucket, Key=f"{prefix}/{name}", CopySource={"Bucket": sb, "Key": sk})
        if skipped is not None and len(skipped):
            write_parquet(skipped, join(partition, f"_skipped-{run_id}.parquet"))
        _write_text(join(partition, MANIFEST), json.dumps({**manifest, "files": names}, indent=2, default=str))
        keep = {f"{prefix}/{n}" for n in names} | {f"{prefix}/{MANIFEST}", f"{prefix}/_skipped-{run_id}.parquet"}
        _s3_delete(bucket, [k for k in before if k not in keep])  # the replaced run's files, after the commit
        sb, sp = _split(staging(root, run_id))
        _s3_delete(sb, _s3_keys(sb, sp + "/"))
        return partition
    stage = Path(staging(root, run_id))
    ready = stage / "partition"
    ready.mkdir(parents=True, exist_ok=True)
    for src, name in zip(parts, names):
        os.replace(src, ready / name)
    if skipped is not None and len(skipped):
        skipped.to_parquet(ready / SKIPPED, index=False)
    (ready / MANIFEST).write_text(json.dumps({**manifest, "files": names}, indent=2, default=str))
    final = Path(partition)
    old = stage / "replaced"
    if final.exists():
        os.replace(final, old)  # readers see the old partition up to here, the new one right after
    os.replace(ready, final)
    shutil.rmtree(stage, ignore_errors=True)
    return partition


def discard(root: str, run_id: str) -> None:
    """Remove a failed run's staging area (nothing of it was ever visible)."""
    where = staging(root, run_id)
    if is_s3(where):
        bucket, prefix = _split(where)
        _s3_delete(bucket, _s3_keys(bucket, prefix + "/"))
    else:
        shutil.rmtree(where, ignore_errors=True)


def origins(root: str) -> list[str]:
    """The committed partitions' origins (YYYY-MM-DD), oldest first."""
    if is_s3(root):
        bucket, prefix = _split(root)
        found = {
            k[len(prefix) :].lstrip("/").split("/")[0]
            for k in _s3_keys(bucket, prefix.rstrip("/") + "/")
            if k.endswith("/" + MANIFEST)
        }
    else:
        base = Path(root)
        found = {p.name for p in base.glob("origin=*") if (p / MANIFEST).is_file()} if base.is_dir() else set()
    return sorted(n.removeprefix("origin=") for n in found if n.startswith("origin="))


def manifest(root: str, origin: str | date) -> dict | None:
    text = _read_text(join(root, f"origin={origin}", MANIFEST))
    return json.loads(text) if text else None


def read_forecasts(root: str, origin: str | date | None = None) -> pd.DataFrame:
    """Every committed partition (or one origin), read through its manifest; ``origin`` as a date column."""
    frames = []
    for o in [str(origin)] if origin is not None else origins(root):
        m = manifest(root, o)
        if m is None:
            continue
        for name in m["files"]:
            frames.append(read_parquet(join(root, f"origin={o}", name)).assign(origin=date.fromisoformat(o)))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
