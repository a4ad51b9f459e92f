"""Statistical forecasters (statsforecast) as candidates for a domain's champion: seasonal naive,
AutoETS, Theta and, for data with a second, longer cycle (daily: week and year; hourly: day and
week) or a season too long for ETS (weekly), MSTL (each cycle taken out by STL, the rest forecast
by a non-seasonal AutoETS), fitted on each series' own context at predict time.

Intervals at levels 20/40/60/80 % give the 9 quantiles 0.1..0.9 (lo-80 -> 0.1, ..., mean ->
0.5, ..., hi-80 -> 0.9). Series are fitted one by one, so the output keeps the input order
and is deterministic. A series too short for its season, or one the model cannot fit, falls
back to a simpler model; the fallback is reported, never hidden.

Each model sees at most the last ``MAX_HISTORY`` points of a series: Theta took 55 s on the
50,000 half-hours of an electricity series, and decades of history barely move a forecast.

Fitted parameters are kept for the series onboarding fitted (``fitted``): a request whose
context extends that series (it holds the fitted history, so the fitted initial states still
hold) is forecast by re-running the fitted model over it from where the fitted history starts
(statsforecast's ``forward``, about 1 ms instead of 100-600 ms for AutoETS); any other context
is fitted afresh, and so is one whose re-run forecast leaves the context's range by more than
``REUSE_BOUND`` ranges (frozen parameters over a much longer history can diverge).

Folder: ``statistical.json`` (the model and the seasons: one per known series, and a default)
and ``fitted.pkl`` (per known series: the fitted parameters and the fitted history's ends).
"""

from __future__ import annotations

import json
import pickle
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, cast

import numpy as np
from jaxtyping import Float

from models.forecasting.types import QuantileForecast

LEVELS = (20, 40, 60, 80)
STATISTICAL = ("seasonal_naive", "auto_ets", "theta", "mstl")
# the longer cycle of a season: a week of days -> a year; a day of hourly (half-hourly, 15-minute) steps
# -> a week. MSTL is a candidate only where a domain has one of these seasons or one longer than ETS
# models (``wants_mstl``)
SECOND_SEASON = {7: 365, 24: 168, 48: 336, 96: 672}
ETS_MAX_SEASON = 24  # statsforecast's ETS does not fit longer seasons
CONFIG_FILE, FITTED_FILE = "statistical.json", "fitted.pkl"
MAX_HISTORY = 2000  # points a statistical model is fitted on (the latest)
REUSE_BOUND = 10.0  # ranges of the context a re-run fitted model's quantiles may reach beyond it
ENDS = 8  # fitted values compared at each end of a request's context to tell that it extends the fitted one
# what statsforecast's forward needs of a fitted model; the in-sample arrays are dropped (600 bytes a series)
_IN_SAMPLE = ("residuals", "fitted", "states", "actual_residuals")

Q = Float[np.ndarray, "horizon quantile"]


def _quantiles(fc: dict[str, np.ndarray]) -> Q:
    """statsforecast output dict -> [H, 9]; sorted so crossing can never reach metrics."""
    cols = [fc[f"lo-{lv}"] for lv in reversed(LEVELS)] + [fc["mean"]] + [fc[f"hi-{lv}"] for lv in LEVELS]
    return np.sort(np.stack(cols, axis=-1).astype(np.float64), axis=-1)


def _naive(x: np.ndarray, horizon: int, season: int) -> Q:
    from statsforecast.models import SeasonalNaive

    return _quantiles(SeasonalNaive(season_length=season).forecast(y=x, h=horizon, level=list(LEVELS)))


def _fit_or_naive(
    model: Any, label: str, x: np.ndarray, horizon: int, note: str | None, keep: bool = False
) -> tuple[Q, str | None, dict[str, Any] | None]:
    """The statsforecast model's quantiles, or naive with the reason when it fails or diverges;
    with ``keep``, the fitted model's parameters too (``_state``)."""
    try:
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            # a flat or all-zero series makes statsforecast's seasonality test divide by zero: its
            # answer (no season) is right, the warning is noise on the user's terminal
            warnings.simplefilter("ignore", RuntimeWarning)
            return _fit_quiet(model, label, x, horizon, note, keep)
    except Exception as exc:  # statsforecast raises for tiny or degenerate series
        reason = f"{label} failed ({type(exc).__name__}: {exc})"
    return _naive(x, horizon, 1), f"n={len(x)}: {reason}: naive", None


