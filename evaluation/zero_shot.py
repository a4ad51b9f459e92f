"""Zero-shot evaluation of a backbone on packaged real data: the test windows, the scoring of
the backbone against the statistical baselines, and the tables (the Prefect tasks that run
it are ``tasks.evaluate``; the markdown report is ``reports.zero_shot``).

Test windows (the test part is the last horizon of a series):
- M3: the official test part of every series, horizons 6/8/18/8 and season lengths
  1/4/12/1 for yearly/quarterly/monthly/other; the forecast sees the official
  training part only.
- vic_elec (half-hourly demand, a day = 48 steps, season 48) and epf_fr_be (hourly
  prices, 24 steps, season 24): the last ``windows`` non-overlapping windows of one
  horizon each (the last one is the test part), each forecast made from every point
  before its window (rolling origin).
The backbone sees at most its context; the statistical baselines are fitted on the
last ``max_history`` points; the MASE scale comes from the whole history.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from evaluation.baselines import baseline_forecasts_with_notes, progress_logger
from evaluation.scores import per_series_frame, summarize
from infra.logs import run_logger
from infra.settings import Settings
from store.sources import ELECTRICITY, M3_CATEGORIES, M3_FREQUENCIES, M3_SEASON, m3_index, m3_names, read_source

BACKBONE = "backbone"  # the backbone's row in the tables
METRICS = ("MASE", "sCRPS", "sMAPE", "sCRPS_pooled", "MASE_rel", "sCRPS_rel")
TAGGED = ("MASE", "sCRPS", "sMAPE", "MASE_rel", "sCRPS_rel")  # on the backbone's model version


# ----------------------------------------------------------------------------- data
@dataclass
class Group:
    """Test windows that share one horizon and season length."""

    dataset: str
    horizon: int
    season: int
    meta: pd.DataFrame  # one row per window: instance, unique_id, category, frequency, window, origin
    histories: list[np.ndarray]  # every point before each window, float64
    y: np.ndarray  # [N, horizon] the window's targets
    n_total: int  # series in the whole dataset (before --max-series)


def dataset_names() -> list[str]:
    return m3_names() + sorted(ELECTRICITY)


def check_datasets(names: list[str]) -> list[str]:
    known = dataset_names()
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ValueError(
            f"unknown dataset(s) {unknown}; available: m3, m3-<category>[-<frequency>] "
            f"(categories {', '.join(M3_CATEGORIES)}), {', '.join(sorted(ELECTRICITY))}"
        )
    return names


def subsample(n: int, max_series: int | None) -> np.ndarray:
    """Indices of at most ``max_series`` of ``n`` items, evenly spaced (deterministic)."""
    if not max_series or max_series >= n:
        return np.arange(n)
    return np.unique(np.linspace(0, n - 1, max_series).round().astype(int))


def _series(frame: pd.DataFrame) -> dict[str, pd.DataFrame]:
    frame = frame.sort_values(["unique_id", "ds"], kind="stable")
    return {str(uid): g for uid, g in frame.groupby("unique_id", sort=False)}


def load_groups(dataset: str, max_series: int | None = None, windows: int = 1) -> list[Group]:
    check_datasets([dataset])
    if dataset in ELECTRICITY:
        return [_electricity_group(dataset, max_series, windows)]
    return _m3_groups(dataset, max_series)


def _m3_groups(dataset: str, max_series: int | None) -> list[Group]:
    series = _series(read_source(f"builtin:{dataset}").frame)
    idx = m3_index()
    idx = idx[idx["sn"].isin(series)].reset_index(drop=True)  # JSON order: yearly, quarterly, ...
    n_total = len(idx)
    idx = idx.iloc[subsample(n_total, max_series)]
    groups = []
    for freq in M3_FREQUENCIES:
        part = idx[idx["frequency"] == freq]
        if part.empty:
            continue
        h = int(part["horizon"].iloc[0])
        assert (part["horizon"] == h).all(), f"M3 {freq}: mixed horizons"
        values = [series[sn]["y"].to_numpy(np.float64) for sn in part["sn"]]
        meta = pd.DataFrame(
            {
                "instance": part["sn"].to_numpy(str),
                "unique_id": part["sn"].to_numpy(str),
                "category": part["category"].to_numpy(),
                "frequency": freq,
                "window": 0,
                "origin": [str(len(v) - h - 1) for v in values],
            }
        )
        groups.append(
            Group(
                dataset, h, M3_SEASON[freq], meta, [v[:-h] for v in values], np.stack([v[-h:] for v in values]), n_total
            )
        )
    return groups


def _electricity_group(dataset: str, max_series: int | None, windows: int) -> Group:
    horizon, season = ELECTRICITY[dataset]
    series = _series(read_source(f"builtin:{dataset}").frame)
    ids = sorted(series)
    rows, histories, truth = [], [], []
    for i in subsample(len(ids), max_series):
        uid = ids[i]
        y = series[uid]["y"].to_numpy(np.float64)
        ds = series[uid]["ds"].to_numpy()
        for k in range(windows - 1, -1, -1):  # oldest window first; window 0 is the test part
            cut = len(y) - (k + 1) * horizon
            if cut < 2 * season + 1:
                continue
            rows.append((f"{uid}/{k}", uid, "", dataset, k, str(pd.Timestamp(ds[cut - 1]))))
            histories.append(y[:cut])
            truth.append(y[cut : cut + horizon])
    if not rows:
        raise ValueError(f"{dataset}: no series is long enough for {windows} window(s) of {horizon}")
    meta = pd.DataFrame(rows, columns=["instance", "unique_id", "category", "frequency", "window", "origin"])
    return Group(dataset, horizon, season, meta, histories, np.stack(truth), len(ids))


def pretrain_sources(data_version: str | None, settings: Settings) -> list[dict[str, Any]]:
    """The backbone's pre-training stores (its ``data_version`` tag, ``domain:md5,...``) with
    the source and horizon each was ingested with: from the store itself when its digest
    matches, else from the configured sources (``verified`` False)."""
    out = []
    for item in (data_version or "").split(","):
        domain, _, digest = item.strip().partition(":")
        if not domain or not digest:
            continue
        meta_file = settings.store_dir(domain) / "meta.json"
        meta = json.loads(meta_file.read_text()) if meta_file.is_file() else {}
        if meta and str(meta.get("md5", "")).startswith(digest):
            out.append(
                {"domain": domain, "source": meta.get("source"), "horizon": int(meta["horizon"]), "verified": True}
            )
        elif domain in settings.sources:
            spec = settings.sources[domain]
            out.append({"domain": domain, "source": spec.source, "horizon": spec.horizon, "verified": False})
        else:
            out.append({"domain": domain, "source": None, "horizon": None, "verified": False})
    return out


def pretrain_overlap(groups: list[Group], sources: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Test points the backbone may have seen in pre-training.

    Pre-training uses the train part of each store: all but the last 2 x (store horizon)
    points of every series. A series of an evaluated window that is also in a builtin
    pre-training source overlaps when that train part reaches into its earliest window.
    Other builtins (M1, tourism, ...) are other collections: no overlap by construction.
    Sources that are not builtins (files, S3) cannot be checked: listed with series None.
    """
    starts: dict[str, int] = {}  # unique_id -> index of its earliest test point
    for g in groups:
        for uid, h in zip(g.meta["unique_id"], g.histories):
            starts[uid] = min(starts.get(uid, len(h)), len(h))
    found = []
    for src in sources:
        source = src.get("source") or ""
        if source.startswith("synthetic:"):
            continue
        name = source.removeprefix("builtin:")
        if source.startswith("builtin:") and name not in dataset_names() and not name.startswith("m3"):
            continue  # another packaged collection than the evaluated ones
        if not source.startswith("builtin:") or name not in dataset_names() or not src.get("horizon"):
            found.append({**src, "series": None, "points": None, "max_points": None})
            continue
        lengths = read_source(source).frame.groupby("unique_id").size()
        seen = {str(uid): int(n) - 2 * int(src["horizon"]) for uid, n in lengths.items()}
        leaks = [seen[uid] - start for uid, start in starts.items() if uid in seen and seen[uid] > start]
        if leaks:
            found.append({**src, "series": len(leaks), "points": int(sum(leaks)), "max_points": int(max(leaks))})
    return found


