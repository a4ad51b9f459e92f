"""Promotion gate: ``champion`` moves only when the candidate earns it on validation."""
from __future__ import annotations

import tempfile
from pathlib import Path

import mlflow
import numpy as np
from prefect import task

from infra.logs import run_logger
from infra.settings import Settings
from models.memory.result import OnboardingResult
from models.metrics import per_series_metrics
from tracking import registry
from tracking.retries import remote_retries

GATE_METRIC = "val_sCRPS"


def champion_on_candidate_split(name: str, champion: str, result_dir: str | Path) -> tuple[float, float] | None:
    """(candidate, champion) validation sCRPS, both on the candidate's validation split: the
    champion's own tag was measured on the data of its day, which re-onboarding may have changed.
    None when the champion cannot forecast the candidate's horizon (then the tags decide)."""
    from models.forecasting.fused import FusedForecaster

    result = OnboardingResult.load(result_dir)
    split = result.split
    contexts, truth = split.history("val"), split.truth("val")  # what the candidate was scored on
    uri = f"{mlflow.MlflowClient().get_model_version_download_uri(name, champion)}/artifacts/fused"
    folder = mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=tempfile.mkdtemp(prefix="tsfm-gate-"))
    model = FusedForecaster.load(folder)
    if model.horizon < split.horizon:
        return None
    scores = [float(np.nanmean(per_series_metrics(q, truth, contexts, split.seasons)["sCRPS"]))
              for q in (result.val.fused, model.predict(contexts, split.horizon).quantiles)]
    return scores[0], scores[1]


def promote_domain(domain: str, settings: Settings, version: str | None = None, margin: float | None = None,
                   result_dir: str | None = None) -> dict:
    """Give ``fused-<domain>`` (the ``challenger`` by default) the ``champion`` alias when its
    validation sCRPS beats the frozen backbone's and the current champion's by ``margin``
    (default: the settings' ``promote.margin``). With the candidate's ``result_dir`` the current
    champion is re-scored on the candidate's validation split; without it, the versions' tags
    are compared.

    Returns a JSON-able decision ``{promoted, version, reason, ...}``.
    """
    registry.configure(settings)
    margin = settings.promote.margin if margin is None else margin
    name = f"fused-{domain}"
    version = version or registry.alias_version(name, "challenger") or registry.latest_version(name)
    if version is None:
        raise ValueError(f"no registered versions of {name}: onboard the domain first")
    tags = registry.version_tags(name, version)
    cand = float(tags[GATE_METRIC])
    base = float(tags["backbone_val_sCRPS"])
    champion = registry.alias_version(name, "champion")
    decision = {"model": name, "version": version, GATE_METRIC: cand, "backbone_val_sCRPS": base,
                "previous_champion": champion, "margin": margin}

    if champion == version:
        decision.update(promoted=False, reason=f"version {version} already is champion")
    elif not cand < base * (1 - margin):
        decision.update(promoted=False, reason=(
            f"val sCRPS {cand:.4f} does not beat the frozen backbone's {base:.4f} by margin {margin:.0%}"))
    else:
        champ_score, rescored = None, None
        if champion:
            rescored = champion_on_candidate_split(name, champion, result_dir) if result_dir else None
            if rescored is not None:
                cand, champ_score = rescored
                decision.update({GATE_METRIC: cand, "champion_val_sCRPS": champ_score,
                                 "champion_rescored": True})
            else:
                champ_score = float(registry.version_tags(name, champion)[GATE_METRIC])
                decision.update(champion_val_sCRPS=champ_score, champion_rescored=False)
        if champ_score is not None and not cand < champ_score * (1 - margin):
            decision.update(promoted=False, reason=(
                f"val sCRPS {cand:.4f} does not beat champion v{champion}'s {champ_score:.4f} "
                f"by margin {margin:.0%}" + (" (champion re-scored on this validation split)" if rescored else "")))
        else:
            registry.set_alias(name, "champion", version)
            decision.update(promoted=True, reason=(
                f"val sCRPS {cand:.4f} < backbone {base:.4f}"
                + (f" and champion v{champion} {champ_score:.4f}" if champion else "")))
    run_logger().info("promote %s v%s: %s", name, version, decision["reason"])

    registry.use_experiment("promote", settings)
    outcome = "promoted" if decision["promoted"] else "refused"  # the run list shows each gate decision
    with mlflow.start_run(run_name=f"promote-{domain}-v{version}-{outcome}"):
        mlflow.log_params({"model": name, "version": version, "margin": margin})
        mlflow.log_metric("promoted", float(decision["promoted"]))
        mlflow.set_tag("reason", decision["reason"])
        mlflow.log_dict(decision, "decision.json")
    return decision


def rollback_domain(domain: str, version: str, settings: Settings) -> dict:
    """Point ``fused-<domain>@champion`` back at ``version``."""
    registry.configure(settings)
    name = f"fused-{domain}"
    previous = registry.alias_version(name, "champion")
    registry.set_alias(name, "champion", version)
    return {"model": name, "champion": version, "previous_champion": previous}


promote_domain_task = task(promote_domain, name="promote", **remote_retries())