def _fit_quiet(
    model: Any, label: str, x: np.ndarray, horizon: int, note: str | None, keep: bool
) -> tuple[Q, str | None, dict[str, Any] | None]:
    if keep:
        model.fit(y=x)
        q = _quantiles(model.predict(h=horizon, level=list(LEVELS)))
    else:
        q = _quantiles(model.forecast(y=x, h=horizon, level=list(LEVELS)))
    if np.isfinite(q).all():
        return q, note, _state(model, x) if keep else None
    return _naive(x, horizon, 1), f"n={len(x)}: non-finite {label} forecast: naive", None


def _state(model: Any, x: np.ndarray) -> dict[str, Any]:
    """What ``forward`` needs to re-run a fitted model over a context that extends ``x`` (for MSTL,
    its trend model's parameters: the decomposition is redone on the context)."""
    fitted = getattr(model, "trend_forecaster", model)
    params = {k: (None if k == "fit" else v) for k, v in fitted.model_.items() if k not in _IN_SAMPLE}
    season = model.season_length
    return {
        "season": [int(s) for s in season] if isinstance(season, list) else int(season),
        "params": params,
        "n": len(x),
        "head": x[:ENDS].copy(),
        "tail": x[-ENDS:].copy(),
    }


def _model(model: str, season: Any) -> Any:
    """A statsforecast model; ``season``: an int, or MSTL's list of cycles."""
    from statsforecast.models import MSTL, AutoETS, Theta

    if model == "mstl":
        return MSTL(season_length=list(season), trend_forecaster=AutoETS(model="ZZN"))
    return {"theta": Theta, "auto_ets": AutoETS}[model](season_length=season)


def mstl_seasons(season: int, n: int) -> list[int]:
    """The cycles MSTL takes out of a series of ``n`` points: the season and its longer cycle, each
    where more than two of it fit (STL needs two)."""
    return [s for s in (season, SECOND_SEASON.get(season, 0)) if s > 1 and n > 2 * s]


def wants_mstl(seasons: Sequence[int]) -> bool:
    """MSTL is a candidate where the data have a second, longer cycle (daily and sub-daily data) or a
    season ETS cannot model (weekly 52: AutoETS drops it, STL does not); on monthly or quarterly data
    it would be AutoETS on a decomposition, at AutoETS's cost again."""
    return any(int(s) in SECOND_SEASON or int(s) > ETS_MAX_SEASON for s in seasons)


def fit_one(
    x: np.ndarray, horizon: int, season_length: int, model: str, keep: bool = False
) -> tuple[Q, str | None] | tuple[Q, str | None, dict[str, Any] | None]:
    """One series (no missing values), one model -> (quantiles [H, 9], note about a fallback or None);
    with ``keep``, also the fitted parameters (None for seasonal naive and for a fallback)."""
    x = np.asarray(x, dtype=np.float64)[-MAX_HISTORY:]
    if len(x) == 0:
        raise ValueError("empty history")
    # Less than one full season plus a step: the seasonal lag is undefined.
    season = season_length if len(x) > season_length else 1
    note = None if season == season_length else f"n={len(x)} <= season {season_length}: season 1"
    out: tuple[Q, str | None, dict[str, Any] | None]
    if model == "seasonal_naive":
        out = (_naive(x, horizon, season), note, None)
    elif model == "theta":  # the standard theta method (seasonality test and decomposition inside)
        out = _fit_or_naive(_model("theta", season), "Theta", x, horizon, note, keep)
    elif model == "auto_ets":
        if season > ETS_MAX_SEASON:
            season, note = 1, f"season {season_length} > {ETS_MAX_SEASON} unsupported by ETS: season 1"
        out = _fit_or_naive(_model("auto_ets", season), "ETS", x, horizon, note, keep)
    elif model == "mstl":
        cycles = mstl_seasons(season_length, len(x))
        if cycles:
            out = _fit_or_naive(_model("mstl", cycles), "MSTL", x, horizon, None, keep)
        else:  # too short for two of any cycle: the trend model alone, refitted on every request
            note = f"n={len(x)} < two cycles of season {season_length}: ETS without season"
            out = _fit_or_naive(_model("auto_ets", 1), "ETS", x, horizon, note)
    else:
        raise ValueError(f"unknown statistical model {model!r}; known: {', '.join(STATISTICAL)}")
    return out if keep else out[:2]


def extends(x: np.ndarray, state: dict[str, Any]) -> int | None:
    """Where the fitted history starts in the context, when the context holds all of it (its first
    and last values where they were): the fitted initial states apply from there. None otherwise."""
    n, head, tail = int(state["n"]), state["head"], state["tail"]
    if len(x) < n:
        return None
    windows = np.lib.stride_tricks.sliding_window_view(x[: len(x) - n + len(head)], len(head))
    for p in np.flatnonzero(np.isclose(windows, head, rtol=1e-6, atol=0).all(axis=1))[::-1]:  # the latest first
        if np.allclose(x[p + n - len(tail) : p + n], tail, rtol=1e-6, atol=0):
            return int(p)
    return None


