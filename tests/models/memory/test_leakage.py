"""Leakage safety (issue 4): each TS-Memory rule with a test that tries to break it.

Rules (docs/architecture.md, "Splits" and "Leakage rules"):
  (a) the datastore is built from the train parts only;
  (b) a window enters it only if its context and its future lie inside train;
  (c) scaling statistics come from train only: the backbone's causal scaler reads a
      window's context only, the teacher's per-window level/scale (``window_stats``) the
      window's context only, the MASE scale the train part;
  (d) a training query drops its own row by index (not by distance), and the rows of
      its series whose future overlaps its own (``overlapping_rows``);
  (e) validation and test queries retrieve from the train datastore only;
  (f) the fusion weight and early stopping (of the adapter, and of the fine-tuned
      comparison model) read validation only, and the code that selects them cannot
      read test targets.

The causal scaler's own causality is unit-tested in test_backbone.py; here the point is
that onboarding only ever feeds the backbone a window's context.

Every onboarding here runs with spies on the steps that matter (windows, teacher
queries, alpha choice, adapter training, fine-tuning, ``_fit``) and is compared with independent
expectations computed from the raw frame, never from ``SeriesSplit``. Each test says
what change in production code would make it fail. Two scenarios: one horizon for all
series, and per-series horizons (M3-style; truths NaN-padded to the longest).
"""

from __future__ import annotations

import dataclasses
import inspect
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch

import models.memory.onboarding as ob
from infra.settings import OnboardParams
from models.backbone.network import PatchBackbone
from models.backbone.presets import get_preset
from models.forecasting.batch import batch_forecast
from models.forecasting.fused import FusedForecaster
from models.forecasting.inputs import left_pad, strip_left_nan
from models.memory.distill import val_pinball
from models.memory.fusion import fuse
from models.memory.onboarding import min_context, onboard
from models.memory.teacher import KnnTeacher, window_stats
from models.memory.windows import overlapping_rows, sliding_windows
from models.metrics import mase_scale, scaled_crps_pooled
from models.splits import SeriesSplit

N_SEASONAL, N_WALK = 10, 4  # + s01, an exact copy of s00
LENGTH, H, H_SHORT, C = 72, 6, 3, 32
VAL_MARK, TEST_MARK = 654321.5, 123456.5  # + series number: unique, exact in float32, far outside the data
CFG = OnboardParams(
    domain="leak-test",
    horizon=H,
    context_length=C,
    season_length=12,
    batch_size=128,
    adapter={"epochs": 6, "batch_size": 128, "lr": 3e-3, "patience": 2},
    finetune={"max_steps": 4, "lr": 1e-3},  # the fine-tuned comparison model is fitted (and early-stopped) too
)


# --------------------------------------------------------------------------- domain
def _domain(seed: int = 0) -> pd.DataFrame:
    """Seasonal series (periods 12 and 7), smooth random walks (their nearest window is the
    one shifted by a step, the case rule (d) is about), and s01 = s00 exactly."""
    rng = np.random.default_rng(seed)
    t = np.arange(LENGTH)
    ys = []
    for i in range(N_SEASONAL):
        level, period = rng.uniform(20, 200), (12, 7)[i % 2]
        phase = rng.uniform(0, 2 * np.pi)
        ys.append(level * (1 + 0.3 * np.sin(2 * np.pi * t / period + phase)) + rng.normal(0, 2, LENGTH))
    for _ in range(N_WALK):
        ys.append(100 + np.cumsum(np.cumsum(rng.normal(0, 0.3, LENGTH))))
    ys.insert(1, ys[0].copy())
    return pd.concat(
        [pd.DataFrame({"unique_id": f"s{i:02d}", "ds": t, "y": y}) for i, y in enumerate(ys)], ignore_index=True
    )


def _horizons(df: pd.DataFrame, mixed: bool) -> dict[str, int]:
    """Mixed: even series forecast H, odd ones H_SHORT (s00 and s01, the duplicates, differ)."""
    return {u: (H if not mixed or int(u[1:]) % 2 == 0 else H_SHORT) for u in sorted(df["unique_id"].unique())}


