"""Cross-domain comparison of onboarding results (issue 4's table), from the result folders
that ``tsfm onboard`` writes (summary.json, test_metrics.csv, test_per_series.csv).

- ``comparison_table``: one row per (domain, model) on the test split, with latency.
- ``pooled_table``: per-series metrics pooled over several domains (M3 overall = its six
  categories) and the per-domain average of each model's sCRPS relative to the backbone.
- ``forgetting_table``: the cost of parametric adaptation: each domain's fully fine-tuned
  backbone against the untouched one on every OTHER domain's test split.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from models.backbone import load_backbone
from models.inference import batch_forecast
from models.onboarding import pad_right
from models.splits import split_frame, to_arrays
from tasks.ingest import read_store, split_horizon
from tasks.metrics import per_series_metrics

MODEL_ORDER = ("seasonal_naive", "auto_ets", "theta", "backbone", "teacher", "finetuned", "fused")
COLUMNS = ("MASE", "sCRPS", "sMAPE", "ms_per_series")


def _summary(result_dir: str | Path) -> dict:
    return json.loads((Path(result_dir) / "summary.json").read_text())


def _ordered(models) -> list[str]:
    return sorted(models, key=lambda m: (MODEL_ORDER.index(m) if m in MODEL_ORDER else len(MODEL_ORDER), m))


def comparison_table(result_dirs: list[str | Path], part: str = "test") -> pd.DataFrame:
    """Rows (domain, model), columns MASE, sCRPS, sMAPE, ms_per_series."""
    frames = []
    for d in result_dirs:
        t = pd.read_csv(Path(d) / f"{part}_metrics.csv", index_col=0)
        t = t.loc[_ordered(t.index), [c for c in COLUMNS if c in t.columns]]
        frames.append(t.assign(domain=_summary(d)["domain"]).reset_index())
    return pd.concat(frames).set_index(["domain", "model"])


def pooled_table(result_dirs: list[str | Path], part: str = "test") -> pd.DataFrame:
    """Mean per-series MASE, sCRPS, sMAPE over all series of the given domains, per model."""
    per = pd.concat([pd.read_csv(Path(d) / f"{part}_per_series.csv") for d in result_dirs])
    table = per.groupby("model")[["MASE", "sCRPS", "sMAPE"]].mean()
    table["series"] = per.groupby("model").size()
    return table.loc[_ordered(table.index)]


def relative_to_backbone(comparison: pd.DataFrame, metric: str = "sCRPS") -> pd.DataFrame:
    """metric(model) / metric(backbone) per domain, and the mean over domains (last row)."""
    wide = comparison[metric].unstack("model")
    rel = wide.div(wide["backbone"], axis=0)
    rel.loc["mean over domains"] = rel.mean()
    return rel[_ordered(rel.columns)]


def _test_windows(store_dir: str) -> tuple[list[str], list[np.ndarray], np.ndarray, list[np.ndarray], np.ndarray]:
    """(ids, contexts = train + val, truth [N, H] NaN-padded, train parts, horizons) of a store's test split."""
    df, meta = read_store(Path(store_dir))
    horizon = split_horizon(store_dir, meta)
    split = split_frame(df, horizon)
    train, val, test = to_arrays(split.train), to_arrays(split.val), to_arrays(split.test)
    ids = [u for u in sorted(test) if u in train and u in val]
    hs = np.array([horizon[u] if isinstance(horizon, dict) else horizon for u in ids], dtype=np.int64)
    contexts = [np.concatenate([train[u], val[u]]) for u in ids]
    return ids, contexts, pad_right([test[u] for u in ids], int(hs.max())), [train[u] for u in ids], hs


def forgetting_table(result_dirs: list[str | Path], context_length: int, batch_size: int = 256) -> pd.DataFrame:
    """For each domain whose result folder holds a fine-tuned backbone: mean test sCRPS and MASE
    of the untouched backbone and of the fine-tuned one on every other domain, and their ratio."""
    summaries = {str(d): _summary(d) for d in result_dirs}
    stores = {s["domain"]: s["store"] for s in summaries.values()}
    seasons = {}
    for d, s in summaries.items():
        with np.load(Path(d) / "forecasts.npz") as z:
            seasons[s["domain"]] = dict(zip(s["series"], z["seasons"].tolist()))
    cache: dict[str, tuple] = {}
    base_scores: dict[str, dict[str, float]] = {}  # backbone version/domain -> scores
    rows = []
    for d, s in summaries.items():
        tuned_dir = Path(d) / "finetuned" / "backbone"
        if not tuned_dir.is_dir():
            continue
        original = load_backbone(Path(d) / "fused" / "backbone")
        tuned = load_backbone(tuned_dir)
        for other, store in stores.items():
            if other == s["domain"]:
                continue
            if other not in cache:
                cache[other] = _test_windows(store)
            ids, contexts, truth, train, hs = cache[other]
            season = [seasons[other].get(u, 1) for u in ids]
            h = truth.shape[1]

            def score(model) -> dict[str, float]:
                q = batch_forecast(model, contexts, h, context_length, batch_size)["quantiles"]
                m = per_series_metrics(q, truth, train, season)
                return {"sCRPS": float(np.nanmean(m["sCRPS"])), "MASE": float(np.nanmean(m["MASE"]))}

            key = f"{s['backbone_version']}/{other}"  # domains onboarded on one backbone share its scores
            if key not in base_scores:
                base_scores[key] = score(original)
            base = base_scores[key]
            tuned_scores = score(tuned)
            rows.append({
                "finetuned_on": s["domain"], "evaluated_on": other,
                "backbone_sCRPS": base["sCRPS"], "finetuned_sCRPS": tuned_scores["sCRPS"],
                "sCRPS_ratio": tuned_scores["sCRPS"] / base["sCRPS"],
                "backbone_MASE": base["MASE"], "finetuned_MASE": tuned_scores["MASE"],
                "MASE_ratio": tuned_scores["MASE"] / base["MASE"],
            })
    return pd.DataFrame(rows)
