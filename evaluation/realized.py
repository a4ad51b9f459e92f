"""Realized accuracy: stored batch forecasts scored against the actuals that arrived after them.

A forecast point is ``(origin, unique_id, ds)`` of a batch partition (``batch/``); it is *due* once
the domain's store holds a value for its ``(unique_id, ds)``. Each due point is scored once
(the caller keeps a ledger of the points already scored); points no actual covers yet wait.

The figures are those of validation (``models.metrics``), so the two can be compared:
- per forecast window (one origin of one series, over its covered steps): MASE (scaled by the
  seasonal-naive in-sample error of the history up to the forecast's ``last_ds``), sCRPS
  (sum of 2 x pinball over the levels' mean / sum |y|), sMAPE and 10-90% coverage; a table's row is
  the mean over windows, as validation's is the mean over its windows;
- per forecast step: the same pooled over every window (sCRPS as sum / sum).
Beside each, seasonal naive's MASE and sCRPS on the same points, forecast from the same history
(``naive_MASE``, ``naive_sCRPS``, ``*_vs_naive``): whether the served forecasts beat the baseline every
planner already has.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from models.metrics import MEDIAN, QUANTILES

KEY = ["origin", "unique_id", "ds"]
QUANTILE_COLUMNS = [str(q) for q in QUANTILES]  # "0.1" .. "0.9", as batch partitions name them
POINT = "0.5"  # the median is the point forecast (as on validation)
GROUP = ["model_version", "family"]
METRICS = ("MASE", "sCRPS", "sMAPE", "coverage")


def _comparable(forecast_ds: pd.Series, actual_ds: pd.Series) -> tuple[pd.Series, pd.Series]:
    """Both ``ds`` columns in one type: timestamps (naive UTC) or integers for integer-step domains."""

    def as_time(s: pd.Series) -> pd.Series:
        t = pd.to_datetime(s)
        return t.dt.tz_convert("UTC").dt.tz_localize(None) if t.dt.tz is not None else t

    if pd.api.types.is_numeric_dtype(forecast_ds) and pd.api.types.is_numeric_dtype(actual_ds):
        return forecast_ds.astype("int64"), actual_ds.astype("int64")
    return as_time(forecast_ds).astype("datetime64[ns]"), as_time(actual_ds).astype("datetime64[ns]")


def due_points(
    forecasts: pd.DataFrame, actuals: pd.DataFrame, scored: pd.DataFrame | None = None
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Split the forecast points not scored yet into (due: with ``y`` and ``step``, waiting).

    ``forecasts``: batch rows (unique_id, ds, quantiles, model_version, family, last_ds, origin);
    ``actuals``: the store (unique_id, ds, y); ``scored``: the ledger's KEY columns."""
    f = forecasts.copy()
    f["unique_id"] = f["unique_id"].astype(str)
    f["origin"] = pd.to_datetime(f["origin"]).dt.date.astype(str)
    f = f.sort_values(["origin", "unique_id", "ds"], kind="stable")
    f["step"] = f.groupby(["origin", "unique_id"], sort=False).cumcount() + 1  # before any point is dropped
    a = actuals[["unique_id", "ds", "y"]].dropna(subset=["y"])
    a = a.assign(unique_id=a["unique_id"].astype(str))
    f["ds"], a_ds = _comparable(f["ds"], a["ds"])
    a = a.assign(ds=a_ds.to_numpy())
    if scored is not None and len(scored):
        seen = pd.MultiIndex.from_frame(
            scored[KEY]
            .astype({"origin": str, "unique_id": str})
            .assign(ds=_comparable(scored["ds"], a["ds"])[0].to_numpy())
        )
        f = f[~pd.MultiIndex.from_frame(f[KEY]).isin(seen)]
    joined = f.merge(a, on=["unique_id", "ds"], how="left")
    covered = joined["y"].notna()
    return joined[covered].reset_index(drop=True), joined[~covered].drop(columns="y").reset_index(drop=True)