def _parts(df: pd.DataFrame, horizons: dict[str, int]) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """uid -> (train, val, test) float32, sliced from the raw frame by position (independent of SeriesSplit)."""
    out = {}
    for u, g in df.sort_values(["unique_id", "ds"]).groupby("unique_id"):
        y, h = g["y"].to_numpy(np.float32), horizons[u]
        out[u] = (y[: len(y) - 2 * h], y[len(y) - 2 * h : len(y) - h], y[len(y) - h :])
    return out


def _poison(df: pd.DataFrame, part: str, horizons: dict[str, int]) -> pd.DataFrame:
    """Rewrite the ``part`` ("val" or "test") of every series: its first point becomes a
    unique marker, the rest a huge sign flip, NaN, or a huge shift (series number mod 3)."""
    df = df.sort_values(["unique_id", "ds"]).reset_index(drop=True)
    pos = df.groupby("unique_id").cumcount(ascending=False).to_numpy()
    h = df["unique_id"].map(horizons).to_numpy()
    num = df["unique_id"].str[1:].astype(int).to_numpy()
    lo, hi, mark = (h, 2 * h, VAL_MARK) if part == "val" else (0, h, TEST_MARK)
    inside = (pos >= lo) & (pos < hi)
    y = df["y"].to_numpy(np.float64).copy()
    y = np.where(inside & (num % 3 == 0), -1e6 * y, y)
    y = np.where(inside & (num % 3 == 1), np.nan, y)
    y = np.where(inside & (num % 3 == 2), y + 1e5, y)
    y = np.where(pos == hi - 1, mark + num, y)  # the point right after the part before it
    return df.assign(y=y)


def _backbone() -> PatchBackbone:
    torch.manual_seed(0)
    return PatchBackbone(get_preset("tiny")).eval()


# --------------------------------------------------------------------------- spies
class _Locked:
    """Stands in for ``split.test``: any use before ``_fit`` has returned raises."""

    def __init__(self, frame, trace: SimpleNamespace):
        self._frame, self._trace = frame, trace

    def _open(self):
        if not self._trace.fit_done:
            raise AssertionError("test targets were read before fitting was over")
        self._trace.test_reads += 1
        return self._frame

    def __getattr__(self, name):
        return getattr(self._open(), name)

    def __getitem__(self, key):
        return self._open()[key]

    def __len__(self):
        return len(self._open())

    def __iter__(self):
        return iter(self._open())

    def __array__(self, *args, **kwargs):
        return self._open().__array__(*args, **kwargs)


def _bound(fn, *args, **kwargs) -> dict:
    b = inspect.signature(fn).bind(*args, **kwargs)
    b.apply_defaults()
    return dict(b.arguments)


