"""The monitor of one domain as Prefect tasks: how the served forecasts did, whether the data moved,
and what to do about it.

accuracy (stored batch forecasts that the store's actuals now cover, each point once: a ledger of
scored points per domain in ``<state_dir>/monitor/<domain>/scored.parquet``) -> drift (per-series
features of the store and of the contexts the servers received vs the champion's training data) ->
log (MLflow run in tsfm-monitor with tables and plots, the verdict on forecaster-<domain>'s tags for
the servers to export, a Prefect artifact; only then are the points added to the ledger) -> react
(``tsfm.domain.degraded`` with the reasons; re-onboarding's deployment has a trigger on it).
"""

from __future__ import annotations

import json
import os
import shutil
import time
from datetime import datetime, timezone
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
from prefect import task

from batch import partitions
from evaluation import drift, realized
from infra.errors import NotFoundError
from infra.events import DOMAIN_DEGRADED, domain_resource, emit
from infra.files import exclusive
from infra.logs import run_logger
from infra.settings import MonitorParams, Settings
from reports.monitor import monitor_report
from tracking import registry
from tracking.retries import remote_retries

LEDGER = "scored.parquet"
EVENTS = "events.json"  # the drift reasons already announced, so a standing drift re-onboards once


def forecasts_root(domain: str, params: MonitorParams, settings: Settings) -> str:
    return params.forecasts or settings.forecast.output or settings.forecast_dir(domain)


def _ledger(domain: str, settings: Settings) -> pd.DataFrame | None:
    path = settings.monitor_dir(domain) / LEDGER
    return pd.read_parquet(path) if path.is_file() else None


def _stored_forecasts(domain: str, root: str) -> pd.DataFrame:
    """Every committed partition of the domain (a shared output root may hold other domains' too)."""
    frames = []
    for origin in partitions.origins(root):
        m = partitions.manifest(root, origin)
        if m and m.get("domain", domain) == domain:
            frames.append(partitions.read_forecasts(root, origin))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def _seasons(store_dir: Path, facts: dict) -> int | dict[str, int]:
    from store.canonical import series_seasons

    given = str(facts.get("season_length") or "")
    return series_seasons(store_dir, int(given) if given.isdigit() else None)


def _validation(name: str, versions) -> dict[str, dict[str, float]]:
    out = {}
    for v in sorted({str(x) for x in versions}):
        try:
            tags = registry.version_tags(name, v)
        except Exception:  # noqa: BLE001 - a deleted version: no validation figures to compare with
            tags = {}
        out[v] = {m: float(tags[f"val_{m}"]) for m in realized.METRICS if tags.get(f"val_{m}") not in (None, "")}
    return out


def check_accuracy(domain: str, params: MonitorParams, settings: Settings, check_dir: str) -> dict:
    """Score the due forecast points not scored before; tables and points into ``check_dir``."""
    from store.canonical import read_store

    log = run_logger()
    store_dir = settings.store_dir(domain)
    if not (store_dir / "meta.json").is_file():
        raise NotFoundError(f"no store for {domain} under {store_dir}: ingest it first (tsfm ingest --domain {domain})")
    actuals, meta = read_store(store_dir)
    root = forecasts_root(domain, params, settings)
    stored = _stored_forecasts(domain, root)
    out = {
        "domain": domain,
        "forecasts": root,
        "data_version": meta.get("md5"),
        "points": 0,
        "waiting": 0,
        "origins": [],
        "judged": False,
        "degraded": [],
        "summary": None,
        "per_step": None,
    }
    if stored.empty:
        log.info(
            "monitor %s: no batch forecasts under %s yet (tsfm forecast --domain %s writes them)", domain, root, domain
        )
        return out
    due, waiting = realized.due_points(stored, actuals, _ledger(domain, settings))
    out["waiting"] = int(len(waiting))
    if due.empty:
        log.info(
            "monitor %s: no stored forecast point is covered by new actuals (%d wait for theirs)", domain, len(waiting)
        )
        return out
    registry.configure(settings)
    facts = registry.domain_facts(domain)
    points = realized.score_points(due, actuals, _seasons(store_dir, facts))
    name = registry.forecaster_name(domain)
    table = realized.against_validation(realized.summary(points), _validation(name, points["model_version"]))
    steps = realized.per_step(points)
    folder = Path(check_dir)
    folder.mkdir(parents=True, exist_ok=True)
    points.to_parquet(folder / "points.parquet", index=False)
    table.to_csv(folder / "realized.csv", index=False)
    steps.to_csv(folder / "per_step.csv", index=False)
    _plots(points, actuals, steps, folder, domain)
    judged = table[table["points"] >= params.min_points]
    reasons = []
    for _, row in judged.iterrows():
        for metric in params.ratio_metrics:
            ratio = row.get(f"{metric}_ratio")
            if ratio is not None and np.isfinite(ratio) and ratio > params.degraded_ratio:
                reasons.append(
                    f"realized {metric} of v{row['model_version']} ({row['family']}) is {row[metric]:.3f}, "
                    f"{ratio:.2f} x its validation {row[f'val_{metric}']:.3f} (limit "
                    f"{params.degraded_ratio:g} x) over {int(row['points'])} points"
                )
        versus = row.get("sCRPS_vs_naive")
        if params.naive_ratio and versus is not None and np.isfinite(versus) and versus > params.naive_ratio:
            reasons.append(
                f"realized sCRPS of v{row['model_version']} ({row['family']}) is {row['sCRPS']:.3f}, worse "
                f"than seasonal naive's {row['naive_sCRPS']:.3f} on the same {int(row['points'])} points "
                f"(ratio {versus:.2f}, limit {params.naive_ratio:g})"
            )
    out.update(
        points=int(len(points)),
        origins=sorted(points["origin"].astype(str).unique()),
        judged=not judged.empty,
        degraded=reasons,
        summary=str(folder / "realized.csv"),
        per_step=str(folder / "per_step.csv"),
        points_file=str(folder / "points.parquet"),
        table=table.to_dict(orient="records"),
    )
    log.info(
        "monitor %s: %d forecast points scored (%d origins), %d wait for actuals%s",
        domain,
        len(points),
        len(out["origins"]),
        len(waiting),
        "; " + "; ".join(reasons) if reasons else "",
    )
    return out


