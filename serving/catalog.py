"""Which model answers for each domain: resolve ``forecaster-<domain>@<alias>`` (of any family) in MLflow,
load it off the request path, share backbones between domains, swap in atomically.

A request takes one ``ServedModel`` from ``Catalog.get`` and keeps it to the end, so a
reload never changes the model under a request in flight. The mapping is replaced as a
whole (copy on write); reading it needs no lock.
"""

from __future__ import annotations

import importlib
import json
import logging
import re
import shutil
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import mlflow
import yaml
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from infra.files import file_digest
from models.backbone.io import WEIGHTS_FILE
from models.backbone.network import PatchBackbone
from models.forecasting.kinds import KINDS, SERVING_FILE, forecaster_module, load_forecaster

log = logging.getLogger("tsfm.serving")
PREFIX = "forecaster-"  # each domain's one served model; its versions may be of any family


@dataclass(frozen=True)
class ServedModel:
    domain: str
    name: str  # registered model, forecaster-<domain>
    version: str
    alias: str
    backbone_key: str | None  # what backbones are shared by (None: a statistical model has none)
    backbone_version: str | None
    forecaster: object  # a models.forecasting forecaster of any family
    meta: dict = field(default_factory=dict)  # serving.json: kind, family, freq, default/max horizon
    loaded_at: float = field(default_factory=time.time)

    @property
    def family(self) -> str:
        return str(self.meta.get("family") or self.meta.get("kind") or "fused")

    @property
    def season(self) -> int:
        """The domain's season length where it has one (per-series seasons: 1, no seasonal feature)."""
        found = re.match(r"\s*(\d+)", str(self.meta.get("season") or ""))  # "12 (from the frequency MS)"
        return int(found.group(1)) if found else 1

    @property
    def label(self) -> str:
        """The ``X-Tsfm-Model`` header: name, version and family that answered."""
        return f"{self.name}/{self.version} ({self.family})"

    @property
    def max_horizon(self) -> int | None:
        """None: any horizon (a statistical model, the backbone alone up to its context)."""
        limits = [int(h) for h in (self.meta.get("max_horizon"), getattr(self.forecaster, "horizon", None)) if h]
        return min(limits) if limits else None

    @property
    def default_horizon(self) -> int:
        default = int(self.meta.get("default_horizon") or self.max_horizon or 1)
        return min(default, self.max_horizon) if self.max_horizon else default

    def describe(self) -> dict:
        return {
            "model": self.name,
            "version": self.version,
            "family": self.family,
            "alias": self.alias,
            "backbone_version": self.backbone_version,
            "backbone_key": self.backbone_key,
            "max_horizon": self.max_horizon,
            "freq": self.meta.get("freq"),
            "season": self.meta.get("season"),
            "loaded_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.loaded_at)),
        }


