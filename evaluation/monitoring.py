"""One monitor check of one domain: realized accuracy of the stored forecasts the store's actuals now
cover, drift of the data and of the served contexts from the champion's training data, the verdict
built from both, and the ledger of scored points.

The ledger ``<state_dir>/monitor/<domain>/scored.parquet`` holds every scored point, so each point is
scored once; it is written after the check's MLflow run (a crash before it re-scores, never double-counts).
Reading the batch partitions (``batch/``) and emitting events are the monitor task's; the MLflow run and
the registry tags are ``tracking/monitor_runs.py``'s.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, cast

import numpy as np
import pandas as pd

from evaluation import drift, realized
from infra.errors import InputError, NotFoundError
from infra.files import exclusive
from infra.logs import run_logger
from infra.settings import MonitorParams, Settings
from reports.monitor import realized_plots
from tracking import registry

LEDGER = "scored.parquet"
# the realized figures a verdict keeps of each scored model version
VERDICT_COLUMNS = (
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


def ledger(domain: str, settings: Settings) -> pd.DataFrame | None:
    """The points of the domain scored by earlier checks (None before the first)."""
    path = settings.monitor_dir(domain) / LEDGER
    return pd.read_parquet(path) if path.is_file() else None


def add_to_ledger(domain: str, settings: Settings, points_file: str) -> None:
    """Add a check's scored points to the ledger, each point once."""
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


def seasons(store_dir: Path, facts: Mapping[str, str]) -> int | dict[str, int]:
    """Each series' season (or one for all): the domain's remembered ``season_length``, else the store's."""
    from store.canonical import series_seasons

    given = str(facts.get("season_length") or "")
    return series_seasons(store_dir, int(given) if given.isdigit() else None)


def validation(name: str, versions: Iterable[object]) -> dict[str, dict[str, float]]:
    """Per model version of ``name``, the ``val_*`` figures its registry tags hold."""
    out = {}
    for v in sorted({str(x) for x in versions}):
        try:
            tags = registry.version_tags(name, v)
        except Exception:  # noqa: BLE001 - a deleted version: no validation figures to compare with
            tags = {}
        out[v] = {m: float(tags[f"val_{m}"]) for m in realized.METRICS if tags.get(f"val_{m}") not in (None, "")}
    return out


def read_actuals(domain: str, settings: Settings) -> tuple[pd.DataFrame, dict[str, Any]]:
    """The domain's store (series frame, meta); NotFoundError when it was never ingested."""
    from store.canonical import read_store

    store_dir = settings.store_dir(domain)
    if not (store_dir / "meta.json").is_file():
        raise NotFoundError(f"no store for {domain} under {store_dir}: ingest it first (tsfm ingest --domain {domain})")
    return read_store(store_dir)


def accuracy_reasons(judged: pd.DataFrame, params: MonitorParams) -> list[str]:
    """Why the judged rows (model versions with enough points) make the domain degraded, if they do."""
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
    return reasons