def _plots(points: pd.DataFrame, actuals: pd.DataFrame, steps: pd.DataFrame, folder: Path, domain: str) -> None:
    """Forecast vs actual for a few series (latest origin), and the error by forecast step."""
    from reports.plots import forecast_vs_actual_plot, per_horizon_plot

    latest = points[points["origin"] == points["origin"].max()]
    ids = list(dict.fromkeys(latest["unique_id"]))
    picks = [ids[i] for i in np.linspace(0, len(ids) - 1, min(6, len(ids))).astype(int)]
    history = actuals.assign(unique_id=actuals["unique_id"].astype(str))
    history = history[history["unique_id"].isin(picks)]
    forecast_vs_actual_plot(
        latest[latest["unique_id"].isin(picks)],
        history,
        folder / "forecast_vs_actual.png",
        f"{domain}: forecasts of origin {latest['origin'].iloc[0]} and what happened",
    )
    errors = {
        f"v{v} ({f})": g.set_index("step")["MASE"].reindex(range(1, int(steps["step"].max()) + 1)).to_numpy()
        for (v, f), g in steps.groupby(["model_version", "family"])
    }
    per_horizon_plot(errors, folder / "per_step_error.png", f"{domain}: realized error by forecast step")


def _reference_store(domain: str, settings: Settings, data_version: str | None) -> tuple[Path | None, str]:
    """The store version the champion was trained on (its ``data_version`` tag), current or kept."""
    from store.canonical import read_meta
    from store.ingest import versions_dir

    current = settings.store_dir(domain)
    candidates = [current, *sorted(versions_dir(current).glob("*"), reverse=True)]
    for path in candidates:
        try:
            if data_version and read_meta(path).get("md5") == data_version:
                return path, "the champion's training data" + (
                    " (the current store)" if path == current else f" (kept version {path.name})"
                )
        except (OSError, ValueError):
            continue
    kept = sorted(versions_dir(current).glob("*"))
    if kept:
        return kept[0], (
            f"the oldest kept store version {kept[0].name} (the champion's training data "
            f"{(data_version or '?')[:8]} is no longer kept)"
        )
    return None, "no earlier store version"


