"""Onboarding a domain as units of work that hand over a result folder
(``models.memory.result.OnboardingResult``):

adapt (teacher + adapter + fusion weight, backbone frozen) -> evaluate (validation and
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

import mlflow
import numpy as np
import pandas as pd
from prefect import task
from prefect.artifacts import (
    create_image_artifact,
    create_link_artifact,
    create_markdown_artifact,
    create_table_artifact,
)

from evaluation.gate import choose_candidate
from evaluation.scores import teacher_gain_kept
from infra.code_version import cached_digest
from infra.errors import InputError
from infra.files import exclusive
from infra.logs import run_logger
from infra.settings import OnboardParams, Settings
from models.forecasting.kinds import ENSEMBLE, FAMILIES, HORIZON_BOUND, NEURAL
from models.memory.result import OnboardingResult
from reports.onboarding import artifact_key, fan_chart_url, mlflow_links, onboarding_report
from reports.tables import markdown_table
from store.canonical import describe_seasons, read_meta, read_series_meta, read_split
from tracking import registry
from tracking.datasets import log_store_input
from tracking.model_logging import log_forecaster
from tracking.retries import remote_retries

BASELINE_JOBS = max(1, min(4, os.cpu_count() or 1))
REGISTERED_KINDS = ("teacher", "adapter", "fused")
LOGGED_TAG = "tsfm_logged"  # set once the run holds its params, metrics and report
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
    return params.model_dump(mode="json", exclude={"source"})  # the data md5 stands for the source


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
def adapt_domain(params: OnboardParams, store_dir: str, backbone_uri: str, settings: Settings) -> str:
    """Fit the domain's teacher, adapter and fusion weight on the store read and split once;
    returns the result folder."""
    registry.configure(settings)
    pinned = registry.versioned_uri("backbone", registry.resolve(backbone_uri)[1])  # one version for key and fit
    out = adapt_dir(params, store_dir, pinned, settings)
    # a concurrent onboarding of the same domain, data and settings waits here and then finds the result
    with exclusive(out, f"the adapt step of {params.domain} ({out.name})", run_logger()):
        return _adapt_once(params, store_dir, backbone_uri, pinned, out)


def _adapt_once(params: OnboardParams, store_dir: str, backbone_uri: str, pinned: str, out: Path) -> str:
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
        "data_version": meta["md5"],
        "freq": meta.get("freq"),
        "store": str(store_dir),
        "source": meta.get("source"),
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
    (a retry, a resumed run) it reuses the run and the versions."""
    from evaluation.domain import validation_evidence

    result = OnboardingResult.load(result_dir)
    prov = result.provenance
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
    with mlflow.start_run(
        run_id=registry.find_run(experiment_id, rid), run_name=f"onboard-{domain}-bb{prov['backbone_version']}"
    ) as run:
        mlflow.set_tag(registry.RESULT_ID_TAG, rid)
        if run.data.tags.get(LOGGED_TAG) != "true":  # a retried/resumed run logs only what is missing
            _log_onboarding_run(result, params, val, test)
            mlflow.set_tag(LOGGED_TAG, "true")
        tags = {
            "data_version": prov["data_version"],
            "git_commit": registry.git_commit(),
            "domain": domain,
            "run_id": run.info.run_id,
            "freq": prov.get("freq") or "integer steps",
            "season": prov.get("season", ""),
        }
        description = _tables_description(result, val, test)
        meta = {
            "domain": domain,
            "freq": prov.get("freq"),
            "default_horizon": result.horizon,
            "context_length": params.context_length,
            "season": prov.get("season"),
        }
        components = {}
        for kind in REGISTERED_KINDS:
            # the model is logged only when no version of this result exists yet
            def log_model(kind=kind) -> str:
                return log_forecaster(
                    kind, result.model_dir(kind), {**meta, "family": kind, "max_horizon": result.horizon}, name=kind
                )

            components[kind] = registry.register(
                log_model,
                f"{kind}-{domain}",
                {**tags, **_scores(val, "fused"), "alpha": result.alpha, "backbone_version": prov["backbone_version"]},
                description,
                result_id=rid,
            )
        versions: dict[str, str] = {}
        for family in families:
            versions[family] = _register_candidate(
                family, result, components, val, tags, meta, description, rid, versions
            )
        name = registry.forecaster_name(domain)
        registry.set_alias(name, "challenger", versions[choice.family])
        facts = {
            "source": portable_source(params.source or prov.get("source")),
            "horizon": params.horizon,
            "freq": prov.get("freq"),
            "season_length": params.season_length,
            "season": prov.get("season"),
        }
        registry.remember_domain(
            domain,
            facts,
            f"Domain `{domain}`: source `{facts['source']}`, horizon "
            f"{facts['horizon']}, frequency {facts['freq'] or 'integer steps'}, season "
            f"{facts['season']}. " + registry.MODEL_NOTES[registry.FORECASTER_PREFIX],
        )
        mlflow.set_tag(registry.NOTE, headline(domain, val, test, choice.reason))
    return {
        "run_id": run.info.run_id,
        "model": name,
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
        "context_length": params.context_length,
        "val_origins": {str(k): v for k, v in result.split.origin_counts().items()},
        "val_origins_asked": params.val_origins,
        "teacher_gain_kept": {"val": teacher_gain_kept(val), "test": teacher_gain_kept(test)},
        "result_dir": result_dir,
        "freq": prov.get("freq"),
        "season": prov.get("season"),
        "val_table": str(result.metrics_file("val", "txt")),
        "test_table": str(result.metrics_file("test", "txt")),
    }


