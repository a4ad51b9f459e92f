"""Score tables: one row per model, the columns every report shows.

MASE, sCRPS, sMAPE are means over series (the M competitions; NaN series skipped);
sCRPS_pooled is the dataset-level value (GIFT-Eval); MASE_rel and sCRPS_rel are geometric
means over series of each model's ratio to seasonal naive. The metrics themselves are
``models.metrics``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd

from models.metrics import geometric_mean_ratio, nan_mean, per_series_metrics, scaled_crps_parts
from models.splits import SeriesSplit

# (contexts, series ids, horizon) -> quantiles [windows, horizon, levels]
Predict = Callable[[list[np.ndarray], list[str], int], np.ndarray]


def per_series_frame(
    forecasts: dict[str, np.ndarray],
    y: np.ndarray,
    insample: Sequence[np.ndarray],
    season_length: int | Sequence[int],
    ids: Sequence[str] | None = None,
) -> pd.DataFrame:
    """One row per (series, model): MASE, sCRPS, sMAPE and the pooled-CRPS parts
    ``crps_num``/``crps_den``. ``forecasts``: model -> quantiles [N, H, Q] (truth ``y`` [N, H])."""
    ids = list(ids) if ids is not None else [str(i) for i in range(len(y))]
    frames = []
    for name, q in forecasts.items():
        num, den = scaled_crps_parts(y, q)
        frames.append(
            pd.DataFrame(
                {
                    "instance": ids,
                    "model": name,
                    **per_series_metrics(q, y, insample, season_length),
                    "crps_num": num,
                    "crps_den": den,
                }
            )
        )
    return pd.concat(frames, ignore_index=True)


def evaluate(
    forecasts: dict[str, np.ndarray],
    y: np.ndarray,
    insample: Sequence[np.ndarray],
    season_length: int | Sequence[int],
    baseline: str = "seasonal_naive",
) -> pd.DataFrame:
    """One row per model (index ``model``), in the order of ``forecasts``."""
    if baseline not in forecasts:
        raise ValueError(f"baseline {baseline!r} is not among the forecasts {sorted(forecasts)}")
    return summarize(per_series_frame(forecasts, y, insample, season_length), baseline)


def summarize(per_series: pd.DataFrame, baseline: str = "seasonal_naive", key: str = "instance") -> pd.DataFrame:
    """The columns of ``evaluate`` from a long per-series frame.

    ``per_series`` has one row per (``key``, ``model``) with MASE, sCRPS, sMAPE and the
    pooled-CRPS parts ``crps_num``/``crps_den`` (scaled_crps_parts). Series with different
    horizons and season lengths can be pooled this way. Rows are ordered as models first appear.
    """
    models = list(dict.fromkeys(per_series["model"]))
    if baseline not in models:
        raise ValueError(f"baseline {baseline!r} is not among the models {models}")
    wide = {m: g.set_index(key) for m, g in per_series.groupby("model", sort=False)}
    base = wide[baseline]
    rows = []
    for name in models:
        m = wide[name]
        b = base.reindex(m.index)
        den = m["crps_den"].to_numpy(np.float64).sum()  # numpy sums: a NaN forecast stays NaN
        rows.append(
            {
                "model": name,
                "MASE": nan_mean(m["MASE"]),
                "sCRPS": nan_mean(m["sCRPS"]),
                "sMAPE": nan_mean(m["sMAPE"]),
                "sCRPS_pooled": float(m["crps_num"].to_numpy(np.float64).sum() / den) if den > 0 else float("nan"),
                "MASE_rel": geometric_mean_ratio(m["MASE"].to_numpy(), b["MASE"].to_numpy()),
                "sCRPS_rel": geometric_mean_ratio(m["sCRPS"].to_numpy(), b["sCRPS"].to_numpy()),
                **({"coverage": float(np.nanmean(m["coverage"]))} if "coverage" in m else {}),
            }
        )
    return pd.DataFrame(rows).set_index("model")


def teacher_gain_kept(table: pd.DataFrame, metric: str = "sCRPS") -> float | None:
    """Share of the kNN teacher's gain over the frozen backbone that the fused model keeps:
    (backbone - fused) / (backbone - teacher) on ``metric``; None where the teacher does not beat
    the backbone (nothing to keep) or a row is missing. 1 = all of it, 0 = none, < 0 = worse."""
    try:
        backbone, teacher, fused = (float(table.loc[m, metric]) for m in ("backbone", "teacher", "fused"))
    except KeyError:
        return None
    if not np.isfinite([backbone, teacher, fused]).all() or teacher >= backbone:
        return None
    return (backbone - fused) / (backbone - teacher)


def spread(n: int, at_most: int | None) -> np.ndarray:
    """Indices of ``n`` windows: all of them, or ``at_most`` spread evenly (``validation_scrps``'s choice)."""
    return np.arange(n) if at_most is None else np.unique(np.linspace(0, n - 1, min(n, at_most)).round().astype(int))


def validation_scrps(split: SeriesSplit, predict: Predict, at_most: int | None = None) -> np.ndarray:
    """Scaled CRPS per validation window of ``split`` (every window, or ``at_most`` of them spread evenly):
    the one way a model outside an onboarding's own evaluation is scored on validation, used by the
    backbone gate and by the domain gate re-scoring a champion on a challenger's windows."""
    w = split.windows("val")
    pick = spread(len(w), at_most)
    quantiles = predict([w.contexts[i] for i in pick], [split.ids[w.series[i]] for i in pick], split.horizon)
    insample = [split.train[w.series[i]] for i in pick]
    return np.asarray(per_series_metrics(quantiles, w.truth[pick], insample, split.seasons[w.series[pick]])["sCRPS"])