def _serving_counts(domain: str, params: MonitorParams, settings: Settings) -> tuple[dict[str, np.ndarray], str]:
    """Per feature, the bucket counts of the contexts the servers received, summed over replicas."""
    import requests

    from serving.metrics import FEATURE_METRICS

    metric = {f: f"{name}_bucket" for f, name in FEATURE_METRICS.items()}
    if params.prometheus_url:
        out = {}
        for f, m in metric.items():
            q = f'sum by (le) (increase({m}{{domain="{domain}"}}[{params.serving_range}]))'
            r = requests.get(f"{params.prometheus_url.rstrip('/')}/api/v1/query", params={"query": q}, timeout=30)
            r.raise_for_status()
            rows = {float(x["metric"]["le"]): float(x["value"][1]) for x in r.json()["data"]["result"]}
            if rows:
                out[f] = drift.counts_from_cumulative([rows[k] for k in sorted(rows)])
        return out, f"Prometheus {params.prometheus_url}, last {params.serving_range}"
    from prometheus_client.parser import text_string_to_metric_families

    token = settings.serve.token.get_secret_value() if settings.serve.token else None
    sums: dict[str, dict[float, float]] = {f: {} for f in drift.FEATURES}
    for url in params.serving_metrics:
        r = requests.get(url, headers={"Authorization": f"Bearer {token}"} if token else {}, timeout=30)
        r.raise_for_status()
        for family in text_string_to_metric_families(r.text):
            for s in family.samples:
                for f, m in metric.items():
                    if s.name == m and s.labels.get("domain") == domain:
                        le = float(s.labels["le"])
                        sums[f][le] = sums[f].get(le, 0.0) + s.value  # Prometheus' sum over replicas
    out = {f: drift.counts_from_cumulative([v[k] for k in sorted(v)]) for f, v in sums.items() if v}
    return out, f"{len(params.serving_metrics)} replica(s)' /metrics"


def check_drift(domain: str, params: MonitorParams, settings: Settings, check_dir: str) -> dict:
    """PSI per feature: the current store, and the served contexts, against the champion's training data."""
    from store.canonical import read_store

    registry.configure(settings)
    name = registry.forecaster_name(domain)
    champion = registry.alias_version(name, "champion")
    data_version = registry.version_tags(name, champion).get("data_version") if champion else None
    ref_dir, ref_note = _reference_store(domain, settings, data_version)
    out = {"domain": domain, "champion": champion, "reference": ref_note, "drifted": [], "tables": {}}
    if ref_dir is None:
        return out
    facts = registry.domain_facts(domain)
    seasons = _seasons(settings.store_dir(domain), facts)
    season = (
        int(pd.Series(list(seasons.values())).mode().iloc[0])
        if isinstance(seasons, dict) and seasons
        else int(seasons or 1)
    )
    reference = drift.features_frame(read_store(ref_dir)[0], season, params.window)
    current_frame, meta = read_store(settings.store_dir(domain))
    current = drift.features_frame(current_frame, season, params.window)
    folder = Path(check_dir)
    folder.mkdir(parents=True, exist_ok=True)
    tables = {"store": drift.drift_table(reference, current, params.psi_threshold)}
    out["data_version"], out["reference_version"] = meta.get("md5"), data_version
    if params.serving_metrics or params.prometheus_url:
        try:
            counts, where = _serving_counts(domain, params, settings)
        except Exception as e:  # noqa: BLE001 - a replica down must not stop the data's check
            counts, where = {}, f"unreadable ({type(e).__name__}: {e})"
        out["serving_source"] = where
        served = int(max((c.sum() for c in counts.values()), default=0))
        if served < params.min_series:
            run_logger().info(
                "monitor %s: %d served contexts in %s, fewer than monitor.min_series (%d): serving drift not judged",
                domain,
                served,
                where,
                params.min_series,
            )
        if counts:
            tables["serving"] = drift.drift_table(reference, current.iloc[:0], params.psi_threshold, counts)
    for data, table in tables.items():
        table.to_csv(folder / f"drift_{data}.csv")
        out["tables"][data] = {
            f: {k: (None if isinstance(v, float) and not np.isfinite(v) else v) for k, v in row.items()}
            for f, row in table.to_dict(orient="index").items()
        }
        enough = (table["n_reference"] >= params.min_series) & (table["n_current"] >= params.min_series)
        for feature, row in table[table["drifted"] & enough].iterrows():
            out["drifted"].append(
                f"{feature} of the {'served contexts' if data == 'serving' else 'new data'} has "
                f"drifted: PSI {row['psi']:.2f} > {params.psi_threshold:g} against {ref_note}"
            )
    return out


