"""Which forecaster a domain should be served by: the promotion gate's rules, pure.

Candidates are every family a domain is onboarded with (``models.forecasting.kinds.FAMILIES``):
the fused model, the frozen backbone alone, seasonal naive, AutoETS, Theta and their weighted
ensemble, all scored on the same validation windows.

One rule decides everywhere (``beats``): a challenger replaces the incumbent only when its mean
validation sCRPS is better by the margin *and*, where both were scored window by window on the
same windows, it is better beyond noise: in at least ``confidence`` of the paired bootstrap
resamples (series resampled with all their windows) it still wins by the margin. Candidates are
usually close, and a choice made on a point estimate of a few windows is a coin toss.

Among one onboarding's candidates the incumbent is the ensemble (it hedges between the others;
AutoGluon's WeightedEnsemble plays the same part) when it is no worse than seasonal naive, else the
best statistical or backbone candidate; the best single family replaces the ensemble, and the fused
model the best of the others, only by ``beats``. The champion is replaced by the offered candidate
only by ``beats`` too. So what is served never loses to seasonal naive on validation.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, cast

import numpy as np

FUSED = "fused"
NAIVE = "seasonal_naive"
ENSEMBLE = "ensemble"
DRAWS = 2000  # bootstrap resamples
MIN_GROUPS = 8  # fewer series than this: windows are resampled one by one
NORMAL_ABOVE = 5000  # more resampling units than this: the normal approximation of the same statistic


@dataclass(frozen=True)
class Evidence:
    """Validation sCRPS per window of each family, on the same windows (``groups``: the series of each
    window, the resampling unit), or only their means (``scores`` of floats)."""

    scores: Mapping[str, float | np.ndarray]
    groups: np.ndarray | None = None

    def mean(self, family: str) -> float:
        s = np.asarray(self.scores[family], dtype=np.float64)
        return float(np.nanmean(s)) if np.isfinite(s).any() else math.nan

    def paired(self, family: str) -> np.ndarray | None:
        s = self.scores.get(family)
        return None if s is None or np.ndim(s) == 0 else np.asarray(s, np.float64)

    def of(self, family: str) -> float | np.ndarray:
        """Per-window scores where there are some, else the mean: what ``beats`` takes."""
        paired = self.paired(family)
        return paired if paired is not None else self.mean(family)


@dataclass(frozen=True)
class Verdict:
    wins: bool
    gain: float  # 1 - challenger / incumbent on the means
    confidence: float | None  # share of resamples in which the challenger wins by the margin (None: unpaired)

    def __bool__(self) -> bool:
        return self.wins

    def sureness(self) -> str:
        return "" if self.confidence is None else f", sure in {self.confidence:.0%} of resamples"


@dataclass(frozen=True)
class Choice:
    family: str  # the candidate offered as challenger
    score: float  # its validation sCRPS
    reason: str  # why it, in a sentence a planner can read
    scores: dict[str, float]  # every family's validation sCRPS (means)
    confidence: dict[str, float] = field(default_factory=dict)  # comparison -> bootstrap confidence


def paired_confidence(
    challenger: np.ndarray,
    incumbent: np.ndarray,
    groups: np.ndarray | None,
    margin: float,
    draws: int = DRAWS,
    seed: int = 0,
) -> float:
    """Share of paired bootstrap resamples in which mean(challenger) < mean(incumbent) * (1 - margin).

    Windows are resampled with their series (``groups``) where there are at least ``MIN_GROUPS``
    series, else one by one; past ``NORMAL_ABOVE`` units the normal approximation is used."""
    challenger, incumbent = np.asarray(challenger, np.float64), np.asarray(incumbent, np.float64)
    ok = np.isfinite(challenger) & np.isfinite(incumbent)
    if not ok.any():
        return 0.0
    d = challenger[ok] - (1.0 - margin) * incumbent[ok]  # < 0 on average: the challenger wins
    units = np.arange(len(d)) if groups is None else np.unique(np.asarray(groups)[ok], return_inverse=True)[1]
    if units.max() + 1 < MIN_GROUPS:
        units = np.arange(len(d))
    n = int(units.max()) + 1
    sums, counts = np.bincount(units, d, n), np.bincount(units, minlength=n).astype(np.float64)
    if n < 2:
        return float(d.sum() < 0)
    if n > NORMAL_ABOVE:
        mean = sums.sum() / counts.sum()
        se = math.sqrt(n / (n - 1) * float(((sums - mean * counts) ** 2).sum())) / counts.sum()
        return 0.5 * math.erfc(mean / (se * math.sqrt(2))) if se > 0 else float(mean < 0)
    rng = np.random.default_rng(seed)
    wins = 0
    for start in range(0, draws, 200):
        idx = rng.integers(0, n, size=(min(200, draws - start), n))
        wins += int((sums[idx].sum(axis=1) < 0).sum())  # the counts are positive: the sign of the mean
    return wins / draws


def compare(challenger: str, incumbent: str, evidence: Evidence, margin: float, confidence: float) -> Verdict:
    """Does ``challenger`` replace ``incumbent``? (``beats`` on one onboarding's evidence)."""
    return beats(evidence.of(challenger), evidence.of(incumbent), margin, confidence, evidence.groups)


def beats(
    candidate: float | np.ndarray,
    incumbent: float | np.ndarray | None,
    margin: float,
    confidence: float = 0.0,
    groups: np.ndarray | None = None,
) -> Verdict:
    """The one replacement rule. Scalars: better by the margin. Per-window arrays on the same windows:
    better by the margin on the means and in at least ``confidence`` of the paired resamples.
    No (scorable) incumbent: the candidate wins."""
    cand = float(np.nanmean(candidate)) if np.ndim(candidate) else float(candidate)
    inc = (
        math.nan
        if incumbent is None
        else float(np.nanmean(incumbent))
        if np.ndim(incumbent) and np.isfinite(incumbent).any()
        else math.nan
        if np.ndim(incumbent)
        else float(incumbent)
    )
    if not math.isfinite(inc):
        return Verdict(True, math.nan, None)
    gain = 1 - cand / inc if inc > 0 else math.nan
    by_margin = cand < inc * (1 - margin)
    if np.ndim(candidate) and np.ndim(cast(Any, incumbent)) and np.shape(candidate) == np.shape(cast(Any, incumbent)):
        sure = paired_confidence(cast(np.ndarray, candidate), cast(np.ndarray, incumbent), groups, margin)
        return Verdict(by_margin and sure >= confidence, gain, sure)
    return Verdict(by_margin, gain, None)


def choose_candidate(scores: Mapping[str, float] | Evidence, margin: float, confidence: float = 0.0) -> Choice:
    """``scores``: validation sCRPS (lower is better) per family, as means or per window (``Evidence``)."""
    ev = scores if isinstance(scores, Evidence) else Evidence(scores)
    means = {f: ev.mean(f) for f in ev.scores}
    finite = {f: s for f, s in means.items() if math.isfinite(s)}
    if not finite and NAIVE in means:  # all-zero validation windows: no scaled score is defined for anyone
        return Choice(
            NAIVE,
            math.nan,
            "no validation window has a defined score (the windows are all zero): "
            "seasonal naive, which repeats what it sees",
            means,
        )
    if not finite:
        raise ValueError(f"no candidate has a finite validation score: {means}")
    naive = finite.get(NAIVE)
    singles = {f: s for f, s in finite.items() if f != ENSEMBLE}
    others = {f: s for f, s in singles.items() if f != FUSED}
    sure: dict[str, float] = {}
    if not others:
        return Choice(FUSED, finite[FUSED], "the fused model is the only candidate", means)
    best = min(others, key=lambda f: (others[f], f != NAIVE))  # a tie (a constant series: 0) goes to the simplest
    fused = finite.get(FUSED)
    if fused is None:
        why, pick = "was not scored", best
    else:
        v = compare(FUSED, best, ev, margin, confidence)
        if v.confidence is not None:
            sure[f"{FUSED} vs {best}"] = v.confidence
        if v.wins:
            why, pick = "", FUSED
        elif fused >= others[best]:
            why, pick = f"scored {fused:.4f}, {_worse(fused, others[best])} than {best}", best
        elif fused < others[best] * (1 - margin):
            why, pick = (
                (
                    f"scored {fused:.4f}, better than {best} by {_gain(fused, others[best])} but not beyond "
                    f"noise{v.sureness()}, short of {confidence:.0%}"
                ),
                best,
            )
        else:
            why, pick = (
                (
                    f"scored {fused:.4f}, better than {best} by {_gain(fused, others[best])}, less than the "
                    f"{margin:.0%} margin"
                ),
                best,
            )
    single_why = (
        f"the fused model (val sCRPS {fused:.4f}) beats every other candidate, the best of them {best} "
        f"({others[best]:.4f}) by {_gain(cast(float, fused), others[best])}{_sure(sure, f'{FUSED} vs {best}')}"
        if pick == FUSED
        else f"{best} has the best validation sCRPS ({others[best]:.4f}){_versus(best, others[best], naive)}; "
        f"the fused model {why}"
    )
    ens = finite.get(ENSEMBLE)
    if ens is None or (naive is not None and ens > naive):
        return Choice(pick, finite[pick], single_why, means, sure)
    top = min(singles, key=lambda f: (singles[f], f != NAIVE))
    v = compare(top, ENSEMBLE, ev, margin, confidence)
    if v.confidence is not None:
        sure[f"{top} vs {ENSEMBLE}"] = v.confidence
    if v.wins:
        return Choice(
            top,
            finite[top],
            f"{top} (val sCRPS {finite[top]:.4f}) beats the ensemble ({ens:.4f}) by "
            f"{_gain(finite[top], ens)}{v.sureness()}",
            means,
            sure,
        )
    if finite[top] >= ens:
        how = f"better than the best single family, {top} ({finite[top]:.4f}), by {_gain(ens, finite[top])}"
    else:
        how = (
            f"kept although {top} scored {finite[top]:.4f} ({_gain(finite[top], ens)} better): not beyond the "
            f"{margin:.0%} margin with {confidence:.0%} confidence{v.sureness()}"
        )
    return Choice(
        ENSEMBLE,
        ens,
        f"the weighted ensemble (val sCRPS {ens:.4f}{_versus(ENSEMBLE, ens, naive)}) is {how}",
        means,
        sure,
    )


def _versus(family: str, score: float, naive: float | None) -> str:
    return (
        f", {_gain(score, naive)} better than seasonal naive ({naive:.4f})"
        if family != NAIVE and naive is not None and score < naive
        else ""
    )


def _sure(sure: dict[str, float], key: str) -> str:
    return f", sure in {sure[key]:.0%} of resamples" if key in sure else ""


def _gain(better: float, worse: float) -> str:
    return f"{1 - better / worse:.1%}" if worse > 0 else "-"


def _worse(score: float, best: float) -> str:
    return f"{score / best - 1:.1%} worse" if best > 0 else ("no better" if score <= best else "worse")
