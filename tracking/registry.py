"""MLflow plumbing shared by every stage: where runs go, how models are named, registered,
found again and aliased (the registry contract of docs/architecture.md, in one module)."""

from __future__ import annotations

import contextlib
import io
import logging
import subprocess
from functools import lru_cache
from pathlib import Path
from typing import Callable

import mlflow
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from infra.errors import NotFoundError
from infra.settings import Settings

log = logging.getLogger(__name__)

EXPERIMENTS = {
    "ingest": "tsfm-ingest",
    "pretrain": "tsfm-pretrain",
    "onboard": "tsfm-onboard",
    "promote": "tsfm-promote",
    "evaluate": "tsfm-evaluate",
    "forecast": "tsfm-forecast",
    "monitor": "tsfm-monitor",
    "compare": "tsfm-compare",  # cross-domain onboarding comparison (benchmarks/onboard_domains.py)
}
NOTE = "mlflow.note.content"  # what the MLflow UI shows as an experiment's, a run's description
EXPERIMENT_NOTES = {
    "ingest": "One run per ingested source: rows in, kept and quarantined, the store as a dataset input "
    "(digest = DVC's md5), the quarantine file.",
    "pretrain": "One run per backbone pre-training: the recipe, the corpus, loss curves; the weights are "
    "registered as `backbone`.",
    "onboard": "One run per domain onboarding: the validation and test tables of every candidate family "
    "(headline first in each run's description), plots, the store as a dataset input.",
    "promote": "One run per gate decision on forecaster-<domain>: promoted or refused, and why.",
    "evaluate": "Zero-shot evaluation of a backbone on packaged real data against statistical baselines.",
    "forecast": "One run per batch forecast of a domain: the champion that made it, series and rows written, "
    "timings, and the partition's URI (tag output_uri).",
    "compare": "Cross-domain comparison of onboardings (benchmarks).",
    "monitor": "One run per domain and check: the stored batch forecasts that actuals now cover, scored against "
    "each model's validation figures (MASE, sCRPS, sMAPE, 10-90% coverage, per step), the drift of the "
    "domain's data and served contexts from the champion's training data (PSI per feature), and the "
    "verdict (tag degraded, reason).",
}
MODEL_NOTES = {  # registered model name prefix -> its description
    "forecaster-": "The served forecaster of one domain: every version is a candidate of one family (tag `family`: "
    "fused, backbone, teacher, seasonal_naive, auto_ets, theta, mstl, ensemble); `champion` is what `tsfm serve` answers "
    "with, `challenger` the best validated candidate of the latest onboarding.",
    "fused-": "Component: the frozen backbone fused with the domain's memory adapter (weight `alpha`). "
    "Served only through a `forecaster-<domain>` version of family fused.",
    "adapter-": "Component, for comparison: the memory adapter's forecast alone (alpha 1).",
    "teacher-": "Component, for comparison: the kNN teacher (retrieval over the domain's train windows).",
    "backbone": "Pre-trained backbones; `champion` is the one new onboardings adapt.",
}


def use_tracking_uri(uri: str) -> None:
    """The one place MLflow's process-wide tracking and registry URIs are set (``configure``, and a
    batch worker that has the URI but not the settings)."""
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)


def configure(settings: Settings) -> MlflowClient:
    """Point this process at the configured tracking + registry store."""
    settings.paths.state_dir.mkdir(parents=True, exist_ok=True)
    use_tracking_uri(settings.tracking_uri)
    return MlflowClient(tracking_uri=settings.tracking_uri, registry_uri=settings.tracking_uri)


# MLflow 3's UI opens an experiment of this kind on its runs, not on an empty GenAI "Traces" view
EXPERIMENT_KIND = "mlflow.experimentKind"
MODEL_TRAINING = {EXPERIMENT_KIND: "custom_model_development"}