def realized_accuracy(
    domain: str,
    actuals: pd.DataFrame,
    meta: Mapping[str, Any],
    root: str,
    stored: pd.DataFrame,
    params: MonitorParams,
    settings: Settings,
    check_dir: str,
) -> dict[str, Any]:
    """Score the due points of the ``stored`` forecasts (read from ``root``) not scored before; tables and
    points into ``check_dir``."""
    log = run_logger()
    store_dir = settings.store_dir(domain)
    out: dict[str, Any] = {
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
    due, waiting = realized.due_points(stored, actuals, ledger(domain, settings))
    out["waiting"] = int(len(waiting))
    if due.empty:
        log.info(
            "monitor %s: no stored forecast point is covered by new actuals (%d wait for theirs)", domain, len(waiting)
        )
        return out
    registry.configure(settings)
    facts = registry.domain_facts(domain)
    points = realized.score_points(due, actuals, seasons(store_dir, facts))
    name = registry.forecaster_name(domain)
    table = realized.against_validation(realized.summary(points), validation(name, points["model_version"]))
    steps = realized.per_step(points)
    folder = Path(check_dir)
    folder.mkdir(parents=True, exist_ok=True)
    points.to_parquet(folder / "points.parquet", index=False)
    table.to_csv(folder / "realized.csv", index=False)
    steps.to_csv(folder / "per_step.csv", index=False)
    realized_plots(points, actuals, steps, folder, domain)
    judged = table[table["points"] >= params.min_points]
    reasons = accuracy_reasons(judged, params)
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


def reference_store(domain: str, settings: Settings, data_version: str | None) -> tuple[Path | None, str]:
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


def _serving_get(url: str, timeout: float, token: str | None = None, **query: str) -> Any:
    """GET a replica's /metrics (``token``: the serving token) or a Prometheus API URL; raises on a failure."""
    import requests

    r = requests.get(
        url, params=query or None, headers={"Authorization": f"Bearer {token}"} if token else {}, timeout=timeout
    )
    r.raise_for_status()
    return r


def _serving_token(settings: Settings) -> str | None:
    return settings.serve.token.get_secret_value() if settings.serve.token else None


def _why_unreadable(e: Exception) -> str:
    import requests

    if isinstance(
        e, (requests.exceptions.MissingSchema, requests.exceptions.InvalidSchema, requests.exceptions.InvalidURL)
    ):
        return "not an http(s) URL"
    if isinstance(e, requests.exceptions.HTTPError) and e.response is not None:
        return f"it answered HTTP {e.response.status_code} {e.response.reason}"
    if isinstance(e, requests.exceptions.Timeout):
        return "no answer in time"
    if isinstance(e, requests.exceptions.ConnectionError):
        return "cannot connect (nothing listening there, or the host is unreachable)"
    return f"{type(e).__name__}: {e}"


def check_serving_sources(params: MonitorParams, settings: Settings, timeout: float = 10.0) -> None:
    """Each serving-metrics URL given (``--serving-metrics``, ``--prometheus-url`` or the settings) read
    once, before a check starts: one that cannot be read is an ``InputError`` naming it, not a healthy
    verdict without serving drift. (During a check a replica down only skips serving drift: ``drift_check``.)"""
    if params.prometheus_url:  # its query API, without the replicas' token
        option = "--prometheus-url (monitor.prometheus_url)"
        checks: list[tuple[str, str, str | None, dict[str, str]]] = [
            (params.prometheus_url, f"{params.prometheus_url.rstrip('/')}/api/v1/query", None, {"query": "1"})
        ]
    else:
        option, token = "--serving-metrics (monitor.serving_metrics)", _serving_token(settings)
        checks = [(url, url, token, {}) for url in params.serving_metrics]
    for given, url, token, query in checks:
        try:
            _serving_get(url, timeout, token, **query)
        except Exception as e:  # noqa: BLE001 - any failure to read it is the message
            raise InputError(
                f"cannot read {option} {given}: {_why_unreadable(e)}; give the URL of a running server "
                "(a replica's http://host:port/metrics, or Prometheus' http://host:9090), or leave the option out"
            ) from None


def serving_counts(
    domain: str, params: MonitorParams, settings: Settings, feature_metrics: Mapping[str, str]
) -> tuple[dict[str, np.ndarray], str]:
    """Per feature, the bucket counts of the contexts the servers received, summed over replicas.

    ``feature_metrics`` names each feature's histogram as the servers export it (``serving.metrics``)."""
    metric = {f: f"{name}_bucket" for f, name in feature_metrics.items()}
    if params.prometheus_url:
        out = {}
        for f, m in metric.items():
            q = f'sum by (le) (increase({m}{{domain="{domain}"}}[{params.serving_range}]))'
            r = _serving_get(f"{params.prometheus_url.rstrip('/')}/api/v1/query", 30, query=q)
            rows = {float(x["metric"]["le"]): float(x["value"][1]) for x in r.json()["data"]["result"]}
            if rows:
                out[f] = drift.counts_from_cumulative([rows[k] for k in sorted(rows)])
        return out, f"Prometheus {params.prometheus_url}, last {params.serving_range}"
    from prometheus_client.parser import text_string_to_metric_families

    token = _serving_token(settings)
    sums: dict[str, dict[float, float]] = {f: {} for f in drift.FEATURES}
    for url in params.serving_metrics:
        r = _serving_get(url, 30, token)
        for family in text_string_to_metric_families(r.text):
            for s in family.samples:
                for f, m in metric.items():
                    if s.name == m and s.labels.get("domain") == domain:
                        le = float(s.labels["le"])
                        sums[f][le] = sums[f].get(le, 0.0) + s.value  # Prometheus' sum over replicas
    out = {f: drift.counts_from_cumulative([v[k] for k in sorted(v)]) for f, v in sums.items() if v}
    return out, f"{len(params.serving_metrics)} replica(s)' /metrics"


def drift_check(
    domain: str, params: MonitorParams, settings: Settings, check_dir: str, feature_metrics: Mapping[str, str]
) -> dict[str, Any]:
    """PSI per feature: the current store, and the served contexts, against the champion's training data."""
    from store.canonical import read_store

    registry.configure(settings)
    name = registry.forecaster_name(domain)
    champion = registry.alias_version(name, "champion")
    data_version = registry.version_tags(name, champion).get("data_version") if champion else None
    ref_dir, ref_note = reference_store(domain, settings, data_version)
    out: dict[str, Any] = {"domain": domain, "champion": champion, "reference": ref_note, "drifted": [], "tables": {}}
    if ref_dir is None:
        return out
    facts = registry.domain_facts(domain)
    found = seasons(settings.store_dir(domain), facts)
    if isinstance(found, dict):
        season = int(pd.Series(list(found.values())).mode().iloc[0]) if found else 1
    else:
        season = int(found or 1)
    reference = drift.features_frame(read_store(ref_dir)[0], season, params.window)
    current_frame, meta = read_store(settings.store_dir(domain))
    current = drift.features_frame(current_frame, season, params.window)
    folder = Path(check_dir)
    folder.mkdir(parents=True, exist_ok=True)
    tables = {"store": drift.drift_table(reference, current, params.psi_threshold)}
    out["data_version"], out["reference_version"] = meta.get("md5"), data_version
    if params.serving_metrics or params.prometheus_url:
        try:
            counts, where = serving_counts(domain, params, settings, feature_metrics)
        except Exception as e:  # noqa: BLE001 - a replica down must not stop the data's check
            counts, where = {}, f"unreadable ({type(e).__name__}: {e})"
            run_logger().warning("monitor %s: serving metrics %s: serving drift not judged", domain, where)
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


def plain(v: object) -> object:
    """A JSON-able Python value (numpy scalars unwrapped, NaN as None)."""
    v = cast(Any, v).item() if hasattr(v, "item") else v
    return None if isinstance(v, float) and not np.isfinite(v) else v


def verdict(domain: str, accuracy: Mapping[str, Any], drifted: Mapping[str, Any], checked_at: float) -> dict[str, Any]:
    """The check's verdict: degraded when the accuracy or the drift check found reasons."""
    reasons = accuracy["degraded"] + drifted["drifted"]
    return {
        "domain": domain,
        "degraded": bool(reasons),
        "reasons": reasons,
        "checked_at": checked_at,
        "points": accuracy["points"],
        "waiting": accuracy["waiting"],
        "origins": accuracy["origins"],
        "champion": drifted.get("champion"),
        "data_version": accuracy.get("data_version"),
        "realized": [{k: plain(v) for k, v in r.items() if k in VERDICT_COLUMNS} for r in accuracy.get("table") or []],
    }