class Catalog:
    """The served models of one process. ``refresh()`` is the only writer (serialised by a lock)."""

    def __init__(
        self, tracking_uri: str, alias: str = "champion", domains: list[str] | None = None, device: str = "cpu"
    ):
        self.tracking_uri, self.alias, self.device = tracking_uri, alias, device
        self.fixed_domains = list(domains or [])  # [] = every forecaster-* model that has the alias
        self.client = MlflowClient(tracking_uri, tracking_uri)
        self._models: dict[str, ServedModel] = {}
        self._backbones: dict[str, PatchBackbone] = {}  # key -> the one loaded copy
        self._refresh_lock = threading.Lock()
        self.errors: dict[str, str] = {}  # domain -> last load/resolve problem
        self.last_refresh: float | None = None
        self.on_change = None  # callback(changes: list[dict]) after a swap (metrics)
        # domain -> what the registry says about it beyond the alias: the monitor's verdict (``monitor.*``
        # tags of forecaster-<domain>) and when its champion was last validated (``validated_at``)
        self.domain_tags: dict[str, dict[str, str]] = {}
        self._tags_seen: dict[str, dict[str, str]] = {}  # what the last ``targets`` read, before loading
        self.on_tags = None  # callback(domain_tags) after every successful refresh (metrics)

    # -------------------------------------------------------------------- reading
    def get(self, domain: str) -> ServedModel | None:
        return self._models.get(domain)

    def domains(self) -> list[str]:
        return sorted(self._models)

    def snapshot(self) -> dict[str, ServedModel]:
        return self._models

    def backbone_count(self) -> int:
        """Distinct backbone objects held by the served models."""
        return len({id(b) for m in self._models.values() if (b := getattr(m.forecaster, "backbone", None)) is not None})

    # -------------------------------------------------------------------- refresh
    def targets(self) -> dict[str, str | None]:
        """domain -> version the alias names now (None: no such alias / model). Keeps each domain's
        registered-model ``monitor.*`` tags in ``self._tags_seen`` on the way."""
        self._tags_seen = {}
        if self.fixed_domains:
            return {d: self._alias_version(f"{PREFIX}{d}", d) for d in self.fixed_domains}
        found: dict[str, str | None] = {}
        token = None
        while True:
            page = self.client.search_registered_models(
                filter_string=f"name LIKE '{PREFIX}%'", max_results=200, page_token=token
            )
            for rm in page:
                if rm.name.startswith(PREFIX) and self.alias in (rm.aliases or {}):
                    found[rm.name[len(PREFIX) :]] = str(rm.aliases[self.alias])
                    self._tags_seen[rm.name[len(PREFIX) :]] = _monitor_tags(rm.tags)
            token = page.token
            if not token:
                break
        return found

    def _alias_version(self, name: str, domain: str | None = None) -> str | None:
        try:
            version = str(self.client.get_model_version_by_alias(name, self.alias).version)
            if domain is not None:
                self._tags_seen[domain] = _monitor_tags(self.client.get_registered_model(name).tags)
            return version
        except MlflowException:
            return None

    def _read_domain_tags(self, served: dict[str, "ServedModel"]) -> None:
        """The served champions' ``validated_at`` (a version tag set by the gate; else the version's
        creation time) beside the ``monitor.*`` tags ``targets`` saw."""
        out = {}
        for domain, m in served.items():
            tags = dict(self._tags_seen.get(domain, {}))
            try:
                mv = self.client.get_model_version(m.name, m.version)
                tags["validated_at"] = mv.tags.get("validated_at") or str(mv.creation_timestamp / 1000.0)
            except MlflowException as e:
                log.warning("cannot read %s v%s: %s", m.name, m.version, e)
            out[domain] = tags
        self.domain_tags = out

    def refresh(self) -> list[dict]:
        """Bring the served set in line with the registry; returns what changed.

        New versions load completely before the swap; a version that fails to load is
        reported in ``errors`` and the previous one keeps serving. A domain whose alias
        is gone stops being served (the registry is the source of truth)."""
        with self._refresh_lock:
            try:
                targets = self.targets()
            except Exception as e:  # registry unreachable: keep serving what is loaded
                log.warning("cannot read the registry: %s", e)
                self.errors["*"] = f"registry: {e}"
                return []
            self.errors.pop("*", None)
            current = self._models
            new = dict(current)
            changes = []
            for domain, version in sorted(targets.items()):
                old = current.get(domain)
                if version is None:
                    self.errors[domain] = f"{PREFIX}{domain}@{self.alias} does not exist"
                    if old is not None:
                        del new[domain]
                        changes.append({"domain": domain, "from": old.version, "to": None})
                    continue
                if old is not None and old.version == version:
                    continue
                try:
                    new[domain] = self._load(domain, version, new)
                except Exception as e:
                    log.exception(
                        "loading %s%s/%s failed; keeping %s", PREFIX, domain, version, old.label if old else "nothing"
                    )
                    self.errors[domain] = f"loading version {version} failed: {e}"
                    changes.append({"domain": domain, "from": old and old.version, "to": version, "error": str(e)})
                    continue
                self.errors.pop(domain, None)
                changes.append({"domain": domain, "from": old and old.version, "to": version})
            for domain in set(current) - set(targets):  # alias removed (all-domains mode)
                del new[domain]
                changes.append({"domain": domain, "from": current[domain].version, "to": None})
            self._models = new  # the atomic swap: requests already running keep their object
            self._read_domain_tags(new)
            # forget backbones nobody serves any more (requests in flight still hold theirs)
            used = {m.backbone_key for m in new.values()}
            self._backbones = {k: b for k, b in self._backbones.items() if k in used}
            self.last_refresh = time.time()
        for c in changes:
            log.info(
                "serving %s%s: %s -> %s%s",
                PREFIX,
                c["domain"],
                c["from"],
                c["to"],
                f" (failed: {c['error']})" if "error" in c else "",
            )
        if changes and self.on_change is not None:
            self.on_change(changes)
        if self.on_tags is not None:
            self.on_tags(self.domain_tags)
        return changes

    # -------------------------------------------------------------------- loading
    def _load(self, domain: str, version: str, serving: dict[str, ServedModel]) -> ServedModel:
        name = f"{PREFIX}{domain}"
        mv = self.client.get_model_version(name, version)
        backbone_version = mv.tags.get("backbone_version")
        # the version's own artifact location (file://, s3://...): no registry lookups per file
        base = self.client.get_model_version_download_uri(name, version).rstrip("/")
        tmp = Path(tempfile.mkdtemp(prefix=f"tsfm-serve-{domain}-"))
        try:
            mlmodel = yaml.safe_load(Path(self._download(f"{base}/MLmodel", tmp)).read_text())
            folder = mlmodel["flavors"]["python_function"]["artifacts"]["model_dir"]["path"]  # e.g. artifacts/fused
            local = tmp / "model"
            local.mkdir()
            self._download(f"{base}/{folder}/{SERVING_FILE}", local)
            meta = json.loads((local / SERVING_FILE).read_text())
            kind = meta.get("kind", "fused")
            module = importlib.import_module(forecaster_module(kind))
            # no backbone to share (a statistical model, an ensemble of them): the whole folder
            if not hasattr(module, "PARTS_WITHOUT_BACKBONE") or meta.get("backbone") is False:
                self._download(f"{base}/{folder}", tmp)
                forecaster = load_forecaster(kind, tmp / Path(folder).name, self.device)
                return ServedModel(domain, name, str(version), self.alias, None, backbone_version, forecaster, meta)
            for part in module.PARTS_WITHOUT_BACKBONE:
                self._download(f"{base}/{folder}/{part}", local)
            key = f"backbone/{backbone_version}" if backbone_version else None
            backbone = self._backbones.get(key) if key else None
            if backbone is None:
                # the registered backbone version is the sharing key; without the tag, the weights' hash
                self._download(f"{base}/{folder}/{module.BACKBONE_DIR}", local)
                if key is None:
                    key = f"sha256/{file_digest(local / module.BACKBONE_DIR / WEIGHTS_FILE, 'sha256')}"
                backbone = self._backbones.get(key)  # None: loaded from the folder just downloaded
            forecaster = getattr(module, KINDS[kind][1]).load(local, device=self.device, backbone=backbone)
            self._backbones[key] = forecaster.backbone
            return ServedModel(domain, name, str(version), self.alias, key, backbone_version, forecaster, meta)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    def _download(self, uri: str, dst: Path) -> str:
        return mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=str(dst))