def _traced_onboard(df: pd.DataFrame, horizons: dict[str, int] | None, lock_test: bool = False) -> SimpleNamespace:
    """onboard() with spies: what the datastore was built from, every teacher query (and
    on which store, in which phase), what alpha and early stopping were given."""
    tr = SimpleNamespace(
        windows=[],
        queries=[],
        alpha_calls=[],
        adapter_calls=[],
        finetune_calls=[],
        fit_args=None,
        in_fit=False,
        fit_done=False,
        test_reads=0,
    )
    orig_windows, orig_query, orig_fit = ob.sliding_windows, KnnTeacher.query, ob._fit
    orig_alpha, orig_adapter = ob.choose_alpha, ob.train_adapter
    orig_finetune = ob.finetune_backbone

    def windows(series, *args, **kwargs):
        w = orig_windows(series, *args, **kwargs)
        tr.windows.append(([np.array(s, np.float32) for s in series], w))
        return w

    def query(self, *args, **kwargs):
        a = _bound(orig_query, self, *args, **kwargs)
        out = orig_query(self, *args, **kwargs)
        tr.queries.append(
            SimpleNamespace(
                teacher=self,
                size=self.size,
                ntotal=int(self.index.ntotal),
                keys=np.array(a["keys"], np.float32),
                contexts=np.array(a["contexts"], np.float32),
                exclude=None if a["exclude"] is None else np.array(a["exclude"]),
                out=out,
                in_fit=tr.in_fit,
                after_fit=tr.fit_done,
            )
        )
        return out

    def fit(*args, **kwargs):
        tr.fit_args = (args, kwargs)
        tr.in_fit = True
        try:
            return orig_fit(*args, **kwargs)
        finally:
            tr.in_fit, tr.fit_done = False, True

    def alpha(*args, **kwargs):
        tr.alpha_calls.append(SimpleNamespace(args=_bound(orig_alpha, *args, **kwargs), in_fit=tr.in_fit))
        return orig_alpha(*args, **kwargs)

    def adapter(*args, **kwargs):
        tr.adapter_calls.append(SimpleNamespace(args=_bound(orig_adapter, *args, **kwargs), in_fit=tr.in_fit))
        return orig_adapter(*args, **kwargs)

    def finetune(*args, **kwargs):
        tr.finetune_calls.append(SimpleNamespace(args=_bound(orig_finetune, *args, **kwargs), in_fit=tr.in_fit))
        return orig_finetune(*args, **kwargs)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(ob, "sliding_windows", windows)
        mp.setattr(KnnTeacher, "query", query)
        mp.setattr(ob, "_fit", fit)
        mp.setattr(ob, "choose_alpha", alpha)
        mp.setattr(ob, "train_adapter", adapter)
        mp.setattr(ob, "finetune_backbone", finetune)
        split = SeriesSplit.from_frame(df, H if horizons is None else horizons, CFG.season_length)
        if lock_test:
            split = dataclasses.replace(split, test=_Locked(split.test, tr))
        result = onboard(_backbone(), split, CFG)
    return SimpleNamespace(result=result, trace=tr, df=df)


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    """Tiny models on a shared 2-core machine: one intra-op thread is ~10x faster than two
    fighting other processes (the results do not depend on it: every comparison here is
    between runs made under the same setting)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module", params=["uniform", "mixed"])
def runs(request, _one_thread):
    mixed = request.param == "mixed"
    df = _domain()
    h = _horizons(df, mixed)
    arg = h if mixed else None  # uniform: the plain cfg.horizon path
    return SimpleNamespace(
        mixed=mixed,
        h=h,
        df=df,
        parts=_parts(df, h),
        clean=_traced_onboard(df, arg),
        test_poisoned=_traced_onboard(_poison(df, "test", h), arg),
        val_poisoned=_traced_onboard(_poison(df, "val", h), arg),
    )


@pytest.fixture(scope="module")
def locked_run(runs):
    """The clean domain with split.test locked until _fit returns (its own fixture, so that a
    guard that fires fails test_f_test_targets_cannot_be_read_... alone)."""
    return _traced_onboard(runs.df, runs.h if runs.mixed else None, lock_test=True)


def _the_windows(run) -> tuple[list[np.ndarray], object]:
    """The sliding_windows call whose windows are the teacher's datastore."""
    t = run.result.teacher
    found = [
        (s, w)
        for s, w in run.trace.windows
        if len(w) == t.size and np.array_equal(w.context, t.contexts, equal_nan=True)
    ]
    assert len(found) == 1, "the datastore is exactly the windows of one sliding_windows call"
    return found[0]


def _train_query(run):
    calls = [q for q in run.trace.queries if q.exclude is not None]
    assert len(calls) == 1, "exactly one query with exclusions: the training windows"
    return calls[0]


def _assert_same_datastore(a, b) -> None:
    for name in ("keys", "contexts", "futures"):
        np.testing.assert_array_equal(getattr(a.result.teacher, name), getattr(b.result.teacher, name), err_msg=name)
    qa, qb = _train_query(a), _train_query(b)
    for name in ("neighbors", "weights", "quantiles", "confidence"):
        np.testing.assert_array_equal(getattr(qa.out, name), getattr(qb.out, name), err_msg=name)


def _same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def _untimed(history: list[dict]) -> list[dict]:
    return [{k: v for k, v in row.items() if k != "seconds"} for row in history]