def headline(domain: str, val: pd.DataFrame, test: pd.DataFrame, why: str) -> str:
    """The onboarding run's description, first on its MLflow page: every family on validation and
    test, and the gate's choice."""
    rows = [
        f"| {f} | {val.loc[f, 'sCRPS']:.4f} | {val.loc[f, 'MASE']:.3f} | {test.loc[f, 'sCRPS']:.4f} | "
        f"{test.loc[f, 'MASE']:.3f} |"
        for f in FAMILIES
        if f in val.index and f in test.index
    ]
    return "\n".join(
        [
            f"**{domain}**: challenger chosen because {why}.",
            "",
            "| family | val sCRPS | val MASE | test sCRPS | test MASE |",
            "|---|---|---|---|---|",
            *rows,
            "",
            "Validation chooses; test is reported, never used to choose. Full tables: report/.",
        ]
    )


def portable_source(source: str | None) -> str | None:
    """A local path made absolute, so the remembered source means the same from any folder."""
    if not source or "://" in source or source.startswith(("builtin:", "synthetic:")):
        return source
    return str(Path(source).resolve()) if Path(source).exists() else source


def _scores(table: pd.DataFrame, family: str, part: str = "val") -> dict[str, float]:
    return {
        f"{part}_{k}": float(table.loc[family, k]) for k in ("sCRPS", "MASE", "sMAPE", "coverage") if k in table.columns
    }


