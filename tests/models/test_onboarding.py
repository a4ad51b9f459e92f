"""End to end on a small synthetic domain with a freshly initialised tiny backbone.

Leakage rules (train-only datastore, exclusions, validation-only selection) live in
test_leakage.py."""
import numpy as np
import pandas as pd
import pytest
import torch

from infra.settings import OnboardParams
from models.backbone import PatchBackbone
from models.fused import scaled_crps
from models.onboarding import onboard
from models.presets import get_preset

N_SERIES, LENGTH, H, C = 30, 80, 6, 32


def _domain(seed=0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    t = np.arange(LENGTH)
    frames = []
    for i in range(N_SERIES):
        level = rng.uniform(20, 200)
        y = level * (1 + 0.3 * np.sin(2 * np.pi * t / 12 + rng.uniform(0, 2 * np.pi))) + rng.normal(0, 2, LENGTH)
        frames.append(pd.DataFrame({"unique_id": f"s{i:02d}", "ds": t, "y": y}))
    return pd.concat(frames, ignore_index=True)


CFG = OnboardParams(domain="synthetic-test", horizon=H, context_length=C, season_length=12, epochs=8, batch_size=128, lr=3e-3)


def _backbone():
    torch.manual_seed(0)
    return PatchBackbone(get_preset("tiny")).eval()


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    """Tiny models on a shared CPU: one intra-op thread avoids oversubscription (~10x here)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def runs(_one_thread):
    df = _domain()
    return df, onboard(_backbone(), df, CFG)


def test_end_to_end_shapes_and_selection(runs):
    df, r = runs
    n = N_SERIES
    assert r.series_ids == sorted(df["unique_id"].unique()) and not r.skipped_ids
    assert r.val_truth.shape == r.test_truth.shape == (n, H)
    for fc in (r.forecasts_val, r.forecasts_test):
        assert set(fc) == {"backbone", "teacher", "fused"}
        for q in fc.values():
            assert q.shape == (n, H, 9) and np.isfinite(q).all() and (np.diff(q, axis=-1) >= 0).all()
    assert r.alpha in CFG.alpha_grid
    assert [row["alpha"] for row in r.alpha_table] == CFG.alpha_grid
    assert r.history[0]["epoch"] == 0 and sum(h["best"] for h in r.history) == 1
    assert {"embed_train", "teacher_build", "adapter_train", "alpha", "test_forecasts"} <= set(r.timings)
    assert r.val_insample[0].size == LENGTH - 2 * H and r.test_insample[0].size == LENGTH - 2 * H
    # the fused forecast on validation is the registered object's output, and alpha = 0 is
    # on the grid, so fused can never be worse than the backbone on validation
    np.testing.assert_array_equal(r.forecasts_val["fused"], r.fused.predict(r.val_insample, H))
    s = {k: scaled_crps(q, r.val_truth) for k, q in r.forecasts_val.items()}
    assert s["fused"] <= s["backbone"] + 1e-12
    assert s["teacher"] < s["backbone"]  # an untrained backbone vs retrieval on a seasonal domain


def test_accepts_any_object_with_the_fields_and_skips_short_series():
    from types import SimpleNamespace

    df = _domain(seed=1)
    short = pd.DataFrame({"unique_id": "tiny", "ds": np.arange(2 * H), "y": np.arange(2 * H, dtype=float)})
    cfg = SimpleNamespace(**{**CFG.model_dump(), "epochs": 1})
    r = onboard(_backbone(), pd.concat([df, short], ignore_index=True), cfg)
    assert r.skipped_ids == ["tiny"] and "tiny" not in r.series_ids
    assert len(r.history) == 2
