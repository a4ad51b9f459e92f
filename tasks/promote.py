"""Promotion gate: ``champion`` moves only when the candidate earns it on validation."""
from __future__ import annotations

import json
import tempfile
from pathlib import Path

import mlflow
import numpy as np
from prefect import task

from infra.settings import Settings
from tasks import tracking
from tasks.logs import run_logger

GATE_METRIC = "val_sCRPS"


def champion_on_candidate_split(name: str, champion: str, result_dir: str | Path) -> tuple[float, float] | None:
    """(candidate, champion) validation sCRPS, both on the candidate's validation split: the
    champion's own tag was measured on the data of its day, which re-onboarding may have changed.
    None when the champion cannot forecast the candidate's horizon (then the tags decide)."""
    from models.fused import FusedForecaster
    from models.splits import split_frame, to_arrays
    from tasks.ingest import read_store, split_horizon
    from tasks.metrics import per_series_metrics

    out = Path(result_dir)
    summary = json.loads((out / "summary.json").read_text())
    arrays = dict(np.load(out / "forecasts.npz"))
    store = Path(summary["store"])
    df, meta = read_store(store)
    split = split_frame(df, split_horizon(store, meta) if summary.get("per_series_horizons")
                        else int(summary["horizon"]))
    train = to_arrays(split.train)
    contexts = [train[i] for i in summary["series"]]  # the same contexts the candidate was scored on
    uri = f"{mlflow.MlflowClient().get_model_version_download_uri(name, champion)}/artifacts/fused"
    folder = mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=tempfile.mkdtemp(prefix="tsfm-gate-"))
    model = FusedForecaster.load(folder)
    horizon = arrays["val_y"].shape[1]
    if model.horizon < horizon:
        return None
    scores = [float(np.nanmean(per_series_metrics(q, arrays["val_y"], contexts, arrays["seasons"])["sCRPS"]))
              for q in (arrays["val_fused"], model.predict(contexts, horizon))]
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
    tracking.configure(settings)
    margin = settings.promote.margin if margin is None else margin
    name = f"fused-{domain}"
    version = version or tracking.alias_version(name, "challenger") or tracking.latest_version(name)
    if version is None:
        raise ValueError(f"no registered versions of {name}: onboard the domain first")
    tags = tracking.version_tags(name, version)
    cand = float(tags[GATE_METRIC])
    base = float(tags["backbone_val_sCRPS"])
    champion = tracking.alias_version(name, "champion")
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
                champ_score = float(tracking.version_tags(name, champion)[GATE_METRIC])
                decision.update(champion_val_sCRPS=champ_score, champion_rescored=False)
        if champ_score is not None and not cand < champ_score * (1 - margin):
            decision.update(promoted=False, reason=(
                f"val sCRPS {cand:.4f} does not beat champion v{champion}'s {champ_score:.4f} "
                f"by margin {margin:.0%}" + (" (champion re-scored on this validation split)" if rescored else "")))
        else:
            tracking.set_alias(name, "champion", version)
            decision.update(promoted=True, reason=(
                f"val sCRPS {cand:.4f} < backbone {base:.4f}"
                + (f" and champion v{champion} {champ_score:.4f}" if champion else "")))
    run_logger().info("promote %s v%s: %s", name, version, decision["reason"])

    tracking.use_experiment("promote", settings)
    outcome = "promoted" if decision["promoted"] else "refused"  # the run list shows each gate decision
    with mlflow.start_run(run_name=f"promote-{domain}-v{version}-{outcome}"):
        mlflow.log_params({"model": name, "version": version, "margin": margin})
        mlflow.log_metric("promoted", float(decision["promoted"]))
        mlflow.set_tag("reason", decision["reason"])
        mlflow.log_dict(decision, "decision.json")
    return decision


def rollback_domain(domain: str, version: str, settings: Settings) -> dict:
    tracking.configure(settings)
    name = f"fused-{domain}"
    previous = tracking.alias_version(name, "champion")
    tracking.set_alias(name, "champion", version)
    return {"model": name, "champion": version, "previous_champion": previous}


promote_task = task(promote_domain, name="promote", **tracking.remote_retries())
