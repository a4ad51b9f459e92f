"""End to end on a small synthetic domain with a freshly initialised tiny backbone.

Leakage rules (train-only datastore, exclusions, validation-only selection) live in
test_leakage.py."""

import numpy as np
import pandas as pd
import pytest
import torch

from models.backbone.network import PatchBackbone
from models.backbone.presets import get_preset
from models.memory.config import OnboardingConfig
from models.memory.onboarding import onboard
from models.memory.result import OnboardingResult
from models.metrics import scaled_crps_pooled
from models.splits import SeriesSplit

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


CFG = OnboardingConfig(context_length=C, batch_size=128, adapter={"epochs": 8, "batch_size": 128, "lr": 3e-3})


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
    return df, onboard(_backbone(), SeriesSplit.from_frame(df, H, 12), CFG)


def test_end_to_end_shapes_and_selection(runs):
    df, r = runs
    n = N_SERIES
    assert r.split.ids == sorted(df["unique_id"].unique()) and not r.split.skipped
    assert r.split.truth("val").shape == r.split.truth("test").shape == (n, H)
    for fc in (r.val, r.test):
        assert [m for m, _ in fc.items()] == ["backbone", "teacher", "fused"]
        for _, q in fc.items():
            assert q.shape == (n, H, 9) and np.isfinite(q).all() and (np.diff(q, axis=-1) >= 0).all()
    assert r.alpha in CFG.fusion.alpha_grid
    assert [row["alpha"] for row in r.alpha_table] == CFG.fusion.alpha_grid
    assert r.history[0]["epoch"] == 0 and sum(h["best"] for h in r.history) == 1
    assert {"embed_train", "teacher_build", "adapter_train", "alpha", "test_forecasts"} <= set(r.timings)
    assert r.split.history("val")[0].size == LENGTH - 2 * H and r.split.history("test")[0].size == LENGTH - H
    # the fused forecast on validation is the registered object's output, and alpha = 0 is
    # on the grid, so fused can never be worse than the backbone on validation
    np.testing.assert_array_equal(r.val.fused, r.fused.predict(r.split.history("val"), H).quantiles)
    s = {k: scaled_crps_pooled(r.split.truth("val"), q) for k, q in r.val.items()}
    assert s["fused"] <= s["backbone"] + 1e-12
    assert s["teacher"] < s["backbone"]  # an untrained backbone vs retrieval on a seasonal domain


def test_skips_series_too_short_for_train_validation_and_test():
    df = _domain(seed=1)
    short = pd.DataFrame({"unique_id": "tiny", "ds": np.arange(2 * H), "y": np.arange(2 * H, dtype=float)})
    split = SeriesSplit.from_frame(pd.concat([df, short], ignore_index=True), H)
    r = onboard(_backbone(), split, CFG.model_copy(update={"adapter": CFG.adapter.model_copy(update={"epochs": 1})}))
    assert r.split.skipped == ["tiny"] and "tiny" not in r.split.ids
    assert len(r.history) == 2


def test_the_result_folder_round_trips(runs, tmp_path):
    """Every reader gets back what onboarding made: split, forecasts, scalars, the fused model."""
    _, r = runs
    r.provenance = {"domain": "synthetic-test", "backbone_version": "1"}
    folder = r.save(tmp_path / "result")
    assert OnboardingResult.is_complete(folder) and r.folder == folder
    back = OnboardingResult.load(folder)
    assert back.split.ids == r.split.ids and np.array_equal(back.split.seasons, r.split.seasons)
    for part in ("train", "val", "test"):
        for a, b in zip(getattr(back.split, part), getattr(r.split, part)):
            np.testing.assert_array_equal(a, b)
    for (name, a), (_, b) in zip(back.test.items(), r.test.items()):
        np.testing.assert_array_equal(a, b, err_msg=name)
    assert back.alpha == r.alpha and back.alpha_table == r.alpha_table and back.provenance == r.provenance
    assert back.horizon == H and back.n_windows == r.n_windows
    # the backbone family is saved with the context it was scored with, and answers the same
    from models.forecasting.backbone import BackboneForecaster

    assert back.backbone_context == r.backbone_context == C  # untrained backbone: no card, the datastore's
    saved = BackboneForecaster.load(back.model_dir("backbone"))
    assert saved.context_length == C
    np.testing.assert_array_equal(saved.predict(r.split.history("test"), H).quantiles, r.test.backbone)
    ctx = r.split.history("test")
    np.testing.assert_array_equal(back.load_fused().predict(ctx, H).quantiles, r.test.fused)
    assert back.model_dir("adapter").is_dir() and back.model_dir("teacher").is_dir()


def test_rolling_origins_choose_alpha_and_stop_training_on_every_window(_one_thread):
    """With 3 origins per series, the fusion weight is chosen on all 3N validation windows pooled
    (its table's score is the pooled score of the fused validation forecasts), and the validation
    forecasts are made from each window's own context."""
    df = _domain(seed=1)
    split = SeriesSplit.from_frame(df, H, 12, origins=3)
    assert split.origins.tolist() == [3] * N_SERIES
    cfg = CFG.model_copy(update={"adapter": CFG.adapter.model_copy(update={"epochs": 3})})
    r = onboard(_backbone(), split, cfg)
    w = split.windows("val")
    assert len(w) == 3 * N_SERIES
    for _, q in r.val.items():
        assert q.shape == (3 * N_SERIES, H, 9)
    chosen = next(row for row in r.alpha_table if row["alpha"] == r.alpha)
    assert chosen["sCRPS"] == pytest.approx(scaled_crps_pooled(w.truth, r.val.fused), rel=1e-6)
    np.testing.assert_array_equal(r.val.fused, r.fused.predict(w.contexts, H).quantiles)
    # the earliest window of a series sees the train part only; the latest sees 2 windows more
    assert w.contexts[0].size == LENGTH - 4 * H and w.contexts[2].size == LENGTH - 2 * H


def test_the_backbone_reads_the_context_it_was_trained_on():
    from models.memory.config import MAX_BACKBONE_CONTEXT
    from models.memory.onboarding import backbone_context

    assert backbone_context(CFG, 256) == 256  # the card's training context
    assert backbone_context(CFG, 8192) == MAX_BACKBONE_CONTEXT
    assert backbone_context(CFG, None) == C and backbone_context(CFG, 16) == C  # never below the datastore's
    assert backbone_context(CFG.model_copy(update={"backbone_context": 512}), 256) == 512  # the setting wins