def _arrays_in(obj, depth: int = 0):
    """Every numeric array reachable from obj (arrays, tensors, frames, lists, dicts, attributes)."""
    if depth > 4:
        return
    if isinstance(obj, np.ndarray) and obj.dtype.kind == "f":
        yield obj
    elif isinstance(obj, torch.Tensor) and obj.is_floating_point():
        yield obj.detach().cpu().numpy()
    elif isinstance(obj, pd.DataFrame | pd.Series):
        yield from _arrays_in(
            obj.select_dtypes("number").to_numpy(np.float64) if isinstance(obj, pd.DataFrame) else obj.to_numpy(),
            depth + 1,
        )
    elif isinstance(obj, list | tuple):
        for x in obj:
            yield from _arrays_in(x, depth + 1)
    elif isinstance(obj, dict):
        for x in obj.values():
            yield from _arrays_in(x, depth + 1)
    elif hasattr(obj, "__dict__") and not isinstance(obj, torch.nn.Module | type):
        for x in vars(obj).values():
            yield from _arrays_in(x, depth + 1)


# --------------------------------------------------------------------------- (a) train only
def test_a_datastore_is_built_from_the_train_parts_only(runs):
    # Fails if the windows are cut from train + validation (or the whole series), or if the
    # teacher stores anything other than exactly those windows.
    # Every window onboarding cuts (the datastore's and any other) comes from train parts.
    run = runs.clean
    r = run.result
    assert run.trace.windows
    for series, _ in run.trace.windows:
        assert len(series) == len(r.split.ids)
        for u, s in zip(r.split.ids, series):
            np.testing.assert_array_equal(s, runs.parts[u][0], err_msg=u)
    _, win = _the_windows(run)
    assert r.teacher.size == len(win) == r.n_windows == len(r.teacher.keys)
    np.testing.assert_array_equal(r.teacher.contexts, win.context)
    np.testing.assert_array_equal(r.teacher.futures, win.future)


def test_a_markers_after_the_train_part_and_held_out_values_never_enter_the_datastore(runs):
    # The marker sits on the first validation point, right after the train part (and on the
    # first test point): an off-by-one in SeriesSplit or sliding_windows puts it in the store.
    for run, mark in ((runs.val_poisoned, VAL_MARK), (runs.test_poisoned, TEST_MARK)):
        t = run.result.teacher
        stored = np.concatenate([t.contexts.ravel(), t.futures.ravel()])
        stored = stored[~np.isnan(stored)]
        marks = mark + np.arange(len(run.result.split.ids) + 1, dtype=np.float32)
        assert not np.isin(stored, marks).any()
        assert np.abs(stored).max() < 5e4  # and none of the poisoned (huge) values
    # clean run: no validation or test value of a series in that series' windows (values are
    # continuous random floats; per series because s01 = s00 and, with mixed horizons,
    # s01's train part legitimately holds values of s00's validation part)
    series, win = _the_windows(runs.clean)
    for i, u in enumerate(runs.clean.result.split.ids):
        _, val, test = runs.parts[u]
        rows = win.series_index == i
        stored = np.concatenate([win.context[rows].ravel(), win.future[rows].ravel()])
        assert not np.isin(np.concatenate([val, test]), stored[~np.isnan(stored)]).any(), u


# --------------------------------------------------------------------------- (b) inside train
def test_b_every_window_lies_inside_train_at_the_position_it_claims(runs):
    # Fails if a future reaches past the train part (last end > len - h), if a context is not
    # the C points before its end, or if the store silently drops or adds windows.
    r = runs.clean.result
    _, win = _the_windows(runs.clean)
    h_own = np.array([runs.h[u] for u in r.split.ids])
    h_max = int(h_own.max())
    min_ctx = min_context(C, int(h_own.min()), CFG.teacher.align_points)
    assert win.future.shape[1] == h_max and win.context.shape[1] == C
    for i, u in enumerate(r.split.ids):
        train = runs.parts[u][0]
        n, h = len(train), runs.h[u]
        padded = np.concatenate([np.full(C, np.nan, np.float32), train, np.full(h_max, np.nan, np.float32)])
        rows = np.flatnonzero(win.series_index == i)
        ends = win.end[rows]
        # exactly the legal ends, the last one flush with the end of the train part
        assert ends.tolist() == list(range(min_ctx, n - h + 1)), u
        for row, e in zip(rows, ends):
            assert e + h <= n  # its own horizon's future is all inside train
            np.testing.assert_array_equal(win.context[row], padded[e : e + C])  # train[e - C : e]
            np.testing.assert_array_equal(win.future[row], padded[C + e : C + e + h_max])  # NaN past the train end
            assert np.isfinite(win.future[row, :h]).all()


