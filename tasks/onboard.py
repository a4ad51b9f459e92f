"""Onboarding a domain as units of work that hand over a result folder
(``models.memory.result.OnboardingResult``):

choose the backbone (the default, or for daily and finer data the shipped long-context one where it
validates better) -> adapt (teacher + adapter + fusion weight, backbone frozen) -> evaluate (validation and
test tables against the baselines) -> register (MLflow run + teacher/adapter/fused models)
-> publish (Prefect artifacts: report, test table, fan chart, MLflow links).

adapt and evaluate are cached across runs: a result folder is a function of its cache key
(params, data md5, resolved backbone version, tracking URI, the code that makes the result,
state dir), so a re-run after a crash resumes after the last finished stage. Each key hashes
only the code that changes its result (``infra.code_version``): editing the server, the CLI
or the evaluation never re-adapts. Cache records: <state_dir>/prefect-results.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import os
import shutil
import time
from collections import Counter
from pathlib import Path

import pandas as pd
from prefect import task
from prefect.artifacts import (
    create_image_artifact,
    create_link_artifact,
    create_markdown_artifact,
    create_table_artifact,
)

from evaluation.backbone_gate import choose_domain_backbone
from evaluation.gate import choose_candidate
from evaluation.scores import teacher_gain_kept
from infra.code_version import cached_digest
from infra.errors import InputError
from infra.files import exclusive
from infra.logs import run_logger
from infra.settings import OnboardParams, Settings
from models.forecasting.kinds import FAMILIES
from models.memory.result import OnboardingResult
from reports.onboarding import (
    artifact_key,
    fan_chart_url,
    headline,
    mlflow_links,
    onboarding_report,
    tables_description,
)
from store.canonical import describe_seasons, read_meta, read_series_meta, read_split
from tracking import registry
from tracking.onboarding_runs import register_onboarding
from tracking.retries import remote_retries

BASELINE_JOBS = max(1, min(4, os.cpu_count() or 1))
# the code each cached result comes from (their import closures are hashed into the keys)
ADAPT_CODE = ("models.memory.onboarding", "store.canonical")
EVALUATE_CODE = ("evaluation.domain",)


# -------------------------------------------------------------------------- caching
def results_storage(settings: Settings) -> Path:
    """Where the onboarding tasks persist their results (Prefect cache records)."""
    return (settings.paths.state_dir / "prefect-results").resolve()


def _digest(*parts) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def code_version(stage: str) -> str:
    """The digest of the code that makes ``stage``'s result: the task function and the import
    closure of what it runs."""
    modules, fn = {"adapt": (ADAPT_CODE, adapt_domain), "evaluate": (EVALUATE_CODE, evaluate_domain)}[stage]
    return cached_digest(modules, inspect.getsource(fn))


def _params_key(params: OnboardParams) -> dict:
    # the data md5 stands for the source and how it was read
    return params.model_dump(mode="json", exclude={"source", "columns", "date_format"})


def adapt_dir(params: OnboardParams, store_dir: str | Path, backbone_uri: str, settings: Settings) -> Path:
    """The result folder of adapting ``params`` on this store's data with the backbone version
    ``backbone_uri`` resolves to now (an alias that moved means a new folder)."""
    registry.configure(settings)
    key = _digest(
        _params_key(params),
        read_meta(store_dir)["md5"],
        registry.resolve(backbone_uri)[1],
        settings.tracking_uri,
        code_version("adapt"),
        str(settings.paths.state_dir.resolve()),
    )
    return settings.run_dir("onboard", params.domain, key)


def result_id(result_dir: str | Path) -> str:
    """Stable id of a finished result folder: its name (the adapt key) and its summary."""
    result = OnboardingResult.load(result_dir)
    return _digest(result.folder.name, hashlib.md5(result.summary_file().read_bytes()).hexdigest())


def _guarded_key(key: str, complete: bool, settings: Settings) -> str:
    """A cache record whose result folder is gone or incomplete (a wiped state dir, another
    session) is dropped, so the task recomputes instead of returning a dangling path."""
    if not complete:
        (results_storage(settings) / key).unlink(missing_ok=True)
    return key


def _adapt_cache_key(_ctx, inputs: dict) -> str:
    folder = adapt_dir(inputs["params"], inputs["store_dir"], inputs["backbone_uri"], inputs["settings"])
    return _guarded_key(f"onboard-adapt-{folder.name}", OnboardingResult.is_complete(folder), inputs["settings"])


def _evaluate_cache_key(_ctx, inputs: dict) -> str:
    from infra.settings import load_settings

    folder = Path(inputs["result_dir"])
    complete = OnboardingResult.is_complete(folder) and OnboardingResult.load(folder).is_evaluated()
    key = _digest(
        str(folder.resolve()),
        result_id(folder) if OnboardingResult.is_complete(folder) else None,
        code_version("evaluate"),
    )
    return _guarded_key(f"onboard-evaluate-{key}", complete, inputs.get("settings") or load_settings())


# ---------------------------------------------------------------------------- adapt
def adapt_domain(
    params: OnboardParams, store_dir: str, backbone_uri: str, settings: Settings, backbone_why: str = ""
) -> str:
    """Fit the domain's teacher, adapter and fusion weight on the store read and split once;
    returns the result folder (``backbone_why``: why this backbone, for the report)."""
    registry.configure(settings)
    pinned = registry.versioned_uri("backbone", registry.resolve(backbone_uri)[1])  # one version for key and fit
    out = adapt_dir(params, store_dir, pinned, settings)
    # a concurrent onboarding of the same domain, data and settings waits here and then finds the result
    with exclusive(out, f"the adapt step of {params.domain} ({out.name})", run_logger()):
        return _adapt_once(params, store_dir, backbone_uri, pinned, out, backbone_why)


def _adapt_once(
    params: OnboardParams, store_dir: str, backbone_uri: str, pinned: str, out: Path, backbone_why: str
) -> str:
    from models.backbone.io import load_backbone
    from models.forecasting.backbone import trained_context
    from models.memory.onboarding import onboard

    if OnboardingResult.is_complete(out):  # an earlier run (or a crashed one) finished this very result
        run_logger().info("adapt %s: result already complete in %s", params.domain, out)
        return str(out)
    shutil.rmtree(out, ignore_errors=True)  # a partial folder of a killed attempt
    split, meta = read_split(
        store_dir, params.horizon, params.season_length, params.series_horizons, params.val_origins
    )
    if split.mixed:
        counts = ", ".join(f"{h}: {n} series" for h, n in sorted(Counter(split.horizons.tolist()).items()))
        run_logger().info(
            "%s: per-series horizons from the source (%s), models forecast %d steps",
            params.domain,
            counts,
            split.horizon,
        )
    version, backbone_dir = registry.resolve_backbone(pinned)
    started = time.perf_counter()
    try:
        result = onboard(load_backbone(backbone_dir), split, params, trained_context=trained_context(backbone_dir))
    except ValueError as e:  # the pure onboarding refuses data it cannot fit on: the user's to fix, one line
        raise InputError(f"{params.domain}: {e}") from e
    result.provenance = {
        "domain": params.domain,
        "backbone_uri": backbone_uri,
        "backbone_version": version,
        "backbone_why": backbone_why,
        "data_version": meta["md5"],
        "freq": meta.get("freq"),
        "store": str(store_dir),
        "source": meta.get("source"),
        "columns": meta.get("columns") or {},
        "date_format": meta.get("date_format"),
        "per_series_horizons": params.series_horizons and read_series_meta(store_dir) is not None,
        "season": describe_seasons(store_dir, params.season_length, params.series_horizons),
        "seconds": time.perf_counter() - started,
    }
    result.save(out)
    run_logger().info(
        "adapted %s (frequency %s, season %s): alpha=%.2f from %d windows in %.1fs",
        params.domain,
        meta.get("freq") or "integer steps",
        result.provenance["season"],
        result.alpha,
        result.n_windows,
        result.provenance["seconds"],
    )
    return str(out)


# ------------------------------------------------------------------------- evaluate
def evaluate_domain(result_dir: str, params: OnboardParams, settings: Settings | None = None) -> str:
    """Validation and test tables: baselines (statsforecast) vs backbone, teacher, fused.
    (``settings``: where the cached task keeps its result; the tables do not depend on it.)"""
    from evaluation.domain import evaluate_result

    evaluate_result(OnboardingResult.load(result_dir), params.domain, n_jobs=BASELINE_JOBS)
    return result_dir


# ------------------------------------------------------------------------- register
def register_domain(result_dir: str, params: OnboardParams, settings: Settings) -> dict:
    """Log the onboarding run; register the components (teacher-, adapter-, fused-<domain>) and every
    candidate family as a version of forecaster-<domain>, whose ``challenger`` alias goes to the
    candidate the gate offers (``evaluation.gate``). Idempotent: run again on the same result folder
    (a retry, a resumed run) it reuses the run and the versions (``tracking.onboarding_runs``)."""
    from evaluation.domain import validation_evidence

    result = OnboardingResult.load(result_dir)
    val = pd.read_csv(result.metrics_file("val"), index_col=0)
    test = pd.read_csv(result.metrics_file("test"), index_col=0)
    domain = params.domain
    families = tuple(f for f in FAMILIES if f in val.index)  # the ensemble last: it names its members
    # chosen before anything is registered: a choice that fails leaves the registry as it was
    choice = choose_candidate(
        validation_evidence(result, families), settings.promote.margin, settings.promote.confidence
    )
    experiment_id = registry.use_experiment("onboard", settings)
    # idempotent: the run and the versions of this result folder are found by its id and reused
    rid = result_id(result_dir)
    gain_kept = {"val": teacher_gain_kept(val), "test": teacher_gain_kept(test)}
    registered = register_onboarding(
        result,
        params,
        val,
        test,
        families,
        choice.family,
        experiment_id,
        rid,
        gain_kept,
        description=tables_description(result, val, test),
        note=headline(domain, val, test, choice.reason),
    )
    versions, components = registered.versions, registered.components
    prov = result.provenance
    return {
        "run_id": registered.run_id,
        "model": registered.model,
        "versions": versions,
        "challenger": {
            "family": choice.family,
            "version": versions[choice.family],
            "reason": choice.reason,
            "val_sCRPS": choice.scores,
            "confidence": choice.confidence,
        },
        "ensemble": result.ensemble_record(),
        "stage_seconds": result.stage_seconds(),
        "fused_version": components["fused"],
        "teacher_version": components["teacher"],
        "adapter_version": components["adapter"],
        "alpha": result.alpha,
        "alpha_grid": [row["alpha"] for row in result.alpha_table],
        "backbone_context": result.backbone_context or params.context_length,
        "backbone": {
            "uri": prov.get("backbone_uri"),
            "version": prov.get("backbone_version"),
            "why": prov.get("backbone_why", ""),
        },
        "context_length": params.context_length,
        "val_origins": {str(k): v for k, v in result.split.origin_counts().items()},
        "val_origins_asked": params.val_origins,
        "teacher_gain_kept": gain_kept,
        "result_dir": result_dir,
        "freq": prov.get("freq"),
        "season": prov.get("season"),
        "val_table": str(result.metrics_file("val", "txt")),
        "test_table": str(result.metrics_file("test", "txt")),
    }


# -------------------------------------------------------------------------- publish
def publish_onboarding_artifacts(registered: dict, domain: str, settings: Settings) -> dict[str, str]:
    """The Prefect artifacts of one onboarding; returns {kind: artifact id}."""
    result = OnboardingResult.load(registered["result_dir"])
    links = mlflow_links(settings, registered["run_id"], domain, registered["challenger"]["version"])
    ids = {
        "report": create_markdown_artifact(
            onboarding_report(registered, domain, settings, links),
            key=artifact_key("onboard", domain),
            description=f"onboarding report of {domain}",
        )
    }
    test = pd.read_csv(result.metrics_file("test"), index_col=0).round(4).reset_index()
    ids["test_table"] = create_table_artifact(
        test.to_dict("records"),
        key=artifact_key("onboard-test", domain),
        description=f"{domain}: test metrics per model",
    )
    image_url = fan_chart_url(result, links)
    if image_url:
        ids["fan_chart"] = create_image_artifact(
            image_url,
            key=artifact_key("onboard-fan-chart", domain),
            description=f"{domain}: fused forecast on the test split",
        )
    for name in ("run", "model"):
        if name in links:
            ids[name] = create_link_artifact(
                links[name], link_text=f"MLflow {name} of {domain}", key=artifact_key(f"onboard-mlflow-{name}", domain)
            )
    return {k: str(v) for k, v in ids.items()}


choose_backbone_task = task(choose_domain_backbone, name="choose-backbone", **remote_retries())
adapt_domain_task = task(adapt_domain, name="adapt", cache_key_fn=_adapt_cache_key, persist_result=True)
evaluate_domain_task = task(evaluate_domain, name="evaluate", cache_key_fn=_evaluate_cache_key, persist_result=True)
register_domain_task = task(register_domain, name="register", **remote_retries())
# retried: it talks to MLflow and the Prefect API
publish_onboarding_task = task(publish_onboarding_artifacts, name="publish-artifacts", **remote_retries())
