"""Which forecaster a domain should be served by: the promotion gate's rules, pure.

Candidates are every family a domain is onboarded with (``models.forecasting.kinds.FAMILIES``):
the fused model, the frozen backbone alone, seasonal naive, AutoETS and Theta, all scored on
the same validation windows. The fused model is offered only when it beats every other
candidate by the margin; otherwise the best of the others is. An offered candidate becomes
``champion`` only when it also beats the current champion (re-scored on the same windows,
where it can be) by the margin. So what is served never loses to seasonal naive on validation.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

FUSED = "fused"
NAIVE = "seasonal_naive"


@dataclass(frozen=True)
class Choice:
    family: str  # the candidate offered as challenger
    score: float  # its validation sCRPS
    reason: str  # why it, in a sentence a planner can read
    scores: dict[str, float]  # every family's validation sCRPS


def choose_candidate(scores: dict[str, float], margin: float) -> Choice:
    """``scores``: validation sCRPS (lower is better) per family."""
    finite = {f: s for f, s in scores.items() if math.isfinite(s)}
    if not finite:
        raise ValueError(f"no candidate has a finite validation score: {scores}")
    others = {f: s for f, s in finite.items() if f != FUSED}
    fused = finite.get(FUSED)
    if not others:
        return Choice(FUSED, fused, "the fused model is the only candidate", scores)
    best = min(others, key=others.get)
    if fused is not None and fused < others[best] * (1 - margin):
        return Choice(FUSED, fused, f"the fused model (val sCRPS {fused:.4f}) beats every other candidate, the best "
                                    f"of them {best} ({others[best]:.4f}) by {_gain(fused, others[best])}", scores)
    if fused is None:
        why = "was not scored"
    elif fused >= others[best]:
        why = f"scored {fused:.4f}, {fused / others[best] - 1:.1%} worse than {best}"
    else:
        why = f"scored {fused:.4f}, better than {best} by {_gain(fused, others[best])}, less than the {margin:.0%} margin"
    naive = finite.get(NAIVE)
    versus = (f", {_gain(others[best], naive)} better than seasonal naive ({naive:.4f})"
              if best != NAIVE and naive is not None and others[best] < naive else "")
    return Choice(best, others[best], f"{best} has the best validation sCRPS ({others[best]:.4f}){versus}; "
                                      f"the fused model {why}", scores)


def _gain(better: float, worse: float) -> str:
    return f"{1 - better / worse:.1%}" if worse > 0 else "-"


def beats(candidate: float, champion: float | None, margin: float) -> bool:
    """True when there is no champion, or the candidate is better by the margin."""
    return champion is None or not math.isfinite(champion) or candidate < champion * (1 - margin)