class _History:
    """The store's rows sorted by series and time, with each series' start: where a forecast's
    ``last_ds`` sits, its in-sample scale, and the seasonal-naive forecast made from there."""

    def __init__(self, actuals: pd.DataFrame, seasons: int | dict[str, int]):
        a = actuals[["unique_id", "ds", "y"]].dropna(subset=["y"])
        a = a.assign(unique_id=a["unique_id"].astype(str)).sort_values(["unique_id", "ds"], kind="stable")
        self.frame = a
        self.uid, self.y = a["unique_id"].to_numpy(), a["y"].to_numpy(np.float64)
        start = np.r_[0, np.flatnonzero(self.uid[1:] != self.uid[:-1]) + 1] if len(a) else np.zeros(0, np.int64)
        self.first = np.repeat(start, np.diff(np.r_[start, len(self.uid)]))  # each row's series start
        self.pos = np.arange(len(self.uid)) - self.first  # position within its series
        self.m = (
            np.asarray([seasons.get(u, 1) for u in self.uid], dtype=np.int64)
            if isinstance(seasons, dict)
            else np.full(len(self.uid), int(seasons or 1), dtype=np.int64)
        )

    def locate(self, uid: pd.Series, last_ds: pd.Series) -> np.ndarray:
        """Row index of each (unique_id, last_ds) in the history; -1 where the store lacks it."""
        q_ds, a_ds = _comparable(last_ds, self.frame["ds"])
        order = pd.Series(np.arange(len(self.uid)), index=pd.MultiIndex.from_arrays([self.uid, a_ds.to_numpy()]))
        found = order.reindex(pd.MultiIndex.from_arrays([uid.astype(str).to_numpy(), q_ds.to_numpy()])).to_numpy()
        return np.where(np.isnan(found), -1, found).astype(np.int64)

    def _cumulative(self, lag: np.ndarray, power: int = 1, signed: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """Per row: sum and count of |y_t - y_{t-lag}| ** power (the signed difference with ``signed``)
        over its series up to that row."""
        ok = self.pos >= lag
        prev = np.where(ok, np.arange(len(self.y)) - lag, 0)
        diff = self.y - self.y[prev]
        d = np.where(ok, (diff if signed else np.abs(diff)) ** power, 0.0)
        cd, cn = np.cumsum(d), np.cumsum(ok.astype(np.int64))
        before = self.first - 1  # restart the sums at each series
        cd = cd - np.where(before >= 0, cd[np.maximum(before, 0)], 0.0)
        cn = cn - np.where(before >= 0, cn[np.maximum(before, 0)], 0)
        return cd, cn

    def scales(self, rows: np.ndarray) -> np.ndarray:
        """MASE denominators at history rows (-1: NaN), as ``models.metrics.mase_scale`` computes them."""
        out = np.full(len(rows), np.nan)
        hit = rows >= 0
        if not hit.any():
            return out
        idx = rows[hit]
        (sd, sn), (pd_, pn) = self._cumulative(self.m), self._cumulative(np.ones_like(self.m))
        with np.errstate(invalid="ignore", divide="ignore"):
            s, p = sd[idx] / sn[idx], pd_[idx] / pn[idx]
        out[hit] = np.where(np.isfinite(s) & (s > 0), s, np.where(np.isfinite(p) & (p > 0), p, np.nan))
        return out

    def seasonal_naive(self, rows: np.ndarray, steps: np.ndarray) -> np.ndarray:
        """Seasonal naive's quantiles [n, len(QUANTILES)] for each step, from the history up to ``rows``:
        the value one season before, with normal intervals from the in-sample seasonal differences
        (sigma x sqrt(full seasons ahead + 1), statsforecast's form); NaN where the history is too short."""
        from statistics import NormalDist

        out = np.full((len(rows), len(QUANTILES)), np.nan)
        at = np.maximum(rows, 0)
        m = self.m[at]
        back = rows - m + 1 + (steps - 1) % m
        ok = (rows >= 0) & (back >= self.first[at])
        (s1, n), (s2, _) = self._cumulative(self.m, signed=True), self._cumulative(self.m, power=2, signed=True)
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = s1[at] / n[at]
            sigma = np.sqrt(np.maximum(s2[at] / n[at] - mean**2, 0.0) * n[at] / np.maximum(n[at] - 1, 1))
        sigma = np.where(n[at] >= 2, sigma, np.nan) * np.sqrt((steps - 1) // m + 1)
        z = np.array([NormalDist().inv_cdf(q) for q in QUANTILES])
        out[ok] = self.y[back[ok]][:, None] + sigma[ok][:, None] * z[None, :]
        return out


def score_points(due: pd.DataFrame, actuals: pd.DataFrame, seasons: int | dict[str, int]) -> pd.DataFrame:
    """One row per due point: its errors (abs and scaled), CRPS parts, sMAPE term, and whether the
    10-90% interval covered the actual."""
    y = due["y"].to_numpy(np.float64)
    q = due[QUANTILE_COLUMNS].to_numpy(np.float64)
    point = due[POINT].to_numpy(np.float64)
    levels = np.asarray(QUANTILES)
    diff = y[:, None] - q
    crps_num = (2.0 * np.maximum(levels * diff, (levels - 1.0) * diff)).mean(axis=1)
    abs_err = np.abs(y - point)
    den = np.abs(y) + np.abs(point)
    with np.errstate(invalid="ignore", divide="ignore"):
        smape = np.where(den == 0, 0.0, 200.0 * abs_err / np.where(den == 0, 1.0, den))
    history = _History(actuals, seasons)
    rows = history.locate(due["unique_id"], due["last_ds"])
    naive_q = history.seasonal_naive(rows, due["step"].to_numpy(np.int64))
    naive = naive_q[:, MEDIAN]
    naive_diff = y[:, None] - naive_q
    keep = [
        c
        for c in [
            "origin",
            "unique_id",
            "ds",
            "step",
            "model",
            "model_version",
            "family",
            "last_ds",
            "y",
            POINT,
            QUANTILE_COLUMNS[0],
            QUANTILE_COLUMNS[-1],
        ]
        if c in due.columns
    ]
    out = due[keep].copy()
    out["abs_err"] = abs_err
    out["scale"] = history.scales(rows)
    out["scaled_err"] = abs_err / out["scale"].to_numpy()
    # what seasonal naive, fitted on the same history, would have scored on the same point
    out["naive"] = naive
    out["naive_scaled_err"] = np.abs(y - naive) / out["scale"].to_numpy()
    out["naive_crps_num"] = (2.0 * np.maximum(levels * naive_diff, (levels - 1.0) * naive_diff)).mean(axis=1)
    out["crps_num"], out["abs_y"], out["smape"] = crps_num, np.abs(y), smape
    out["inside"] = ((y >= q[:, 0]) & (y <= q[:, -1])).astype(np.float64)
    return out


def _window_metrics(points: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    points = points.assign(naive_gap=points["naive_crps_num"].isna())  # a window seasonal naive cannot cover
    g = points.groupby(list(dict.fromkeys(by + ["origin", "unique_id"])), sort=False)  # by may name origin
    w = g.agg(
        MASE=("scaled_err", "mean"),
        crps=("crps_num", "sum"),
        absy=("abs_y", "sum"),
        sMAPE=("smape", "mean"),
        coverage=("inside", "mean"),
        naive_MASE=("naive_scaled_err", "mean"),
        naive_crps=("naive_crps_num", "sum"),
        naive_gap=("naive_gap", "max"),
        points=("y", "size"),
    ).reset_index()
    safe = w["absy"].where(w["absy"] > 0, 1.0)
    w["sCRPS"] = np.where(w["absy"] > 0, w["crps"] / safe, np.nan)
    w["naive_sCRPS"] = np.where((w["absy"] > 0) & ~w["naive_gap"], w["naive_crps"] / safe, np.nan)
    return w


def summary(points: pd.DataFrame, by: list[str] | None = None) -> pd.DataFrame:
    """Mean over forecast windows per group (default: model version and family): MASE, sCRPS, sMAPE,
    coverage, and how many points, windows, series and origins they rest on."""
    by = by or GROUP
    w = _window_metrics(points, by)
    out = w.groupby(by, sort=True).agg(
        MASE=("MASE", "mean"),
        sCRPS=("sCRPS", "mean"),
        sMAPE=("sMAPE", "mean"),
        coverage=("coverage", "mean"),
        naive_MASE=("naive_MASE", "mean"),
        naive_sCRPS=("naive_sCRPS", "mean"),
        points=("points", "sum"),
        windows=("points", "size"),
        series=("unique_id", "nunique"),
        origins=("origin", "nunique"),
    )
    # below 1: better than the baseline planners have, on the same points
    out["MASE_vs_naive"] = out["MASE"] / out["naive_MASE"]
    out["sCRPS_vs_naive"] = out["sCRPS"] / out["naive_sCRPS"]
    return out.reset_index()


def per_step(points: pd.DataFrame, by: list[str] | None = None) -> pd.DataFrame:
    """Per group and forecast step, pooled over windows: MASE, sCRPS (sum / sum), sMAPE, coverage, points."""
    by = (by or GROUP) + ["step"]
    g = points.groupby(by, sort=True)
    out = g.agg(
        MASE=("scaled_err", "mean"),
        crps=("crps_num", "sum"),
        absy=("abs_y", "sum"),
        sMAPE=("smape", "mean"),
        coverage=("inside", "mean"),
        naive_MASE=("naive_scaled_err", "mean"),
        points=("y", "size"),
    ).reset_index()
    out["sCRPS"] = np.where(out["absy"] > 0, out["crps"] / out["absy"].where(out["absy"] > 0, 1.0), np.nan)
    return out.drop(columns=["crps", "absy"])[by + list(METRICS) + ["naive_MASE", "points"]]


def against_validation(table: pd.DataFrame, validation: dict[str, dict[str, float]]) -> pd.DataFrame:
    """``summary`` rows with the version's validation figures beside them (``val_<metric>``) and the
    ratio realized / validation per metric (``<metric>_ratio``; NaN where validation has no figure).
    ``validation``: model_version -> {metric: value} (the version's ``val_*`` tags)."""
    out = table.copy()
    for metric in METRICS:
        val = out["model_version"].astype(str).map(lambda v, m=metric: validation.get(str(v), {}).get(m, np.nan))
        out[f"val_{metric}"] = val.astype(np.float64)
        if metric != "coverage":  # coverage is judged against its nominal 0.8, not as a ratio
            with np.errstate(invalid="ignore", divide="ignore"):
                out[f"{metric}_ratio"] = out[metric] / out[f"val_{metric}"]
    return out
