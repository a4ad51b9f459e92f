"""Watch the domains' sources for new data and say so with a Prefect event.

A source's fingerprint is cheap to take and changes when its data does:
- a local file or folder: relative names, sizes and mtimes of its CSV/Parquet files;
- ``s3://bucket/key``: the object's ETag and LastModified (``head_object``);
- ``s3://bucket/prefix/``: keys and ETags of the objects under it (``list_objects_v2``);
- ``builtin:`` and ``synthetic:`` sources never change and are not watched.
The last fingerprint seen per domain is kept in ``<state_dir>/source_watch.json``. For each domain
whose fingerprint changed, ``tsfm.source.updated`` is emitted with resource ``tsfm.source.<domain>``;
the ``onboard-<domain>`` deployment's trigger expects it and re-onboards (re-ingesting first).
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from urllib.parse import unquote, urlsplit

from infra.events import SOURCE_UPDATED, emit, source_resource
from infra.logs import run_logger
from infra.settings import Settings, SourceSpec
from store.sources import folder_files, is_data_file, s3_access, s3_client, s3_listing

STATE_FILE = "source_watch.json"
UNWATCHED = ("builtin:", "synthetic:")


def _local_path(uri: str) -> Path:
    return Path(unquote(urlsplit(uri).path)) if uri.startswith("file://") else Path(uri)


def fingerprint(uri: str) -> str | None:
    """Fingerprint of a source's current data; None for sources that are not watched.
    A missing local path or S3 object fingerprints as "missing" (its arrival is a change)."""
    uri = uri.strip()
    if uri.startswith(UNWATCHED):
        return None
    if uri.startswith("s3://"):
        listing = _s3_state(uri)
    else:
        path = _local_path(uri)
        if path.is_dir():
            listing = [
                (p.relative_to(path).as_posix(), p.stat().st_size, p.stat().st_mtime_ns) for p in folder_files(path)
            ]
        elif path.is_file():
            listing = [(path.name, path.stat().st_size, path.stat().st_mtime_ns)]
        else:
            listing = "missing"
    return hashlib.sha256(json.dumps(listing, default=str).encode()).hexdigest()


def _s3_state(uri: str):
    """boto3 reads AWS_* credentials and AWS_ENDPOINT_URL_S3 / AWS_ENDPOINT_URL itself."""
    from botocore.exceptions import ClientError

    parts = urlsplit(uri)
    bucket, key = parts.netloc, parts.path.lstrip("/")
    client = s3_client(uri)
    with s3_access(uri, client):
        if key and not key.endswith("/"):
            try:
                head = client.head_object(Bucket=bucket, Key=key)
            except ClientError as e:
                if e.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                    return "missing"
                raise
            return [key, head.get("ETag"), str(head.get("LastModified"))]
        return [(k, etag) for k, etag in s3_listing(client, bucket, key) if is_data_file(k.removeprefix(key))]


def load_state(state_dir: Path) -> dict[str, dict]:
    path = Path(state_dir) / STATE_FILE
    return json.loads(path.read_text()) if path.is_file() else {}


def save_state(state_dir: Path, state: dict[str, dict]) -> None:
    """Written to a temp file and renamed: a crash never leaves half a state file."""
    state_dir = Path(state_dir)
    state_dir.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=state_dir, prefix=f".{STATE_FILE}.")
    with os.fdopen(fd, "w") as fh:
        json.dump(state, fh, indent=2, sort_keys=True)
    os.replace(tmp, state_dir / STATE_FILE)


def changed_sources(sources: dict[str, SourceSpec], state: dict[str, dict]) -> dict[str, dict]:
    """domain -> {source, fingerprint, previous} for each watched source whose data changed.
    A source seen for the first time (or whose URI changed) only records its fingerprint: the
    watcher reports new data, not the data that was there before it started watching."""
    changed = {}
    for domain, spec in sources.items():
        fp = fingerprint(spec.source)
        if fp is None:
            continue
        seen = state.get(domain)
        if seen and seen.get("source") == spec.source and seen.get("fingerprint") != fp:
            changed[domain] = {"source": spec.source, "fingerprint": fp, "previous": seen.get("fingerprint")}
        state[domain] = {"source": spec.source, "fingerprint": fp}
    return changed


def emit_updates(changed: dict[str, dict]) -> list[str]:
    """One ``tsfm.source.updated`` event per changed domain; returns the event ids."""
    ids = []
    for domain, info in sorted(changed.items()):
        sent = emit(
            SOURCE_UPDATED,
            source_resource(domain),
            domain,
            {
                "domain": domain,
                "source": info["source"],
                "fingerprint": info["fingerprint"],
                "previous": info["previous"],
            },
        )
        if sent is not None:
            ids.append(sent)
    return ids


def watch_sources(settings: Settings, sources: dict[str, SourceSpec] | None = None) -> list[str]:
    """Check every source once (``sources``, default the settings'); emit an event per changed one;
    returns the changed domains. The state is saved after the events, so a crash in between
    re-announces rather than misses."""
    state = load_state(settings.paths.state_dir)
    changed = changed_sources(settings.sources if sources is None else sources, state)
    emit_updates(changed)
    save_state(settings.paths.state_dir, state)
    if changed:
        run_logger().info("new data at the sources of %s", ", ".join(sorted(changed)))
    return sorted(changed)