def plausible(q: Q, x: np.ndarray, bound: float = REUSE_BOUND) -> bool:
    """Every quantile within the context's range widened by ``bound`` ranges on each side."""
    lo, hi = float(np.nanmin(x)), float(np.nanmax(x))
    span = max(hi - lo, 1e-6 * max(abs(lo), abs(hi), 1.0))
    return bool(np.isfinite(q).all() and q.min() >= lo - bound * span and q.max() <= hi + bound * span)


def forward_one(x: np.ndarray, horizon: int, model: str, state: dict[str, Any]) -> Q | None:
    """The fitted model re-run over ``x`` (no refit); None (fit afresh) when its forecast is not finite
    or not ``plausible``: a multiplicative-error ETS fitted on 54 months and re-run over 90 gave
    0.1/0.9 quantiles of -/+5.8e13 around a sane median (M3 N1695)."""
    fitted = _model(model, state["season"])
    getattr(fitted, "trend_forecaster", fitted).model_ = state["params"]
    try:
        q = _quantiles(fitted.forward(y=np.asarray(x, np.float64), h=horizon, level=list(LEVELS)))
    except Exception:  # a state statsforecast cannot apply: fit afresh instead
        return None
    return q if plausible(q, x) else None


def observed_history(uid: str, x: np.ndarray) -> np.ndarray:
    """A served context as statsforecast takes it: leading missing values dropped, inner ones
    interpolated. Raises ValueError (a 400) for a series with no observed value."""
    x = np.asarray(x, dtype=np.float64)
    known = np.flatnonzero(~np.isnan(x))
    if known.size == 0:
        raise ValueError(f"series {uid!r} has no observed value")
    x = x[known[0] :]
    gaps = np.isnan(x)
    if gaps.any():
        x = x.copy()
        x[gaps] = np.interp(np.flatnonzero(gaps), np.flatnonzero(~gaps), x[~gaps])
    return x


class StatisticalForecaster:
    """One statsforecast model with each series' season (``default_season`` for series it has not seen)
    and, for series fitted at onboarding, their fitted parameters (``fitted``: id -> ``_state``)."""

    def __init__(
        self,
        model: str,
        default_season: int,
        seasons: Mapping[str, int] | None = None,
        fitted: Mapping[str, dict[str, Any]] | None = None,
    ):
        if model not in STATISTICAL:
            raise ValueError(f"unknown statistical model {model!r}; known: {', '.join(STATISTICAL)}")
        self.model, self.default_season = model, int(default_season)
        self.seasons = {str(k): int(v) for k, v in (seasons or {}).items()}
        self.fitted = {str(k): v for k, v in (fitted or {}).items() if v is not None}
        self.reused = 0  # series answered from fitted parameters since load (the rest were fitted)

    def predict(
        self, contexts: Sequence[np.ndarray], horizon: int, ids: Sequence[str] | None = None
    ) -> QuantileForecast:
        """Each series' context (NaN = missing) -> ``horizon`` steps: re-run with its fitted parameters
        where the context extends the fitted history, else fitted afresh."""
        ids = [str(i) for i in ids] if ids is not None else [str(i) for i in range(len(contexts))]
        if not len(contexts):
            return QuantileForecast.empty(horizon)
        out = []
        for uid, x in zip(ids, contexts):
            x = observed_history(uid, x)
            state = self.fitted.get(uid)
            start = extends(x, state) if state is not None else None
            q = forward_one(x[start:], horizon, self.model, cast(dict[str, Any], state)) if start is not None else None
            if q is None:
                q = fit_one(x, horizon, self.seasons.get(uid, self.default_season), self.model)[0]
            else:
                self.reused += 1
            out.append(q)
        return QuantileForecast(np.stack(out).astype(np.float32))

    def save(self, directory: str | Path) -> Path:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        config = {"model": self.model, "default_season": self.default_season, "seasons": self.seasons}
        (directory / CONFIG_FILE).write_text(json.dumps(config))
        if self.fitted:
            with open(directory / FITTED_FILE, "wb") as f:
                pickle.dump(self.fitted, f, protocol=pickle.HIGHEST_PROTOCOL)
        return directory

    @classmethod
    def load(cls, directory: str | Path, device: str = "cpu") -> StatisticalForecaster:
        directory = Path(directory)
        config = json.loads((directory / CONFIG_FILE).read_text())
        fitted = None
        if (directory / FITTED_FILE).is_file():  # written by tsfm's own onboarding, shipped inside the model
            with open(directory / FITTED_FILE, "rb") as f:
                fitted = pickle.load(f)
        return cls(config["model"], config["default_season"], config.get("seasons"), fitted)
