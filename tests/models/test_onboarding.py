"""End to end on a small synthetic domain with a freshly initialised tiny backbone."""
import numpy as np
import pandas as pd
import pytest
import torch

from infra.settings import OnboardParams
from models.backbone import PatchBackbone
from models.fused import scaled_crps
from models.onboarding import min_context, onboard
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


def _alter_test_targets(df: pd.DataFrame) -> pd.DataFrame:
    df = df.copy()
    last = df.groupby("unique_id").cumcount(ascending=False) < H
    df.loc[last, "y"] = df.loc[last, "y"] * 10 + 1000
    return df


CFG = OnboardParams(domain="synthetic-test", horizon=H, context_length=C, season_length=12, epochs=8, batch_size=128, lr=3e-3)


def _backbone():
    torch.manual_seed(0)
    return PatchBackbone(get_preset("tiny")).eval()


@pytest.fixture(scope="module")
def runs():
    df = _domain()
    return df, onboard(_backbone(), df, CFG), onboard(_backbone(), _alter_test_targets(df), CFG)


def test_end_to_end_shapes_and_selection(runs):
    df, r, _ = runs
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


def test_datastore_holds_only_windows_inside_train(runs):
    df, r, _ = runs
    train_len = LENGTH - 2 * H
    expected = N_SERIES * (train_len - H - min_context(C, H, CFG.align_points) + 1)
    assert r.n_windows == r.teacher.size == expected
    # values are continuous random floats: any validation or test value in the store is a leak
    pos = df.groupby("unique_id").cumcount(ascending=False)
    held_out = set(df.loc[pos < 2 * H, "y"].astype(np.float32).tolist())
    stored = set(r.teacher.futures.ravel().tolist()) | set(r.teacher.contexts[~np.isnan(r.teacher.contexts)].tolist())
    assert not (held_out & stored)
    # every stored future is a contiguous slice of a train part
    trains = {tuple(np.asarray(t, np.float32)) for t in r.val_insample}
    for f in r.teacher.futures[:: max(1, r.n_windows // 50)]:
        assert any(_contains(t, f) for t in trains)


def _contains(seq, part) -> bool:
    seq = np.asarray(seq)
    starts = np.flatnonzero(seq == part[0])
    return any(np.array_equal(seq[s : s + len(part)], part) for s in starts)


def test_test_targets_cannot_influence_fitting_or_selection(runs):
    _, a, b = runs
    assert not np.array_equal(a.test_truth, b.test_truth)  # the alteration did happen
    assert a.alpha == b.alpha and a.alpha_table == b.alpha_table
    assert a.history == b.history
    sa, sb = a.adapter.state_dict(), b.adapter.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    np.testing.assert_array_equal(a.teacher.keys, b.teacher.keys)
    np.testing.assert_array_equal(a.val_truth, b.val_truth)
    for name in a.forecasts_val:
        np.testing.assert_array_equal(a.forecasts_val[name], b.forecasts_val[name])
        np.testing.assert_array_equal(a.forecasts_test[name], b.forecasts_test[name])  # contexts exclude test
        assert scaled_crps(a.forecasts_val[name], a.val_truth) == scaled_crps(b.forecasts_val[name], b.val_truth)


def test_accepts_any_object_with_the_fields_and_skips_short_series():
    from types import SimpleNamespace

    df = _domain(seed=1)
    short = pd.DataFrame({"unique_id": "tiny", "ds": np.arange(2 * H), "y": np.arange(2 * H, dtype=float)})
    cfg = SimpleNamespace(**{**CFG.model_dump(), "epochs": 1})
    r = onboard(_backbone(), pd.concat([df, short], ignore_index=True), cfg)
    assert r.skipped_ids == ["tiny"] and "tiny" not in r.series_ids
    assert len(r.history) == 2


def test_training_queries_never_retrieve_a_window_whose_future_overlaps_theirs():
    from models.onboarding import overlapping_rows
    from models.teacher import KnnTeacher, TeacherConfig
    from models.windows import sliding_windows

    rng = np.random.default_rng(0)
    h = 4
    # smooth random walks (no repeats): the window shifted by one step is the nearest neighbour
    series = [np.cumsum(np.cumsum(rng.normal(0, 1, 60))) for _ in range(3)]
    win = sliding_windows(series, 16, h, stride=1, min_context=16)
    keys = np.nan_to_num(win.context).astype(np.float32)
    teacher = KnnTeacher(keys, win.context, win.future, TeacherConfig(top_k_candidates=10, k=5))
    excl = overlapping_rows(win, h)
    out = teacher.query(keys, win.context, exclude=excl)
    for i, nbrs in enumerate(out.neighbors):
        for j in nbrs[nbrs >= 0]:
            assert not (win.series_index[j] == win.series_index[i] and abs(win.end[j] - win.end[i]) < h)
    # with only the own row excluded, the one-step-shifted window is what comes back
    own_only = teacher.query(keys, win.context, exclude=np.arange(len(win)))
    first = own_only.neighbors[:, 0]
    near = (win.series_index[first] == win.series_index) & (np.abs(win.end[first] - win.end) < h)
    assert near.mean() > 0.5