# --------------------------------------------------------------------------- (c) scaling
def test_c_window_embedding_level_and_scale_read_its_context_only():
    # Poison a training series from step e0 on. Every window ending at or before e0 (its
    # future may cross e0, its context may not) must keep its backbone embedding, scaler
    # loc/scale, forecast and teacher level/scale bit for bit, even though the poisoned
    # windows share its batch. Fails if the causal scaler used statistics past the context
    # (e.g. the whole series), a window's context reached into its future, or forecasts
    # mixed information across the batch.
    rng = np.random.default_rng(3)
    t = np.arange(120)
    x = (50 + 10 * np.sin(2 * np.pi * t / 12) + rng.normal(0, 1, t.size)).astype(np.float32)
    e0 = 80
    bad = x.copy()
    bad[e0:] = -1e6 * bad[e0:]
    bad[e0 + H + 3 :: 5] = np.nan  # past the futures of the windows kept (NaN futures are skipped)
    min_ctx = min_context(C, H, CFG.teacher.align_points)
    w_ok, w_bad = (sliding_windows([s], C, H, 1, min_ctx) for s in (x, bad))
    keep = w_ok.end <= e0
    assert w_ok.end[keep].tolist() == w_bad.end[: keep.sum()].tolist()
    backbone = _backbone()
    f_ok, f_bad = (
        batch_forecast(backbone, [strip_left_nan(c) for c in w.context], H, C, batch_size=256) for w in (w_ok, w_bad)
    )
    n = int(keep.sum())
    for k in ("embedding", "loc", "scale", "quantiles"):
        np.testing.assert_array_equal(getattr(f_ok, k)[:n], getattr(f_bad, k)[:n], err_msg=k)
    stats_ok, stats_bad = (window_stats(w.context[:n], CFG.teacher.align_points) for w in (w_ok, w_bad))
    for a, b in zip(stats_ok, stats_bad):
        np.testing.assert_array_equal(a, b)
    # teeth: the poison reached the futures of windows ending just before e0 and everything after
    assert not np.array_equal(w_ok.future[n - 1], w_bad.future[n - 1])
    assert np.abs(f_bad.loc[n:]).max() > 1e4


def test_c_teacher_level_and_scale_come_from_each_window_context_only(runs):
    # Same keys and contexts, futures turned upside down and shifted by 1e6: which rows are
    # retrieved and how they are weighted must not move (only the answer does). Fails if a
    # stored window's level/scale (or the re-ranking distance) involved its future.
    t = runs.clean.result.teacher
    bad = KnnTeacher(t.keys, t.contexts, -1e3 * t.futures + 1e6, t.config)
    for q in runs.clean.trace.queries:
        a = q.out
        b = bad.query(q.keys, q.contexts, exclude=q.exclude)
        np.testing.assert_array_equal(a.neighbors, b.neighbors)
        np.testing.assert_array_equal(a.weights, b.weights)
        np.testing.assert_array_equal(a.confidence, b.confidence)
        assert not np.allclose(a.quantiles, b.quantiles, equal_nan=True)


def test_c_mase_scale_uses_the_train_part_in_every_run(runs):
    # Fails if the MASE history (the split's train parts, what evaluation scales by) holds
    # validation points, and then validation poisoning moves the test metric's scale.
    ref = None
    for run in (runs.clean, runs.test_poisoned, runs.val_poisoned):
        r = run.result
        assert len(r.split.train) == len(r.split.ids)
        for u, x in zip(r.split.ids, r.split.train):
            np.testing.assert_array_equal(x, runs.parts[u][0], err_msg=u)
        scale = mase_scale(r.split.train, CFG.season_length)
        ref = scale if ref is None else ref
        np.testing.assert_array_equal(scale, ref)