def use_experiment(stage: str, settings: Settings) -> str:
    """Create (once) and select the stage's experiment with an explicit artifact location.

    Without one, a sqlite store puts artifacts in ./mlruns of whatever directory
    the process happens to run in.
    """
    configure(settings)
    name = EXPERIMENTS[stage]
    exp = mlflow.get_experiment_by_name(name)
    if exp is None:
        location = f"{settings.artifact_root.rstrip('/')}/{name}"
        try:
            exp_id = mlflow.create_experiment(
                name, artifact_location=location, tags={NOTE: EXPERIMENT_NOTES.get(stage, ""), **MODEL_TRAINING}
            )
        except MlflowException:  # created concurrently by another process
            exp_id = mlflow.get_experiment_by_name(name).experiment_id
    else:
        exp_id = exp.experiment_id
        if exp.tags.get(EXPERIMENT_KIND) != MODEL_TRAINING[EXPERIMENT_KIND]:  # created before tsfm set it
            mlflow.MlflowClient().set_experiment_tag(exp_id, EXPERIMENT_KIND, MODEL_TRAINING[EXPERIMENT_KIND])
    mlflow.set_experiment(experiment_id=exp_id)
    return exp_id


@lru_cache(maxsize=1)
def git_commit() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
            cwd=Path(__file__).resolve().parent.parent,
        )
        return out.stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


RESULT_ID_TAG = "tsfm_result_id"  # stable id of the result a run / model version was made from
FORECASTER_PREFIX = "forecaster-"  # forecaster-<domain>: the one model per domain that holds the aliases
# what a domain is remembered by (columns as JSON)
DOMAIN_TAGS = ("source", "columns", "date_format", "horizon", "freq", "season_length", "season")


def forecaster_name(domain: str) -> str:
    return f"{FORECASTER_PREFIX}{domain}"


def remember_domain(domain: str, facts: dict, description: str = "") -> None:
    """Keep a domain's source, horizon, frequency and season on its registered model, so every
    process sharing the tracking server knows it, wherever it was onboarded from."""
    client = MlflowClient()
    name = forecaster_name(domain)
    for key in DOMAIN_TAGS:
        if facts.get(key) is not None:
            client.set_registered_model_tag(name, f"tsfm.{key}", str(facts[key]))
    if description:
        client.update_registered_model(name, description=description)


def version_families(name: str) -> dict[str, str]:
    """version -> family of every version of ``name`` ({} when there is no such model), oldest first."""
    found = MlflowClient().search_model_versions(f"name = '{name}'")
    return {str(mv.version): mv.tags.get("family", "?") for mv in sorted(found, key=lambda mv: int(mv.version))}


def _facts(tags: dict | None) -> dict[str, str]:
    return {k.removeprefix("tsfm."): v for k, v in (tags or {}).items() if k.startswith("tsfm.")}


def domain_facts(domain: str) -> dict[str, str]:
    """The facts ``remember_domain`` kept for one domain ({} when it has none): one registry read."""
    try:
        return _facts(MlflowClient().get_registered_model(forecaster_name(domain)).tags)
    except MlflowException:
        return {}


def remembered_domains() -> dict[str, dict[str, str]]:
    """domain -> the facts ``remember_domain`` kept, for every onboarded domain in the registry."""
    out, token = {}, None
    client = MlflowClient()
    while True:
        page = client.search_registered_models(
            filter_string=f"name LIKE '{FORECASTER_PREFIX}%'", max_results=200, page_token=token
        )
        for rm in page:
            facts = _facts(rm.tags)
            if facts.get("source"):
                out[rm.name.removeprefix(FORECASTER_PREFIX)] = facts
        token = page.token
        if not token:
            return out


