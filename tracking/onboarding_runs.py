"""An onboarding in MLflow: its run in ``tsfm-onboard`` (params, metrics, the report files, the store as
input), its components (``teacher-``, ``adapter-``, ``fused-<domain>``) and every candidate family as a
version of ``forecaster-<domain>``, whose ``challenger`` alias goes to the family the gate chose, and
the domain's facts remembered on the registry. Idempotent: run again on the same result (a retry, a
resumed run) it reuses the run and the versions, found by the result's id."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any, NamedTuple

import mlflow
import numpy as np
import pandas as pd

from infra.settings import OnboardParams
from models.forecasting.kinds import ENSEMBLE, FAMILIES, HORIZON_BOUND, NEURAL
from models.memory.result import OnboardingResult
from tracking import registry
from tracking.datasets import log_store_input
from tracking.model_logging import log_forecaster

REGISTERED_KINDS = ("teacher", "adapter", "fused")
LOGGED_TAG = "tsfm_logged"  # set once the run holds its params, metrics and report


class RegisteredOnboarding(NamedTuple):
    run_id: str
    model: str  # forecaster-<domain>
    versions: dict[str, str]  # family -> version of forecaster-<domain>
    components: dict[str, str]  # kind -> version of <kind>-<domain>


def register_onboarding(
    result: OnboardingResult,
    params: OnboardParams,
    val: pd.DataFrame,
    test: pd.DataFrame,
    families: tuple[str, ...],
    challenger: str,
    experiment_id: str,
    rid: str,
    gain_kept: Mapping[str, float | None],
    description: str,
    note: str,
) -> RegisteredOnboarding:
    """Log the onboarding run (once), register the components and the ``families``' candidates, point
    ``challenger`` at the ``challenger`` family's version and remember the domain. ``description``: each
    version's; ``note``: the run's description; ``gain_kept``: per part, the teacher gain the adapter kept."""
    prov = result.provenance
    domain = params.domain
    with mlflow.start_run(
        run_id=registry.find_run(experiment_id, rid), run_name=f"onboard-{domain}-bb{prov['backbone_version']}"
    ) as run:
        mlflow.set_tag(registry.RESULT_ID_TAG, rid)
        if run.data.tags.get(LOGGED_TAG) != "true":  # a retried/resumed run logs only what is missing
            log_onboarding_run(result, params, val, test, gain_kept)
            mlflow.set_tag(LOGGED_TAG, "true")
        tags = {
            "data_version": prov["data_version"],
            "git_commit": registry.git_commit(),
            "domain": domain,
            "run_id": run.info.run_id,
            "freq": prov.get("freq") or "integer steps",
            "season": prov.get("season", ""),
        }
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
            def log_model(kind: str = kind) -> str:
                return log_forecaster(
                    kind, result.model_dir(kind), {**meta, "family": kind, "max_horizon": result.horizon}, name=kind
                )

            components[kind] = registry.register(
                log_model,
                f"{kind}-{domain}",
                {**tags, **scores(val, "fused"), "alpha": result.alpha, "backbone_version": prov["backbone_version"]},
                description,
                result_id=rid,
            )
        versions: dict[str, str] = {}
        for family in families:
            versions[family] = register_candidate(
                family, result, components, val, tags, meta, description, rid, versions
            )
        name = registry.forecaster_name(domain)
        registry.set_alias(name, "challenger", versions[challenger])
        facts = {
            "source": portable_source(params.source or prov.get("source")),
            # how to read it, so that a scheduled re-ingest reads it as this one did
            "columns": json.dumps(params.columns or prov.get("columns") or {}, sort_keys=True),
            # "" rather than None: a later onboarding without one must clear an earlier one's
            "date_format": params.date_format or prov.get("date_format") or "",
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
        mlflow.set_tag(registry.NOTE, note)
    return RegisteredOnboarding(run.info.run_id, name, versions, components)


def portable_source(source: str | None) -> str | None:
    """A local path made absolute, so the remembered source means the same from any folder."""
    if not source or "://" in source or source.startswith(("builtin:", "synthetic:")):
        return source
    return str(Path(source).resolve()) if Path(source).exists() else source


def scores(table: pd.DataFrame, family: str, part: str = "val") -> dict[str, float]:
    """A family's figures of one part (``val_sCRPS``, ...) as version tags."""
    return {
        f"{part}_{k}": float(table.loc[family, k]) for k in ("sCRPS", "MASE", "sMAPE", "coverage") if k in table.columns
    }


def register_candidate(
    family: str,
    result: OnboardingResult,
    components: dict[str, str],
    val: pd.DataFrame,
    tags: dict[str, Any],
    meta: dict[str, Any],
    description: str,
    rid: str,
    versions: dict[str, str],
) -> str:
    """One version of forecaster-<domain> for ``family``: the fused component's own logged model, or
    the family's folder in the result logged as a model of its kind. An ensemble's version names the
    versions of its members (``versions``: those registered before it) and their weights."""
    domain = meta["domain"]
    kind = FAMILIES[family]
    family_tags = {**tags, **scores(val, family), "family": family}
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


def log_onboarding_run(
    result: OnboardingResult,
    params: OnboardParams,
    val: pd.DataFrame,
    test: pd.DataFrame,
    gain_kept: Mapping[str, float | None],
) -> None:
    """Params, tags, the store as input, metrics and the report files, into the active run
    (``gain_kept``: per part, how much of what the kNN teacher knows the adapter carried over)."""
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
        kept = gain_kept[part]
        if kept is not None:  # how much of what the kNN teacher knows the adapter carried over
            mlflow.log_metric(f"{part}_teacher_gain_kept", kept)
    for i, rec in enumerate(result.history):
        mlflow.log_metrics(
            {f"adapter_{k}": float(v) for k, v in rec.items() if isinstance(v, (int, float)) and k != "epoch"}, step=i
        )
    for f in result.report_files():
        mlflow.log_artifact(str(f), artifact_path="report")
