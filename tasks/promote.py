"""Promotion: ``champion`` of forecaster-<domain> moves only when a candidate earns it on validation.

The candidate (``challenger``, or a version given) must beat the current champion by the margin;
with the candidate's result folder the champion is re-scored on the candidate's own validation
windows, whatever its family, else the versions' tags are compared (``evaluation.gate``).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import mlflow
import numpy as np
from prefect import task

from evaluation.gate import beats
from evaluation.scores import validation_scrps
from infra.errors import NotFoundError
from infra.logs import run_logger
from infra.settings import Settings
from models.memory.result import OnboardingResult
from tracking import registry
from tracking.retries import remote_retries

GATE_METRIC = "val_sCRPS"


def champion_on_candidate_split(name: str, champion: str, result_dir: str | Path) -> np.ndarray | None:
    """The champion's validation sCRPS per window on the candidate's validation windows (its own tag
    was measured on the data of its day, which re-onboarding may have changed). None when it cannot
    forecast that far (then its tag decides)."""
    from models.forecasting.kinds import load_forecaster

    split = OnboardingResult.load(result_dir).split
    kind, folder, _ = registry.download_forecaster(name, champion, tempfile.mkdtemp(prefix="tsfm-gate-"))
    model = load_forecaster(kind, folder)
    if getattr(model, "horizon", split.horizon) < split.horizon:
        return None
    # the rolling-origin windows every candidate was scored on
    return validation_scrps(split, lambda contexts, ids, h: model.predict(contexts, h, ids=ids).quantiles)


def _validated(name: str, version: str) -> None:
    """``validated_at`` (epoch seconds) on the version: servers export it for the stale-champion alert."""
    import time

    mlflow.MlflowClient().set_model_version_tag(name, version, "validated_at", f"{time.time():.0f}")


def promote_domain(
    domain: str,
    settings: Settings,
    version: str | None = None,
    margin: float | None = None,
    result_dir: str | None = None,
    why: str | None = None,
) -> dict:
    """Give forecaster-<domain>'s candidate (``challenger`` by default) the ``champion`` alias when
    its validation sCRPS beats the current champion's by ``margin`` (default: the settings'
    ``promote.margin``). ``why``: how the candidate was chosen among the families, for the record.

    Returns a JSON-able decision ``{promoted, version, family, reason, ...}``.
    """
    registry.configure(settings)
    margin = settings.promote.margin if margin is None else margin
    name = registry.forecaster_name(domain)
    version = version or registry.alias_version(name, "challenger") or registry.latest_version(name)
    if version is None:
        known = sorted(registry.remembered_domains())
        raise NotFoundError(
            f"no registered versions of {name}: onboard the domain first (tsfm onboard --domain "
            f"{domain}); onboarded domains: {', '.join(known) or 'none'}"
        )
    tags = registry.version_tags(name, version)
    cand, family = float(tags[GATE_METRIC]), tags.get("family", "fused")
    champion = registry.alias_version(name, "champion")
    decision = {
        "model": name,
        "version": version,
        "family": family,
        GATE_METRIC: cand,
        "previous_champion": champion,
        "margin": margin,
        "chosen_because": why,
    }
    if champion == version:
        decision.update(promoted=False, reason=f"version {version} ({family}) already is champion")
    else:
        champ_score = None
        candidate: float | np.ndarray = cand
        incumbent: float | np.ndarray | None = None
        groups = None
        if champion:
            champ_family = registry.version_tags(name, champion).get("family", "fused")
            rescored = champion_on_candidate_split(name, champion, result_dir) if result_dir else None
            champ_score = (
                float(np.nanmean(rescored))
                if rescored is not None
                else float(registry.version_tags(name, champion)[GATE_METRIC])
            )
            decision.update(
                champion_family=champ_family, champion_val_sCRPS=champ_score, champion_rescored=rescored is not None
            )
            incumbent = champ_score
            if rescored is not None:  # both scored on the same windows: judged pair by pair, beyond noise
                from evaluation.domain import validation_evidence

                evidence = validation_evidence(OnboardingResult.load(result_dir), (family,))
                mine = evidence.paired(family)
                if mine is not None and len(mine) == len(rescored):
                    candidate, incumbent, groups = mine, rescored, evidence.groups
        verdict = beats(candidate, incumbent, margin, settings.promote.confidence, groups)
        if verdict.confidence is not None:
            decision["confidence"] = verdict.confidence
        if verdict:
            registry.set_alias(name, "champion", version)
            _validated(name, version)
            decision.update(
                promoted=True,
                reason=(
                    f"{family} v{version} (val sCRPS {cand:.4f})"
                    + (
                        f" beats champion v{champion} ({champ_score:.4f}) by {margin:.0%}{verdict.sureness()}"
                        if champion
                        else " is the domain's first champion"
                    )
                ),
            )
        else:
            decision.update(
                promoted=False,
                reason=(
                    f"{family} v{version} (val sCRPS {cand:.4f}) does not beat champion v{champion} "
                    f"({decision['champion_family']}, {champ_score:.4f}) by {margin:.0%}"
                    + (
                        f" with {settings.promote.confidence:.0%} confidence{verdict.sureness()}"
                        if verdict.confidence is not None
                        else ""
                    )
                    + (" (champion re-scored on this validation split)" if decision.get("champion_rescored") else "")
                ),
            )
            if decision.get("champion_rescored"):
                _validated(name, champion)  # it held its place on today's data: re-validated
    run_logger().info("promote %s v%s: %s", name, version, decision["reason"])

    registry.use_experiment("promote", settings)
    outcome = "promoted" if decision["promoted"] else "refused"  # the run list shows each gate decision
    with mlflow.start_run(run_name=f"promote-{domain}-v{version}-{family}-{outcome}"):
        mlflow.log_params({"model": name, "version": version, "family": family, "margin": margin})
        mlflow.log_metric("promoted", float(decision["promoted"]))
        mlflow.set_tag("reason", decision["reason"])
        mlflow.log_dict(decision, "decision.json")
    return decision


promote_domain_task = task(promote_domain, name="promote", **remote_retries())