def _register_candidate(
    family: str,
    result: OnboardingResult,
    components: dict[str, str],
    val: pd.DataFrame,
    tags: dict,
    meta: dict,
    description: str,
    rid: str,
    versions: dict[str, str],
) -> str:
    """One version of forecaster-<domain> for ``family``: the fused component's own logged model, or
    the family's folder in the result logged as a model of its kind. An ensemble's version names the
    versions of its members (``versions``: those registered before it) and their weights."""
    domain = meta["domain"]
    kind = FAMILIES[family]
    family_tags = {**tags, **_scores(val, family), "family": family}
    max_horizon = None  # the statistical models and the backbone have no trained limit
    if family == ENSEMBLE:
        weights = result.ensemble_record()["weights"]
        used = {f: w for f, w in weights.items() if w > 0}
        by_weight = sorted(used.items(), key=lambda kv: -kv[1])
        family_tags["ensemble_weights"] = ", ".join(f"{f}={w:.2f}" for f, w in by_weight)
        family_tags["members"] = ", ".join(f"{f}:v{versions[f]}" for f in used)
        if any(f in NEURAL for f in used):
            family_tags["backbone_version"] = result.provenance["backbone_version"]
            max_horizon = result.horizon if any(f in HORIZON_BOUND for f in used) else None
        meta = {**meta, "backbone": any(f in NEURAL for f in used), "weights": used}
    if family in NEURAL:
        family_tags["backbone_version"] = result.provenance["backbone_version"]
    if family in components:  # the fused model and the kNN teacher: their component's own logged model
        if family == "fused":
            family_tags["alpha"] = result.alpha
        source = mlflow.MlflowClient().get_model_version(f"{family}-{domain}", components[family]).source
        return registry.register(
            source, registry.forecaster_name(domain), family_tags, description, result_id=f"{rid}-{family}"
        )

    def log_model() -> str:
        return log_forecaster(
            kind, result.model_dir(family), {**meta, "family": family, "max_horizon": max_horizon}, name=family
        )

    return registry.register(
        log_model, registry.forecaster_name(domain), family_tags, description, result_id=f"{rid}-{family}"
    )


def _tables_description(result: OnboardingResult, val: pd.DataFrame, test: pd.DataFrame) -> str:
    return (
        f"Season {result.provenance.get('season', '?')}. Validation (fusion weight alpha={result.alpha:.2f} "
        "and the champion chosen here):\n\n"
        + markdown_table(val.rename_axis("model"))
        + "\n\nTest (never seen while choosing):\n\n"
        + markdown_table(test.rename_axis("model"))
    )


def _log_onboarding_run(result: OnboardingResult, params: OnboardParams, val: pd.DataFrame, test: pd.DataFrame) -> None:
    """Params, tags, the store as input, metrics and the report files, into the active run."""
    prov = result.provenance
    mlflow.log_params(registry.flat_params(params.model_dump(mode="json")))
    mlflow.log_params(
        {
            "backbone_uri": prov["backbone_uri"],
            "backbone_version": prov["backbone_version"],
            "n_windows": result.n_windows,
            "alpha": result.alpha,
        }
    )
    mlflow.set_tags(
        {
            "domain": params.domain,
            "data_version": prov["data_version"],
            "git_commit": registry.git_commit(),
            "backbone_version": prov["backbone_version"],
        }
    )
    log_store_input(prov["store"], context="domain")  # digest = DVC's md5 of the store
    for part, table in (("val", val), ("test", test)):
        for model, row in table.iterrows():
            mlflow.log_metrics({f"{part}_{model}_{k}": float(v) for k, v in row.items() if np.isfinite(v)})
        kept = teacher_gain_kept(table)
        if kept is not None:  # how much of what the kNN teacher knows the adapter carried over
            mlflow.log_metric(f"{part}_teacher_gain_kept", kept)
    for i, rec in enumerate(result.history):
        mlflow.log_metrics(
            {f"adapter_{k}": float(v) for k, v in rec.items() if isinstance(v, (int, float)) and k != "epoch"}, step=i
        )
    for f in result.report_files():
        mlflow.log_artifact(str(f), artifact_path="report")


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


adapt_domain_task = task(adapt_domain, name="adapt", cache_key_fn=_adapt_cache_key, persist_result=True)
evaluate_domain_task = task(evaluate_domain, name="evaluate", cache_key_fn=_evaluate_cache_key, persist_result=True)
register_domain_task = task(register_domain, name="register", **remote_retries())
# retried: it talks to MLflow and the Prefect API
publish_onboarding_task = task(publish_onboarding_artifacts, name="publish-artifacts", **remote_retries())