def effective_context(requested: int, max_context: int, patch_size: int, horizon: int) -> int:
    """The requested context, capped so that context + horizon patches fit in max_context."""
    room = max_context - math.ceil(horizon / patch_size) * patch_size
    if room < 1:
        raise ValueError(f"horizon {horizon} does not fit in the backbone's max_context {max_context}")
    return min(requested, room)


def group_label(g: Group) -> str:
    freq = g.meta["frequency"].iloc[0]
    return g.dataset if freq == g.dataset else f"{g.dataset}/{freq}"


def score_groups(
    groups: list[Group],
    model: Any,
    params: Any,
    backbone: dict[str, Any],
    device: str,
    n_jobs: int,
    pool: Any,
    out: Path,
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """The backbone ``model`` (a PatchBackbone) and the baselines on every group's windows:
    (per-window metrics of each model, run facts: windows, seconds, contexts, fallbacks).
    Draws a fan chart per group into ``out``."""
    import statsforecast.models  # noqa: F401  (imported before any clock starts)

    from models.forecasting.batch import batch_forecast
    from reports.plots import fan_chart

    logger = run_logger()
    seconds: dict[str, float] = {}
    notes: list[str] = []
    contexts: dict[str, int] = {}
    frames = []
    for g in groups:
        label = group_label(g)
        n = len(g.histories)
        ctx = effective_context(backbone["context_length"], backbone["max_context"], backbone["patch_size"], g.horizon)
        contexts[label] = ctx
        started = time.perf_counter()
        q = batch_forecast(model, g.histories, g.horizon, ctx, params.batch_size, device).quantiles
        forecasts = {BACKBONE: q.astype(np.float64)}
        seconds[BACKBONE] = seconds.get(BACKBONE, 0.0) + time.perf_counter() - started
        logger.info(
            "%s: backbone forecast %d window(s), horizon %d, context %d in %.1f s",
            label,
            n,
            g.horizon,
            ctx,
            time.perf_counter() - started,
        )
        fit_on = [h[-params.max_history :] for h in g.histories]
        for baseline in params.baselines:
            started = time.perf_counter()
            fc, model_notes = baseline_forecasts_with_notes(
                fit_on,
                g.horizon,
                g.season,
                models=(baseline,),
                n_jobs=n_jobs,
                progress=progress_logger(label, logger),
                executor=pool,
            )
            forecasts.update(fc)
            notes += [f"{label} {note}" for note in model_notes]
            seconds[baseline] = seconds.get(baseline, 0.0) + time.perf_counter() - started
        # MASE scale: the whole history
        per = per_series_frame(forecasts, g.y, g.histories, g.season, ids=g.meta["instance"])
        meta = pd.concat([g.meta] * len(forecasts), ignore_index=True)
        frames.append(
            meta.assign(
                model=per["model"].to_numpy(),
                horizon=g.horizon,
                season=g.season,
                **{c: per[c].to_numpy() for c in ("MASE", "sCRPS", "sMAPE", "crps_num", "crps_den")},
            )
        )
        fan_chart(
            g.histories,
            g.y,
            forecasts[BACKBONE],
            list(g.meta["instance"]),
            out / f"fan_{label.replace('/', '_')}.png",
            f"{label}: zero-shot backbone forecast",
        )
    per = pd.concat(frames, ignore_index=True)
    return per, {
        "windows": int(per["instance"].nunique()),
        "seconds": seconds,
        "contexts": contexts,
        "n_jobs": n_jobs,
        "device": device,
        "fallbacks": notes,
    }


def scope_name(dataset: str, by: str, value: str) -> str:
    """Metric-name prefix: ``m3``, ``m3.category-micro``, ``m3.frequency-monthly``."""
    return dataset if by == "all" else f"{dataset}.{by}-{value}"


def dataset_table(dataset: str, per: pd.DataFrame) -> pd.DataFrame:
    """Rows (by, slice, model): the whole dataset, then each M3 category and frequency."""
    parts = [("all", dataset, per)]
    for by, order in (("category", M3_CATEGORIES), ("frequency", M3_FREQUENCIES)):
        values = [v for v in order if v in set(per[by])]
        if dataset.startswith("m3") and len(values) > 1:
            parts += [(by, v, per[per[by] == v]) for v in values]
    tables = []
    for by, value, sub in parts:
        t = summarize(sub).reset_index()
        t.insert(0, "n", sub["instance"].nunique())
        t.insert(0, "slice", value)
        t.insert(0, "by", by)
        t.insert(0, "dataset", dataset)
        t.insert(0, "scope", scope_name(dataset, by, value))
        tables.append(t)
    return pd.concat(tables, ignore_index=True)


def tag_label(dataset: str, info: dict[str, Any]) -> str:
    """Tag-name part of a dataset: a subsample says so, so it never passes for the full set."""
    return dataset if info["series"] >= info["series_total"] else f"{dataset}_sample{info['series']}"