# --------------------------------------------------------------------------- (d) own row
def test_d_training_queries_drop_own_and_overlapping_rows_by_index_but_keep_an_exact_duplicate(runs):
    # Fails if a training query can retrieve its own row or a same-series window whose future
    # overlaps its own, or if exclusion works by distance (then s01's copy of the window,
    # at distance 0, would be dropped as well).
    r = runs.clean.result
    _, win = _the_windows(runs.clean)
    q = _train_query(runs.clean)
    h = win.future.shape[1]
    assert q.teacher is r.teacher and len(q.keys) == len(win) == r.teacher.size
    np.testing.assert_array_equal(q.keys, r.teacher.keys)
    np.testing.assert_array_equal(q.contexts, win.context)
    excl = q.exclude.reshape(len(win), -1)
    assert (excl == np.arange(len(win))[:, None]).any(axis=1).all()  # own row always listed

    def overlapping(nbrs):
        j = np.maximum(nbrs, 0)
        i = np.arange(len(nbrs))[:, None]
        return (nbrs >= 0) & (win.series_index[j] == win.series_index[i]) & (np.abs(win.end[j] - win.end[i]) < h)

    assert not overlapping(q.out.neighbors).any()
    # the exact duplicate (s00 <-> s01, same end) is kept, and it is the heaviest neighbour
    s0, s1 = r.split.ids.index("s00"), r.split.ids.index("s01")
    row_of = {(int(s), int(e)): k for k, (s, e) in enumerate(zip(win.series_index, win.end))}
    pairs = [
        (k, row_of[(b, int(win.end[k]))])
        for a, b in ((s0, s1), (s1, s0))
        for k in np.flatnonzero(win.series_index == a)
        if (b, int(win.end[k])) in row_of
    ]
    assert len(pairs) > 40
    for k, partner in pairs:
        np.testing.assert_array_equal(win.context[k], win.context[partner])
        nbrs, w = q.out.neighbors[k], q.out.weights[k]
        assert nbrs[np.argmax(w)] == partner, (k, partner)
    # teeth: dropping only the own row lets overlapping windows back in on this domain
    own_only = r.teacher.query(q.keys, q.contexts, exclude=np.arange(len(win)))
    assert overlapping(own_only.neighbors).sum() > 0


@pytest.mark.parametrize("stride", [1, 2, 3])
def test_d_overlapping_rows_lists_every_overlapping_window(stride):
    # Brute force over windows with gaps (missing values skip windows), strides and mixed
    # horizons. Fails if overlapping_rows misses a row (e.g. it assumed one window per step)
    # or excludes a window whose future does not overlap.
    rng = np.random.default_rng(stride)
    series = [rng.normal(size=n).astype(np.float32) for n in (40, 33, 50)]
    series[0][[12, 25]] = np.nan
    series[2][30] = np.nan
    h = 5
    for min_future in (None, [5, 2, 3]):
        win = sliding_windows(series, 8, h, stride, 4, min_future=min_future)
        got = overlapping_rows(win, h)
        for i in range(len(win)):
            expect = {
                j
                for j in range(len(win))
                if win.series_index[j] == win.series_index[i] and abs(win.end[j] - win.end[i]) < h
            }
            listed = set(got[i][got[i] >= 0].tolist())
            assert listed == expect, (stride, min_future, i)


# --------------------------------------------------------------------------- (e) val/test queries
def test_e_validation_and_test_queries_retrieve_from_the_train_datastore(runs):
    # Fails if the teacher is rebuilt or extended (e.g. refit on train + validation before
    # the test forecasts), if another store is queried, or if a validation query's
    # context already contains validation points.
    r = runs.clean.result
    _, win = _the_windows(runs.clean)
    parts = [runs.parts[u] for u in r.split.ids]
    val_ctx = left_pad([p[0] for p in parts], C)
    test_ctx = left_pad([np.concatenate([p[0], p[1]]) for p in parts], C)
    assert r.teacher_forecaster.teacher is r.teacher
    phases = {"val_in_fit": 0, "val_after_fit": 0, "test": 0}
    for q in runs.clean.trace.queries:
        assert q.teacher is r.teacher
        assert q.size == q.ntotal == len(win) == r.teacher.size  # train windows, nothing added
        assert ((q.out.neighbors >= -1) & (q.out.neighbors < len(win))).all()
        if q.exclude is not None:
            continue  # the training query: test_d
        if np.array_equal(q.contexts, val_ctx, equal_nan=True):
            phases["val_after_fit" if q.after_fit else "val_in_fit"] += 1
        else:
            np.testing.assert_array_equal(q.contexts, test_ctx)
            assert q.after_fit
            phases["test"] += 1
    assert all(phases.values()), phases  # every kind of query went through the spy