def log_monitor(
    domain: str, accuracy: dict, drifted: dict, params: MonitorParams, settings: Settings, check_dir: str
) -> dict:
    """MLflow run, the verdict on forecaster-<domain>'s tags, a Prefect artifact; then the ledger."""
    from prefect.artifacts import create_markdown_artifact

    from reports.onboarding import artifact_key

    reasons = accuracy["degraded"] + drifted["drifted"]
    checked_at = time.time()
    verdict = {
        "domain": domain,
        "degraded": bool(reasons),
        "reasons": reasons,
        "checked_at": checked_at,
        "points": accuracy["points"],
        "waiting": accuracy["waiting"],
        "origins": accuracy["origins"],
        "champion": drifted.get("champion"),
        "data_version": accuracy.get("data_version"),
        "realized": [
            {
                k: _plain(v)
                for k, v in r.items()
                if k
                in (
                    "model_version",
                    "family",
                    "points",
                    "MASE",
                    "val_MASE",
                    "naive_MASE",
                    "sCRPS",
                    "val_sCRPS",
                    "naive_sCRPS",
                    "coverage",
                    "val_coverage",
                )
            }
            for r in accuracy.get("table") or []
        ],
    }
    registry.use_experiment("monitor", settings)
    stamp = datetime.fromtimestamp(checked_at, timezone.utc).strftime("%Y-%m-%dT%H%M%SZ")
    table = pd.DataFrame(accuracy.get("table") or [])
    with mlflow.start_run(run_name=f"monitor-{domain}-{stamp}") as run:
        mlflow.log_params(
            {
                "domain": domain,
                "champion": drifted.get("champion"),
                "forecasts": accuracy["forecasts"],
                "degraded_ratio": params.degraded_ratio,
                "ratio_metrics": ",".join(params.ratio_metrics),
                "psi_threshold": params.psi_threshold,
                "window": params.window,
                "min_points": params.min_points,
                "drift_reference": drifted.get("reference"),
            }
        )
        metrics = {
            "points_scored": accuracy["points"],
            "points_waiting": accuracy["waiting"],
            "origins_scored": len(accuracy["origins"]),
            "degraded": float(bool(reasons)),
        }
        for _, row in table.iterrows():  # one set per model version that made the scored forecasts
            tag = f"v{row['model_version']}"
            for metric in realized.METRICS:
                metrics[f"{metric}_{tag}"] = row[metric]
                metrics[f"val_{metric}_{tag}"] = row[f"val_{metric}"]
                if f"{metric}_ratio" in row:
                    metrics[f"{metric}_ratio_{tag}"] = row[f"{metric}_ratio"]
            for key in ("naive_MASE", "MASE_vs_naive", "naive_sCRPS", "sCRPS_vs_naive"):
                metrics[f"{key}_{tag}"] = row[key]
        for data, features in drifted["tables"].items():
            for feature, row in features.items():
                metrics[f"psi_{data}_{feature}"] = row["psi"]
        mlflow.log_metrics({k: float(v) for k, v in metrics.items() if v is not None and np.isfinite(float(v))})
        if accuracy.get("per_step"):
            steps = pd.read_csv(accuracy["per_step"])
            for (v, _), g in steps.groupby(["model_version", "family"]):
                for _, r in g.iterrows():  # MLflow's charts draw these against the step
                    mlflow.log_metrics(
                        {
                            f"step_MASE_v{v}": float(r["MASE"]),
                            f"step_sCRPS_v{v}": float(r["sCRPS"]),
                            f"step_coverage_v{v}": float(r["coverage"]),
                        },
                        step=int(r["step"]),
                    )
        Path(check_dir).mkdir(parents=True, exist_ok=True)
        (Path(check_dir) / "verdict.json").write_text(json.dumps(verdict, indent=2, default=str))
        mlflow.log_artifacts(check_dir, artifact_path="check")
        note = (
            f"**degraded**: {'; '.join(reasons)}"
            if reasons
            else f"healthy: {accuracy['points']} forecast points scored, no drift past PSI {params.psi_threshold:g}"
        )
        mlflow.set_tags(
            {
                "domain": domain,
                "degraded": str(bool(reasons)).lower(),
                "reason": "; ".join(reasons)[:4900],
                "data_version": accuracy.get("data_version") or "",
                "git_commit": registry.git_commit(),
                registry.NOTE: note,
            }
        )
    verdict["mlflow_run_id"] = run.info.run_id
    _tag_verdict(domain, verdict, table, drifted, params)
    try:
        create_markdown_artifact(
            key=artifact_key("monitor", domain),
            description=f"monitor check of {domain}",
            markdown=monitor_report(verdict, table, drifted, settings.tracking_uri, run),
        )
    except Exception:  # noqa: BLE001 - outside a flow run there is nowhere to publish
        pass
    if accuracy["points"]:
        _add_to_ledger(domain, settings, accuracy["points_file"])  # after the run: a crash before re-scores
    clean_check_dir(check_dir)  # logged to MLflow; the ledger holds the points
    return verdict


def _plain(v):
    """A JSON-able Python value (numpy scalars unwrapped, NaN as None)."""
    v = v.item() if hasattr(v, "item") else v
    return None if isinstance(v, float) and not np.isfinite(v) else v