def download_forecaster(name: str, version: str, dst: str | Path) -> tuple[str, Path, dict]:
    """A registered forecaster's own folder, downloaded: (kind, folder, serving meta)."""
    import json

    import yaml

    from models.forecasting.kinds import SERVING_FILE

    base = MlflowClient().get_model_version_download_uri(name, version).rstrip("/")
    mlmodel = yaml.safe_load(
        Path(mlflow.artifacts.download_artifacts(f"{base}/MLmodel", dst_path=str(dst))).read_text()
    )
    folder = mlmodel["flavors"]["python_function"]["artifacts"]["model_dir"]["path"]
    local = Path(mlflow.artifacts.download_artifacts(f"{base}/{folder}", dst_path=str(dst)))
    meta = json.loads((local / SERVING_FILE).read_text()) if (local / SERVING_FILE).is_file() else {}
    return meta.get("kind", "fused"), local, meta


def flat_params(values: dict, prefix: str = "") -> dict[str, str]:
    """Nested settings -> MLflow params with dotted keys (``teacher.k``); lists as text."""
    out: dict[str, str] = {}
    for key, value in values.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flat_params(value, f"{name}."))
        else:
            out[name] = str(value) if isinstance(value, (list, tuple)) else value
    return out


# Model references -------------------------------------------------------------------------
def versioned_uri(name: str, version: str | int) -> str:
    return f"models:/{name}/{version}"


def parse_model_uri(uri: str, default_name: str = "backbone") -> tuple[str, str | None, str | None]:
    """(name, version, alias) of ``models:/<name>@<alias>``, ``models:/<name>/<version>``, a bare
    version number (of ``default_name``) or a bare name (version and alias None: its latest)."""
    ref = uri.strip().removeprefix("models:/").strip("/")
    if "@" in ref:
        name, alias = ref.split("@", 1)
        return name, None, alias
    if "/" in ref:
        name, version = ref.rsplit("/", 1)
        return name, version, None
    if ref.isdigit():
        return default_name, ref, None
    return ref, None, None


def resolve(uri: str, default_name: str = "backbone") -> tuple[str, str]:
    """(name, version) a model reference points at now (an alias is followed); LookupError when
    there is no such registered model or version."""
    name, version, alias = parse_model_uri(uri, default_name)
    client = MlflowClient()
    try:
        if alias is not None:
            return name, str(client.get_model_version_by_alias(name, alias).version)
        if version is None:
            version = latest_version(name)
            if version is None:
                raise NotFoundError(f"{uri}: registered model {name!r} has no versions")
        return name, str(client.get_model_version(name, version).version)
    except MlflowException as exc:
        hint = "; pre-train one first: tsfm pretrain (or tsfm demo)" if name == "backbone" else ""
        raise NotFoundError(f"{uri}: no such registered model version ({exc.message.splitlines()[0]}){hint}") from None


def find_version(name: str, result_id: str) -> str | None:
    """The version of ``name`` registered from result ``result_id`` (tag filter), if any."""
    try:
        found = MlflowClient().search_model_versions(f"name='{name}' and tags.{RESULT_ID_TAG}='{result_id}'")
    except MlflowException as e:
        if getattr(e, "error_code", "") == "RESOURCE_DOES_NOT_EXIST":
            return None
        raise
    return min((str(v.version) for v in found), key=int, default=None)


def find_run(experiment_id: str, result_id: str) -> str | None:
    """The run logged for result ``result_id`` in the experiment (the oldest one), if any."""
    runs = MlflowClient().search_runs(
        [experiment_id], f"tags.{RESULT_ID_TAG} = '{result_id}'", order_by=["attributes.start_time ASC"], max_results=1
    )
    return runs[0].info.run_id if runs else None


