"""Cross-domain comparison of onboarding results (``benchmarks/onboard_domains.py``), read
from the result folders that ``tsfm onboard`` leaves (``models.memory.result``).

- ``comparison_table``: one row per (domain, model) on the test split, with latency.
- ``pooled_table``: per-series metrics pooled over several domains (M3 overall = its six
  categories).
- ``relative_to_backbone``: each model's metric over the backbone's, per domain and on average.
- ``forgetting_table``: the cost of parametric adaptation: each domain's fully fine-tuned
  backbone against the untouched one on every OTHER domain's test split.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from models.backbone.io import load_backbone
from models.forecasting.batch import batch_forecast
from models.memory.result import OnboardingResult
from models.metrics import per_series_metrics

MODEL_ORDER = ("seasonal_naive", "auto_ets", "theta", "mstl", "backbone", "teacher", "finetuned", "fused")
COLUMNS = ("MASE", "sCRPS", "sMAPE", "ms_per_series")


def _ordered(models: Iterable[str]) -> list[str]:
    return sorted(models, key=lambda m: (MODEL_ORDER.index(m) if m in MODEL_ORDER else len(MODEL_ORDER), m))


def comparison_table(result_dirs: list[str | Path], part: str = "test") -> pd.DataFrame:
    """Rows (domain, model), columns MASE, sCRPS, sMAPE, ms_per_series."""
    frames = []
    for d in result_dirs:
        result = OnboardingResult.load(d)
        t = pd.read_csv(result.metrics_file(part), index_col=0)
        t = t.loc[_ordered(t.index), [c for c in COLUMNS if c in t.columns]]
        frames.append(t.assign(domain=result.provenance["domain"]).reset_index())
    return pd.concat(frames).set_index(["domain", "model"])


def pooled_table(result_dirs: list[str | Path], part: str = "test") -> pd.DataFrame:
    """Mean per-series MASE, sCRPS, sMAPE over all series of the given domains, per model."""
    per = pd.concat([pd.read_csv(OnboardingResult.load(d).per_series_file(part)) for d in result_dirs])
    table = per.groupby("model")[["MASE", "sCRPS", "sMAPE"]].mean()
    table["series"] = per.groupby("model").size()
    return table.loc[_ordered(table.index)]


def relative_to_backbone(comparison: pd.DataFrame, metric: str = "sCRPS") -> pd.DataFrame:
    """metric(model) / metric(backbone) per domain, and the mean over domains (last row)."""
    wide = comparison[metric].unstack("model")
    rel = wide.div(wide["backbone"], axis=0)
    rel.loc["mean over domains"] = rel.mean()
    return rel[_ordered(rel.columns)]


def forgetting_table(result_dirs: list[str | Path], context_length: int, batch_size: int = 256) -> pd.DataFrame:
    """For each domain whose result folder holds a fine-tuned backbone: mean test sCRPS and MASE
    of the untouched backbone and of the fine-tuned one on every other domain, and their ratio."""
    results = [OnboardingResult.load(d) for d in result_dirs]
    base_scores: dict[str, dict[str, float]] = {}  # backbone version/domain -> scores
    rows = []
    for result in results:
        tuned_dir = result.model_dir("finetuned")
        if not tuned_dir.is_dir():
            continue
        original = load_backbone(result.model_dir("fused") / "backbone")
        tuned = load_backbone(tuned_dir)
        for other in results:
            if other is result:
                continue
            split = other.split
            contexts, truth = split.history("test"), split.truth("test")

            def score(model: Any) -> dict[str, float]:
                q = batch_forecast(model, contexts, split.horizon, context_length, batch_size).quantiles
                m = per_series_metrics(q, truth, split.train, split.seasons)
                return {"sCRPS": float(np.nanmean(m["sCRPS"])), "MASE": float(np.nanmean(m["MASE"]))}

            domain, other_domain = result.provenance["domain"], other.provenance["domain"]
            key = f"{result.provenance['backbone_version']}/{other_domain}"  # one backbone's scores are shared
            if key not in base_scores:
                base_scores[key] = score(original)
            base, tuned_scores = base_scores[key], score(tuned)
            rows.append(
                {
                    "finetuned_on": domain,
                    "evaluated_on": other_domain,
                    "backbone_sCRPS": base["sCRPS"],
                    "finetuned_sCRPS": tuned_scores["sCRPS"],
                    "sCRPS_ratio": tuned_scores["sCRPS"] / base["sCRPS"],
                    "backbone_MASE": base["MASE"],
                    "finetuned_MASE": tuned_scores["MASE"],
                    "MASE_ratio": tuned_scores["MASE"] / base["MASE"],
                }
            )
    return pd.DataFrame(rows)
