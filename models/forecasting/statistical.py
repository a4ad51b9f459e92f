"""Statistical forecasters (statsforecast) as candidates for a domain's champion: seasonal naive,
AutoETS and Theta, fitted on each series' own context at predict time.

Intervals at levels 20/40/60/80 % give the 9 quantiles 0.1..0.9 (lo-80 -> 0.1, ..., mean ->
0.5, ..., hi-80 -> 0.9). Series are fitted one by one, so the output keeps the input order
and is deterministic. A series too short for its season, or one the model cannot fit, falls
back to a simpler model; the fallback is reported, never hidden.

Folder: ``statistical.json`` (the model and the seasons: one per known series, and a default).
"""
from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from jaxtyping import Float

from models.forecasting.types import QuantileForecast

LEVELS = (20, 40, 60, 80)
STATISTICAL = ("seasonal_naive", "auto_ets", "theta")
ETS_MAX_SEASON = 24  # statsforecast's ETS does not fit longer seasons
CONFIG_FILE = "statistical.json"

Q = Float[np.ndarray, "horizon quantile"]


def _quantiles(fc: dict[str, np.ndarray]) -> Q:
    """statsforecast output dict -> [H, 9]; sorted so crossing can never reach metrics."""
    cols = [fc[f"lo-{lv}"] for lv in reversed(LEVELS)] + [fc["mean"]] + [fc[f"hi-{lv}"] for lv in LEVELS]
    return np.sort(np.stack(cols, axis=-1).astype(np.float64), axis=-1)


def _naive(x: np.ndarray, horizon: int, season: int) -> Q:
    from statsforecast.models import SeasonalNaive

    return _quantiles(SeasonalNaive(season_length=season).forecast(y=x, h=horizon, level=list(LEVELS)))


def _fit_or_naive(model, label: str, x: np.ndarray, horizon: int, note: str | None) -> tuple[Q, str | None]:
    """The statsforecast model's quantiles, or naive with the reason when it fails or diverges."""
    try:
        q = _quantiles(model.forecast(y=x, h=horizon, level=list(LEVELS)))
        if np.isfinite(q).all():
            return q, note
        reason = f"non-finite {label} forecast"
    except Exception as exc:  # statsforecast raises for tiny or degenerate series
        reason = f"{label} failed ({type(exc).__name__}: {exc})"
    return _naive(x, horizon, 1), f"n={len(x)}: {reason}: naive"


def fit_one(x: np.ndarray, horizon: int, season_length: int, model: str) -> tuple[Q, str | None]:
    """One series (no missing values), one model -> (quantiles [H, 9], note about a fallback or None)."""
    from statsforecast.models import AutoETS, Theta

    x = np.asarray(x, dtype=np.float64)
    if len(x) == 0:
        raise ValueError("empty history")
    # Less than one full season plus a step: the seasonal lag is undefined.
    season = season_length if len(x) > season_length else 1
    note = None if season == season_length else f"n={len(x)} <= season {season_length}: season 1"
    if model == "seasonal_naive":
        return _naive(x, horizon, season), note
    if model == "theta":  # the standard theta method (seasonality test and decomposition inside)
        return _fit_or_naive(Theta(season_length=season), "Theta", x, horizon, note)
    if model != "auto_ets":
        raise ValueError(f"unknown statistical model {model!r}; known: {', '.join(STATISTICAL)}")
    if season > ETS_MAX_SEASON:
        season, note = 1, f"season {season_length} > {ETS_MAX_SEASON} unsupported by ETS: season 1"
    return _fit_or_naive(AutoETS(season_length=season), "ETS", x, horizon, note)


def observed_history(uid: str, x: np.ndarray) -> np.ndarray:
    """A served context as statsforecast takes it: leading missing values dropped, inner ones
    interpolated. Raises ValueError (a 400) for a series with no observed value."""
    x = np.asarray(x, dtype=np.float64)
    known = np.flatnonzero(~np.isnan(x))
    if known.size == 0:
        raise ValueError(f"series {uid!r} has no observed value")
    x = x[known[0]:]
    gaps = np.isnan(x)
    if gaps.any():
        x = x.copy()
        x[gaps] = np.interp(np.flatnonzero(gaps), np.flatnonzero(~gaps), x[~gaps])
    return x


class StatisticalForecaster:
    """One statsforecast model with each series' season (``default_season`` for series it has not seen)."""

    def __init__(self, model: str, default_season: int, seasons: Mapping[str, int] | None = None):
        if model not in STATISTICAL:
            raise ValueError(f"unknown statistical model {model!r}; known: {', '.join(STATISTICAL)}")
        self.model, self.default_season = model, int(default_season)
        self.seasons = {str(k): int(v) for k, v in (seasons or {}).items()}

    def predict(self, contexts: Sequence[np.ndarray], horizon: int,
                ids: Sequence[str] | None = None) -> QuantileForecast:
        """Fits each series' context (NaN = missing) and forecasts ``horizon`` steps."""
        ids = [str(i) for i in ids] if ids is not None else [str(i) for i in range(len(contexts))]
        if not len(contexts):
            return QuantileForecast.empty(horizon)
        out = [fit_one(observed_history(uid, x), horizon, self.seasons.get(uid, self.default_season), self.model)[0]
               for uid, x in zip(ids, contexts)]
        return QuantileForecast(np.stack(out).astype(np.float32))

    def save(self, directory: str | Path) -> Path:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        config = {"model": self.model, "default_season": self.default_season, "seasons": self.seasons}
        (directory / CONFIG_FILE).write_text(json.dumps(config))
        return directory

    @classmethod
    def load(cls, directory: str | Path, device: str = "cpu") -> StatisticalForecaster:
        config = json.loads((Path(directory) / CONFIG_FILE).read_text())
        return cls(config["model"], config["default_season"], config.get("seasons"))
