"""Weighted ensembles of a domain's candidates: greedy ensemble selection with replacement
(Caruana et al., 2004, as AutoGluon's WeightedEnsemble does), pure numpy.

Each round adds the member whose addition gives the lowest mean scaled CRPS over the validation
windows (the gate's metric); a member may be added again, so weights are multiples of
1 / ``rounds``. Quantiles are combined level by level with the weights.

The ensemble is scored like every other candidate: out of sample. Weights are fitted with one
group of validation windows left out and applied to it (the groups are the rolling origins, or
folds of series where a domain has one origin), so every validation window gets a forecast from
weights that never saw it. The weights registered are then fitted on all validation windows.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from jaxtyping import Float, Int

from models.metrics import scaled_crps

ROUNDS = 20  # weights in steps of 0.05
SERIES_FOLDS = 5  # where every series has a single validation origin
Q = Float[np.ndarray, "m horizon quantile"]


def combine(forecasts: dict[str, Q], weights: dict[str, float]) -> Q:
    """Level-by-level weighted mean of the members' quantiles (members with weight 0 are skipped)."""
    out = None
    for name, w in weights.items():
        if w > 0:
            part = np.asarray(forecasts[name], np.float64) * w
            out = part if out is None else out + part
    if out is None:
        raise ValueError("no member has a positive weight")
    return out


def _score(q: np.ndarray, truth: np.ndarray) -> float:
    with np.errstate(invalid="ignore", divide="ignore"):
        s = scaled_crps(truth, q)
    return float(np.nanmean(s)) if np.isfinite(s).any() else float("inf")


def greedy_weights(
    forecasts: dict[str, Q], truth: Float[np.ndarray, "m horizon"], rounds: int = ROUNDS
) -> dict[str, float]:
    """Weights (summing to 1) of greedy selection with replacement on ``truth``; ties go to the
    member listed first."""
    names = list(forecasts)
    if not names:
        raise ValueError("no members to ensemble")
    arrays = [np.asarray(forecasts[n], np.float64) for n in names]
    counts = np.zeros(len(names), dtype=np.int64)
    total = np.zeros_like(arrays[0])
    for r in range(1, rounds + 1):
        scores = [_score((total + a) / r, truth) for a in arrays]
        best = int(np.argmin(scores))
        counts[best] += 1
        total += arrays[best]
    return {n: float(c) / rounds for n, c in zip(names, counts)}


def folds_of(origin: Int[np.ndarray, " m"], series: Int[np.ndarray, " m"]) -> np.ndarray | None:
    """The groups weights are cross-validated over: the rolling origins where there are several,
    else folds of series; None where neither gives two groups."""
    if len(np.unique(origin)) >= 2:
        return np.asarray(origin)
    if len(np.unique(series)) >= 2:
        return np.asarray(series) % min(SERIES_FOLDS, len(np.unique(series)))
    return None


@dataclass(frozen=True)
class Ensemble:
    weights: dict[str, float]  # fitted on every validation window: what is registered
    val: Q  # out-of-sample validation forecasts (each window from weights fitted without its group)
    fold_weights: list[dict[str, float]]  # the weights each left-out group was forecast with
    members: list[str]  # the candidates considered (before weights of 0)

    @property
    def used(self) -> dict[str, float]:
        return {n: w for n, w in self.weights.items() if w > 0}

    @property
    def single(self) -> str | None:
        """The one member with all the weight, if so (then the ensemble is that candidate)."""
        used = self.used
        return next(iter(used)) if len(used) == 1 else None


def distinct_members(forecasts: dict[str, Q], truth: np.ndarray) -> dict[str, Q]:
    """Members with a forecast wherever there is a target, without exact copies (the fused model
    with fusion weight 0 is the backbone: the first listed is kept)."""
    out: dict[str, Q] = {}
    target = np.isfinite(truth)
    for name, q in forecasts.items():
        q = np.asarray(q)
        if not np.isfinite(q[target]).all():
            continue
        if any(np.array_equal(q, kept) for kept in out.values()):
            continue
        out[name] = q
    return out


def fit_ensemble(
    forecasts: dict[str, Q],
    truth: Float[np.ndarray, "m horizon"],
    origin: np.ndarray,
    series: np.ndarray,
    rounds: int = ROUNDS,
) -> Ensemble | None:
    """Cross-validated greedy ensemble over the validation windows; None where there are fewer than
    two distinct members or the windows cannot be split into two groups."""
    members = distinct_members(forecasts, truth)
    folds = folds_of(origin, series)
    if len(members) < 2 or folds is None:
        return None
    val = np.full_like(next(iter(members.values())), np.nan, dtype=np.float64)
    fold_weights = []
    for group in np.unique(folds):
        held = folds == group
        w = greedy_weights({n: q[~held] for n, q in members.items()}, truth[~held], rounds)
        val[held] = combine({n: q[held] for n, q in members.items()}, w)
        fold_weights.append(w)
    return Ensemble(greedy_weights(members, truth, rounds), val, fold_weights, list(members))