def _monitor_tags(tags: dict | None) -> dict[str, str]:
    return {k: v for k, v in (tags or {}).items() if k.startswith("monitor.")}


class Poller:
    """Background thread calling ``catalog.refresh()`` every ``interval_s`` seconds (0: never)."""

    def __init__(self, catalog: Catalog, interval_s: float):
        self.catalog, self.interval_s = catalog, interval_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="tsfm-reload", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        if self.interval_s <= 0:
            return
        while not self._stop.wait(self.interval_s):
            try:
                self.catalog.refresh()
            except Exception:  # never let the poller die
                log.exception("refresh failed")

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None and self._thread.is_alive():
            self._thread.join(timeout=30)  # a load in progress finishes first


def check_served(tracking_uri: str, domains: list[str], alias: str = "champion") -> dict[str, str]:
    """The version each of ``domains`` would serve now; a ``NotFoundError`` listing the domains that
    do have ``alias`` when one has none (a typo must fail at start-up, not serve 503 forever).
    With no domains: every domain that has the alias (empty is allowed: one may be promoted later)."""
    from infra.errors import NotFoundError

    available = Catalog(tracking_uri, alias).targets()
    missing = [d for d in domains if d not in available]
    if missing:
        raise NotFoundError(
            f"no {PREFIX}<domain>@{alias} for {', '.join(missing)}; domains with one: "
            f"{', '.join(sorted(available)) or 'none (onboard a domain first: tsfm onboard --domain NAME --source PATH)'}"
        )
    return {d: available[d] for d in domains} if domains else available


def check_device(device: str) -> str:
    """The torch device the served models load on, checked at start-up: a name torch does not know, or
    a GPU this machine does not have, fails now (not as a load error per domain and 503 forever)."""
    import torch

    from infra.errors import InputError

    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    mps = bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available())
    valid = ["cpu"] + (["cuda"] + [f"cuda:{i}" for i in range(count)] if count else []) + (["mps"] if mps else [])
    choose = f"valid devices on this machine: {', '.join(valid)} (--device, the settings' serve.device)"
    try:
        parsed = torch.device(device)
    except (RuntimeError, ValueError, TypeError):
        raise InputError(f"device {device!r} is not a torch device; {choose}") from None
    if parsed.type == "cuda" and not count:
        raise InputError(f"device {device!r} requested but CUDA is not available here; {choose}")
    if parsed.type == "cuda" and parsed.index is not None and parsed.index >= count:
        raise InputError(f"device {device!r} requested but this machine has {count} CUDA device(s); {choose}")
    if parsed.type == "mps" and not mps:
        raise InputError(f"device {device!r} requested but MPS is not available here; {choose}")
    if parsed.type not in ("cpu", "cuda", "mps"):
        raise InputError(f"device {device!r} cannot serve models; {choose}")
    return device