def _tag_verdict(domain: str, verdict: dict, table: pd.DataFrame, drifted: dict, params: MonitorParams) -> None:
    """The verdict on forecaster-<domain> (``monitor.*``): every server re-exports it to Prometheus."""
    client = mlflow.MlflowClient()
    name = registry.forecaster_name(domain)
    tags = {
        "monitor.checked_at": f"{verdict['checked_at']:.0f}",
        "monitor.degraded": str(int(verdict["degraded"])),
        "monitor.reason": "; ".join(verdict["reasons"])[:4900] or "none",
        "monitor.psi_threshold": f"{params.psi_threshold:g}",
    }
    if not table.empty:
        current = table[table["model_version"].astype(str) == str(verdict.get("champion"))]
        row = (current if not current.empty else table).sort_values("points").iloc[-1]
        for metric in ("MASE", "sCRPS", "sMAPE"):
            if np.isfinite(row.get(f"{metric}_ratio", np.nan)):
                tags[f"monitor.ratio.{metric}"] = f"{row[f'{metric}_ratio']:.4f}"
        for metric in ("MASE", "sCRPS"):
            if np.isfinite(row.get(f"{metric}_vs_naive", np.nan)):
                tags[f"monitor.vs_naive.{metric}"] = f"{row[f'{metric}_vs_naive']:.4f}"
        tags["monitor.coverage"] = f"{row['coverage']:.4f}"
        tags["monitor.scored_at"] = tags["monitor.checked_at"]
    for data, features in drifted["tables"].items():
        for feature, row in features.items():
            if row["psi"] is not None:
                tags[f"monitor.psi.{data}.{feature}"] = f"{row['psi']:.4f}"
    for key, value in tags.items():
        client.set_registered_model_tag(name, key, value)
    # drift figures this check did not measure are not current; realized ones stay until new points are scored
    for key in client.get_registered_model(name).tags:
        if key.startswith("monitor.psi.") and key not in tags:
            client.delete_registered_model_tag(name, key)


def _add_to_ledger(domain: str, settings: Settings, points_file: str) -> None:
    folder = settings.monitor_dir(domain)
    path = folder / LEDGER
    new = pd.read_parquet(points_file)
    with exclusive(path, f"updating the monitor ledger of {domain}"):
        old = pd.read_parquet(path) if path.is_file() else None
        both = pd.concat([old, new], ignore_index=True) if old is not None else new
        both = both.drop_duplicates(subset=realized.KEY, keep="first")  # never a point twice
        tmp = path.with_name(f".{LEDGER}.{os.getpid()}")
        both.to_parquet(tmp, index=False)
        os.replace(tmp, path)


def react(domain: str, verdict: dict, params: MonitorParams, settings: Settings) -> dict:
    """``tsfm.domain.degraded`` when the check found reasons; a drift already announced for the same data
    and champion is not announced again (re-onboarding ran, or its gate kept the champion)."""
    out = {"emitted": None, "reasons": verdict["reasons"]}
    if not verdict["degraded"] or not params.emit_events:
        return out
    path = settings.monitor_dir(domain) / EVENTS
    seen = json.loads(path.read_text()) if path.is_file() else {}
    drift_key = f"{verdict.get('data_version')}/{verdict.get('champion')}"
    accuracy = [r for r in verdict["reasons"] if r.startswith("realized")]
    new_drift = [r for r in verdict["reasons"] if not r.startswith("realized") and seen.get(r) != drift_key]
    if not accuracy and not new_drift:
        run_logger().info("monitor %s: drift already announced for this data and champion", domain)
        return out
    reasons = accuracy + new_drift
    out["emitted"] = emit(
        DOMAIN_DEGRADED,
        domain_resource(domain),
        domain,
        {
            "domain": domain,
            "reasons": reasons,
            "reason": "; ".join(reasons),
            "champion": verdict.get("champion"),
            "mlflow_run_id": verdict.get("mlflow_run_id"),
            "data_version": verdict.get("data_version"),
        },
    )
    seen.update({r: drift_key for r in new_drift})
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(seen, indent=2))
    run_logger().warning("monitor %s: %s emitted: %s", domain, DOMAIN_DEGRADED, "; ".join(reasons))
    return out


def new_check_dir(domain: str, settings: Settings) -> str:
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
    return str(settings.monitor_dir(domain) / "checks" / stamp)


def clean_check_dir(check_dir: str) -> None:
    shutil.rmtree(check_dir, ignore_errors=True)


check_accuracy_task = task(check_accuracy, name="realized-accuracy", **remote_retries())
check_drift_task = task(check_drift, name="drift", **remote_retries())
log_monitor_task = task(log_monitor, name="log-monitor", **remote_retries())
react_task = task(react, name="react")
