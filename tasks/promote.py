"""Promotion gate: ``champion`` moves only when the candidate earns it on validation."""
from __future__ import annotations


import mlflow
from prefect import task

from infra.settings import Settings
from tasks import tracking
from tasks.logs import run_logger

GATE_METRIC = "val_sCRPS"


def promote_domain(domain: str, settings: Settings, version: str | None = None, margin: float = 0.0) -> dict:
    """Give ``fused-<domain>`` (the ``challenger`` by default) the ``champion`` alias when its
    validation sCRPS beats the frozen backbone's and the current champion's by ``margin``.

    Returns a JSON-able decision ``{promoted, version, reason, ...}``.
    """
    tracking.configure(settings)
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
        champ_score = float(tracking.version_tags(name, champion)[GATE_METRIC]) if champion else None
        if champ_score is not None and not cand < champ_score * (1 - margin):
            decision.update(promoted=False, reason=(
                f"val sCRPS {cand:.4f} does not beat champion v{champion}'s {champ_score:.4f}"))
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