# --------------------------------------------------------------------------- (f) selection
def test_f_poisoning_the_test_part_changes_nothing_fitted_or_selected(runs):
    # Fails if any test target reaches the datastore, the teacher targets, the adapter,
    # early stopping, the alpha choice or the fine-tuned comparison model (or the
    # forecasts, whose contexts end before test).
    a, b = runs.clean.result, runs.test_poisoned.result
    assert not np.array_equal(a.split.truth("test"), b.split.truth("test"), equal_nan=True)  # the poison did land
    _assert_same_datastore(runs.clean, runs.test_poisoned)
    assert _same_weights(a.adapter, b.adapter)
    assert a.alpha == b.alpha and a.alpha_table == b.alpha_table
    assert a.history == b.history
    assert a.finetuned is not None and _same_weights(a.finetuned, b.finetuned)
    assert _untimed(a.finetune_history) == _untimed(b.finetune_history)
    assert a.teacher_confidence == b.teacher_confidence
    np.testing.assert_array_equal(a.split.truth("val"), b.split.truth("val"))
    for (name, qa), (_, qb) in zip(a.val.items(), b.val.items()):
        np.testing.assert_array_equal(qa, qb, err_msg=name)
    for (name, qa), (_, qb) in zip(a.test.items(), b.test.items()):
        np.testing.assert_array_equal(qa, qb, err_msg=name)


def test_f_poisoning_validation_moves_the_selection_but_not_the_datastore(runs):
    # The datastore and the teacher's training targets must not move (fails if validation
    # points enter a window); alpha and early stopping must (fails if they were chosen on
    # anything but validation, e.g. on training loss or on test).
    a, b = runs.clean.result, runs.val_poisoned.result
    _assert_same_datastore(runs.clean, runs.val_poisoned)
    assert not np.array_equal(a.split.truth("val"), b.split.truth("val"), equal_nan=True)
    assert [row["sCRPS"] for row in a.alpha_table] != [row["sCRPS"] for row in b.alpha_table]
    assert a.history[0]["val_pinball"] != b.history[0]["val_pinball"]
    # on this domain the poisoned validation keeps a different epoch (clean: the last one)
    assert [e["epoch"] for e in a.history if e["best"]] != [e["epoch"] for e in b.history if e["best"]]
    assert a.finetune_history[0]["val_sCRPS"] != b.finetune_history[0]["val_sCRPS"]


def test_f_kept_epoch_and_alpha_are_the_validation_argmins(runs):
    # Recomputed from the results: the kept epoch is the first minimum of validation pinball
    # (and training stopped `patience` epochs after it), the restored adapter scores exactly
    # that on validation, and alpha minimises the validation sCRPS of the final fused model.
    # Fails if early stopping or alpha follow training loss, test targets or anything else.
    for run in (runs.clean, runs.val_poisoned):
        r, tr = run.result, run.trace
        vp = [e["val_pinball"] for e in r.history]
        best = int(np.argmin(vp))
        assert [e["best"] for e in r.history] == [e["epoch"] == best for e in r.history]
        assert r.history[-1]["epoch"] == min(CFG.adapter.epochs, best + CFG.adapter.patience)
        val = tr.adapter_calls[0].args["val"]
        assert val_pinball(r.adapter, val, CFG.adapter.batch_size) == pytest.approx(vp[best], rel=1e-6)
        ctx = r.split.history("val")
        q_base = batch_forecast(r.fused.backbone, ctx, H, C, CFG.batch_size).quantiles
        q_mem = (
            FusedForecaster(r.fused.backbone, r.adapter, 1.0, C, H, batch_size=CFG.batch_size).predict(ctx, H).quantiles
        )
        for row in r.alpha_table:
            expect = scaled_crps_pooled(r.split.truth("val"), fuse(q_base, q_mem, row["alpha"]))
            assert row["sCRPS"] == pytest.approx(expect, rel=1e-5), row
        assert r.alpha == min(r.alpha_table, key=lambda row: row["sCRPS"])["alpha"]
        ft = r.finetune_history  # the fine-tuned comparison model: kept step = first validation minimum
        kept = int(np.argmin([row["val_score"] for row in ft]))
        assert [row["best"] for row in ft] == [i == kept for i in range(len(ft))]


