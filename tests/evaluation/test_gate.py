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
        "the fused model kept val 50% of the kNN teacher's sCRPS gain over the backbone"
    ]
    assert teacher_line({"val": None}) == []


def _windows(n_series: int, per: int, gain: float, noise: float, seed: int = 0):
    """Per-window sCRPS of an incumbent and of a challenger better by ``gain`` on average."""
    from evaluation.gate import Evidence

    rng = np.random.default_rng(seed)
    base = rng.lognormal(-2.5, 0.3, n_series * per)
    challenger = base * (1 - gain) * np.exp(rng.normal(0, noise, base.size))
    return base, challenger, np.repeat(np.arange(n_series), per), Evidence


def test_a_consistent_gain_is_sure_and_a_noisy_one_on_few_windows_is_not():
    from evaluation.gate import paired_confidence

    base, better, groups, _ = _windows(200, 3, gain=0.05, noise=0.05)
    assert paired_confidence(better, base, groups, margin=0.01) > 0.99
    base, noisy, groups, _ = _windows(2, 3, gain=0.02, noise=0.3, seed=1)
    assert paired_confidence(noisy, base, groups, margin=0.01) < 0.9
    # beyond NORMAL_ABOVE series the normal approximation answers the same question
    base, better, groups, _ = _windows(6000, 1, gain=0.05, noise=0.05)
    assert paired_confidence(better, base, groups, margin=0.01) > 0.99
    assert paired_confidence(base, better, groups, margin=0.01) < 0.01


def test_beats_with_per_window_scores_needs_the_margin_and_the_confidence():
    base, noisy, groups, _ = _windows(3, 2, gain=0.03, noise=0.4, seed=9)
    assert np.nanmean(noisy) < np.nanmean(base) * 0.99  # better on the mean by the margin ...
    verdict = beats(noisy, base, 0.01, confidence=0.9, groups=groups)
    assert not verdict and verdict.confidence < 0.9  # ... but not beyond noise
    base, better, groups, _ = _windows(300, 3, gain=0.05, noise=0.05)
    verdict = beats(better, base, 0.01, confidence=0.9, groups=groups)
    assert verdict and verdict.confidence > 0.99 and "sure in" in verdict.sureness()
    assert beats(better, None, 0.01)  # no champion: the first one wins


def test_the_ensemble_is_kept_unless_a_single_family_beats_it_beyond_noise():
    from evaluation.gate import Evidence

    base, close, groups, _ = _windows(20, 3, gain=0.015, noise=0.2, seed=3)
    naive = base * 1.3
    ev = Evidence({"seasonal_naive": naive, "auto_ets": close, "fused": base * 1.1, "ensemble": base}, groups)
    chosen = choose_candidate(ev, margin=0.01, confidence=0.9)
    assert np.nanmean(close) < np.nanmean(base) * 0.99  # auto_ets is better on the mean, by the margin
    assert chosen.family == "ensemble" and "not beyond" in chosen.reason and chosen.confidence
    _, much_better, _, _ = _windows(20, 3, gain=0.2, noise=0.02, seed=3)
    ev = Evidence({"seasonal_naive": naive, "theta": much_better, "ensemble": base}, groups)
    chosen = choose_candidate(ev, margin=0.01, confidence=0.9)
    assert chosen.family == "theta" and "beats the ensemble" in chosen.reason
    # an ensemble worse than seasonal naive is never offered
    ev = Evidence({"seasonal_naive": base, "auto_ets": base * 1.2, "ensemble": base * 1.1}, groups)
    assert choose_candidate(ev, margin=0.01, confidence=0.9).family == "seasonal_naive"


def test_what_is_offered_with_an_ensemble_never_loses_to_seasonal_naive():
    from evaluation.gate import Evidence

    rng = np.random.default_rng(5)
    for _ in range(150):
        groups = np.repeat(np.arange(10), 2)
        scores = {f: rng.lognormal(-2.5, 0.6) * rng.lognormal(0, 0.2, 20) for f in (*FAMILIES, "ensemble")}
        chosen = choose_candidate(Evidence(scores, groups), float(rng.choice([0.0, 0.01])), 0.9)
        assert chosen.score <= np.nanmean(scores["seasonal_naive"])


def test_validation_origins_adapt_to_the_domains_size():
    from models.splits import resolve_origins

    assert resolve_origins(5, 1) == 5  # asked for: kept
    assert resolve_origins(None, 1) == 30 and resolve_origins(None, 2) == 30
    assert resolve_origins(None, 42) == 5 and resolve_origins(None, 67) == 3 and resolve_origins(None, 100_000) == 3
    from models.splits import split_frame

    one = pd.DataFrame({"unique_id": "a", "ds": np.arange(400), "y": np.arange(400.0)})
    auto = split_frame(one, 14, None)  # one series: more than 3 origins, while half stays train
    assert len(auto.val) == 13 * 14 and len(auto.train) == 400 - 14 - 13 * 14 >= (400 - 14) / 2
    assert len(split_frame(one, 14, 20).val) == 20 * 14  # asked for: as many as the series can spare


def test_the_onboarding_profile_names_every_stage_and_a_cached_run():
    from reports.summary import ensemble_line, timing_line

    [line] = timing_line({"statistical_fits": 50.0, "adapter": 5.0, "ensemble": 0.01}, total_s=80.0)
    assert line.startswith("time by stage: statistical fits 50.0 s, registration and orchestration 25.0 s, adapter")
    assert "ensemble" not in line  # under 0.05 s: not news
    [cached] = timing_line({"statistical_fits": 50.0}, total_s=9.0)
    assert cached.startswith("time: 9.0 s; fitting and evaluation reused") and timing_line(None) == []
    weights = {"offered": True, "weights": {"auto_ets": 0.5, "fused": 0.35, "theta": 0.0, "seasonal_naive": 0.15}}
    assert ensemble_line(weights, {"auto_ets": "4"}).endswith("auto_ets 0.50 (v4), fused 0.35, seasonal_naive 0.15")
    assert "all the weight" in ensemble_line(
        {"offered": False, "weights": {"fused": 1.0}, "reason": "all the weight went to fused"}
    )