def register(
    model_uri: str | Callable[[], str],
    name: str,
    tags: dict[str, str],
    description: str = "",
    result_id: str | None = None,
) -> str:
    """Register ``model_uri`` as a new version of ``name``; returns the version number.

    With ``result_id`` it is idempotent: a version already tagged with that id is returned instead
    of a new one (a retried or resumed registration creates no duplicates). ``model_uri`` may be a
    function that logs the model, so nothing is logged when the version already exists."""
    client = MlflowClient()
    try:
        client.get_registered_model(name)
    except MlflowException:
        note = next((text for prefix, text in MODEL_NOTES.items() if name.startswith(prefix)), "")
        try:
            client.create_registered_model(name, description=note or None)
        except MlflowException:  # created concurrently
            client.get_registered_model(name)
    if result_id:
        existing = find_version(name, result_id)
        if existing:
            log.info("%s version %s already registered from result %s", name, existing, result_id)
            return existing
        tags = {**tags, RESULT_ID_TAG: result_id}
    if callable(model_uri):
        model_uri = model_uri()
    with contextlib.redirect_stderr(io.StringIO()):  # MLflow prints "already exists" for a model it just made
        mv = mlflow.register_model(model_uri, name, tags={k: str(v) for k, v in tags.items()})
    if result_id:
        # a process registering the same result at the same moment made a version too: the lowest
        # one wins in both processes and the other is deleted (works on any tracking backend)
        winner = find_version(name, result_id)
        if winner is not None and winner != str(mv.version):
            client.delete_model_version(name, mv.version)
            log.info("%s version %s already registered from result %s concurrently", name, winner, result_id)
            return winner
    if description:
        client.update_model_version(name, mv.version, description=description)
    log.info("registered %s version %s", name, mv.version)
    return str(mv.version)


def set_alias(name: str, alias: str, version: str) -> None:
    MlflowClient().set_registered_model_alias(name, alias, version)


def alias_version(name: str, alias: str) -> str | None:
    try:
        return str(MlflowClient().get_model_version_by_alias(name, alias).version)
    except MlflowException:
        return None


def version_tags(name: str, version: str) -> dict[str, str]:
    return dict(MlflowClient().get_model_version(name, version).tags)


def latest_version(name: str) -> str | None:
    versions = MlflowClient().search_model_versions(f"name='{name}'")
    return max((str(v.version) for v in versions), key=int, default=None)


def resolve_backbone(backbone_uri: str) -> tuple[str, Path]:
    """Registered backbone URI -> (version, local folder holding backbone/config.json)."""
    _, version = resolve(backbone_uri)
    local = Path(mlflow.artifacts.download_artifacts(versioned_uri("backbone", version)))
    configs = sorted(local.rglob("backbone/config.json"))
    if not configs:
        raise FileNotFoundError(f"no backbone weights inside {backbone_uri}")
    return version, configs[0].parent


def rollback_domain(domain: str, version: str, settings: Settings) -> dict:
    """Point ``forecaster-<domain>@champion`` back at ``version``."""
    configure(settings)
    name = forecaster_name(domain)
    families = version_families(name)
    if str(version) not in families:
        known = ", ".join(f"v{v} ({f})" for v, f in families.items())
        raise NotFoundError(
            f"{name} has no version {version}; "
            + (
                f"its versions: {known}"
                if known
                else f"the domain was never onboarded (onboarded: {', '.join(sorted(remembered_domains())) or 'none'})"
            )
        )
    previous = alias_version(name, "champion")
    set_alias(name, "champion", version)
    return {
        "model": name,
        "champion": version,
        "family": version_tags(name, version).get("family"),
        "previous_champion": previous,
    }


def monitored_domains(domain: str | None, settings: Settings) -> list[str]:
    """``domain``, else every domain with a champion (onboarded), sorted."""
    configure(settings)
    known = sorted(remembered_domains())
    if domain:
        if alias_version(forecaster_name(domain), "champion") is None:
            raise NotFoundError(
                f"{forecaster_name(domain)} has no champion: onboard "
                f"{domain} first (tsfm onboard --domain {domain}); onboarded "
                f"domains: {', '.join(known) or 'none'}"
            )
        return [domain]
    return [d for d in known if alias_version(forecaster_name(d), "champion")]