def test_f_selection_is_given_validation_targets_and_fitting_no_test_value(runs):
    # choose_alpha, train_adapter and finetune_backbone are each called once, inside _fit,
    # with the validation truth (NaN past a series' own horizon), and fine-tuning with the
    # datastore's windows; nothing handed to _fit holds a test marker. Fails if test (or
    # train) targets are passed to any of them, or test values reach _fit.
    for run in (runs.clean, runs.test_poisoned):
        r, tr = run.result, run.trace
        parts = _parts(run.df, runs.h)
        val = np.full((len(r.split.ids), r.horizon), np.nan, np.float32)
        for i, u in enumerate(r.split.ids):
            val[i, : runs.h[u]] = parts[u][1]
        assert len(tr.alpha_calls) == 1 and tr.alpha_calls[0].in_fit
        np.testing.assert_array_equal(tr.alpha_calls[0].args["y_val"], val)
        assert len(tr.adapter_calls) == 1 and tr.adapter_calls[0].in_fit
        y = tr.adapter_calls[0].args["val"].y.numpy()
        assert y.shape == val.shape and np.array_equal(np.isnan(y), np.isnan(val))
        assert len(tr.finetune_calls) == 1 and tr.finetune_calls[0].in_fit
        ft = tr.finetune_calls[0].args
        np.testing.assert_array_equal(ft["val_truth"], val)
        for u, x in zip(r.split.ids, ft["val_contexts"]):
            np.testing.assert_array_equal(x, parts[u][0])
        windows = ft["train_windows"]
        np.testing.assert_array_equal(windows.context, r.teacher.contexts)
        np.testing.assert_array_equal(windows.future, r.teacher.futures)
        marks = TEST_MARK + np.arange(len(r.split.ids) + 1, dtype=np.float32)
        for arr in _arrays_in(tr.fit_args):
            assert not np.isin(arr, marks).any()
            assert not (np.abs(arr[np.isfinite(arr)]) >= 5e4).any()


def test_f_test_targets_cannot_be_read_until_fitting_is_over(runs, locked_run):
    # split.test is replaced by an object that raises on any use before _fit returns; the
    # run still completes and matches the unguarded one. Fails if any code before the end
    # of fitting (alpha, early stopping, the datastore, ...) touches the test split.
    run = locked_run
    # onboarding never reads the test targets at all (scoring them is evaluation's job)
    assert run.trace.fit_done and run.trace.test_reads == 0
    a, b = runs.clean.result, run.result
    assert a.alpha == b.alpha and a.alpha_table == b.alpha_table and a.history == b.history
    assert _same_weights(a.adapter, b.adapter) and _same_weights(a.finetuned, b.finetuned)
    np.testing.assert_array_equal(a.split.truth("test"), b.split.truth("test"))  # opens the guard: fitting is over
    assert run.trace.test_reads > 0
    for (name, qa), (_, qb) in zip(a.test.items(), b.test.items()):
        np.testing.assert_array_equal(qa, qb, err_msg=name)
    # teeth: the guard does raise while fitting is not over
    guard = _Locked(pd.DataFrame({"y": [1.0]}), SimpleNamespace(fit_done=False, test_reads=0))
    for touch in (lambda g: g.y, lambda g: g["y"], len, lambda g: np.asarray(g)):
        with pytest.raises(AssertionError):
            touch(guard)
