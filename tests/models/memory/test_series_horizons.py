"""Domains whose series have their own horizons (M3 categories: yearly 6, monthly 18)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from models.backbone.network import PatchBackbone
from models.backbone.presets import get_preset
from models.memory.config import OnboardingConfig
from models.memory.onboarding import onboard
from models.splits import SeriesSplit, split_frame


def _frame(lengths: dict[str, int], seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for uid, n in lengths.items():
        t = np.arange(n)
        y = 50 + 10 * np.sin(2 * np.pi * t / 12) + rng.normal(0, 1, n)
        rows.append(pd.DataFrame({"unique_id": uid, "ds": t, "y": y}))
    return pd.concat(rows, ignore_index=True)


def test_split_uses_each_series_own_horizon():
    df = _frame({"a": 30, "b": 60})
    s = split_frame(df, {"a": 3, "b": 7})
    sizes = {u: (len(g),) for u, g in s.test.groupby("unique_id")}
    assert sizes == {"a": (3,), "b": (7,)}
    assert s.val.groupby("unique_id").size().to_dict() == {"a": 3, "b": 7}
    assert s.train.groupby("unique_id").size().to_dict() == {"a": 24, "b": 46}
    # the last train point of b is right before its validation part
    assert s.train[s.train.unique_id == "b"].ds.max() + 1 == s.val[s.val.unique_id == "b"].ds.min()
    with pytest.raises(ValueError, match="no horizon for series"):
        split_frame(df, {"a": 3})


def test_onboarding_pads_truths_past_each_series_horizon():
    lengths = {f"y{i}": 30 for i in range(6)} | {f"m{i}": 90 for i in range(6)}
    horizons = {u: (4 if u.startswith("y") else 10) for u in lengths}
    df = _frame(lengths)
    torch.manual_seed(0)
    backbone = PatchBackbone(get_preset("tiny")).eval()
    before = {k: v.clone() for k, v in backbone.state_dict().items()}
    cfg = OnboardingConfig(
        context_length=32, batch_size=64, adapter={"epochs": 2, "batch_size": 64}, finetune={"max_steps": 10}
    )
    r = onboard(backbone, SeriesSplit.from_frame(df, horizons), cfg)
    # the fine-tuned comparison model is a copy: the served backbone stays frozen
    assert r.finetuned is not None and r.finetuned is not backbone and r.finetune_history
    assert all(torch.equal(before[k], v) for k, v in backbone.state_dict().items())
    assert r.horizon == 10 and r.split.truth("val").shape == (12, 10)
    h = dict(zip(r.split.ids, r.split.horizons))
    test_truth = r.split.truth("test")
    for i, uid in enumerate(r.split.ids):
        assert not np.isnan(test_truth[i, : h[uid]]).any()
        assert np.isnan(test_truth[i, h[uid] :]).all()
        # truth = the series' own last h points
        y = df[df.unique_id == uid].y.to_numpy()
        np.testing.assert_allclose(test_truth[i, : h[uid]], y[-h[uid] :], rtol=1e-6)
    # every model forecasts the longest horizon, finite everywhere
    for name, q in r.test.items():
        assert q.shape == (12, 10, 9) and np.isfinite(q).all(), name
    assert [m for m, _ in r.test.items()] == ["backbone", "teacher", "finetuned", "fused"]
    # the default hidden width would exceed 5% of the tiny backbone: onboarding narrows it
    n_backbone = sum(p.numel() for p in backbone.parameters())
    assert r.adapter.config.hidden < cfg.adapter.hidden
    assert r.adapter.n_parameters() <= 0.05 * n_backbone
    # the yearly-like series contribute datastore windows with NaN-padded futures
    assert np.isnan(r.teacher.futures).any() and np.isfinite(r.teacher.futures[:, :4]).all()
