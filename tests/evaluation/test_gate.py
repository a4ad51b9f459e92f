"""The gate's rules on their own: which family is offered, and that nothing offered ever scores
worse than seasonal naive on validation, whatever the scores."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from evaluation.gate import beats, choose_candidate

FAMILIES = ("fused", "backbone", "seasonal_naive", "auto_ets", "theta")


def test_the_fused_model_needs_the_margin_over_every_other_family():
    scores = {"fused": 0.0580, "backbone": 0.14, "seasonal_naive": 0.075, "auto_ets": 0.0583, "theta": 0.071}
    chosen = choose_candidate(scores, margin=0.01)  # better than AutoETS by 0.5%: not enough
    assert chosen.family == "auto_ets" and "less than the 1% margin" in chosen.reason
    assert "22.3% better than seasonal naive" in chosen.reason
    assert choose_candidate(scores, margin=0.0).family == "fused"
    worse = choose_candidate({**scores, "fused": 0.1414}, margin=0.01)
    assert worse.family == "auto_ets" and "142.5% worse than auto_ets" in worse.reason


def test_unscored_families_are_skipped_and_nothing_scored_is_an_error():
    chosen = choose_candidate({"fused": math.nan, "seasonal_naive": 0.2, "theta": 0.1}, 0.01)
    assert chosen.family == "theta" and "was not scored" in chosen.reason
    with pytest.raises(ValueError, match="no candidate has a finite validation score"):
        choose_candidate({"fused": math.nan, "theta": math.inf}, 0.01)


def test_what_is_offered_never_loses_to_seasonal_naive():
    rng = np.random.default_rng(0)
    for _ in range(2000):
        scores = dict(zip(FAMILIES, rng.lognormal(-2.5, 0.6, len(FAMILIES))))
        if rng.random() < 0.2:
            scores[str(rng.choice(FAMILIES[:2]))] = math.nan  # a neural model that failed to score
        margin = float(rng.choice([0.0, 0.01, 0.05]))
        chosen = choose_candidate(scores, margin)
        assert chosen.score <= scores["seasonal_naive"]
        assert chosen.score == min(s for s in scores.values() if math.isfinite(s)) or chosen.family != "fused"


def test_a_champion_is_replaced_only_by_the_margin():
    assert beats(0.10, None, 0.01) and beats(0.10, math.nan, 0.01)  # no (scorable) champion yet
    assert beats(0.098, 0.10, 0.01) and not beats(0.0995, 0.10, 0.01) and not beats(0.11, 0.10, 0.0)


def test_teacher_gain_kept_is_the_share_of_the_teachers_gain():
    from evaluation.scores import teacher_gain_kept
    from reports.summary import teacher_line

    table = pd.DataFrame({"sCRPS": [0.48, 0.25, 0.30]}, index=["backbone", "teacher", "fused"])
    assert teacher_gain_kept(table) == pytest.approx((0.48 - 0.30) / (0.48 - 0.25))
    assert teacher_gain_kept(table.assign(sCRPS=[0.2, 0.3, 0.2])) is None  # the teacher did not win: nothing to keep
    assert teacher_gain_kept(table.drop("teacher")) is None
    assert teacher_gain_kept(table.assign(sCRPS=[0.48, 0.25, 0.50])) < 0  # worse than the backbone
    assert teacher_line({"val": 0.5, "test": None}) == [
        "the fused model kept val 50% of the kNN teacher's sCRPS gain over the backbone"]
    assert teacher_line({"val": None}) == []
