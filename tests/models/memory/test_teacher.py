import json
import warnings

import faiss
import numpy as np
import pytest

from models.memory import faiss_index
from models.memory import teacher as teacher_mod
from models.memory.config import TeacherConfig
from models.memory.teacher import KnnTeacher, weighted_quantiles, window_stats, window_stats_chunked
from models.memory.windows import sliding_windows


def _store(n_series=12, length=60, c=24, h=6, seed=0):
    """Windows of sines with distinct periods, phases and magnitudes; keys = normalised context."""
    rng = np.random.default_rng(seed)
    t = np.arange(length)
    series = [
        rng.uniform(1, 500) + rng.uniform(1, 50) * np.sin(2 * np.pi * t / rng.uniform(5, 20) + rng.uniform(0, 6))
        for _ in range(n_series)
    ]
    w = sliding_windows([s.astype(np.float32) for s in series], c, h)
    return w, _keys(w.context)


def _keys(contexts):
    level, scale = window_stats(contexts, 16)
    return np.nan_to_num((contexts - level[:, None]) / scale[:, None])


def test_own_row_is_excluded_by_index_but_an_identical_duplicate_is_kept():
    w, keys = _store()
    n = len(w)
    # row n duplicates row 0 exactly: same key, context and future
    keys2 = np.concatenate([keys, keys[:1]])
    teacher = KnnTeacher(keys2, np.concatenate([w.context, w.context[:1]]), np.concatenate([w.future, w.future[:1]]))
    exclude = np.arange(n + 1)
    out = teacher.query(keys2, teacher.contexts, exclude=exclude)
    assert not (out.neighbors == exclude[:, None]).any()  # no query ever sees its own row
    assert n in out.neighbors[0]  # the duplicate is still a legitimate neighbour
    assert out.neighbors[0, np.argmax(out.weights[0])] == n  # ... and the closest one
    assert 0 in out.neighbors[n]  # symmetric: the duplicate's query finds row 0


def test_weights_confidence_and_sorted_quantiles():
    w, keys = _store()
    cfg = TeacherConfig(top_k_candidates=30, k=10)
    teacher = KnnTeacher(keys, w.context, w.future, cfg)
    out = teacher.query(keys, w.context, exclude=np.arange(len(w)))
    m = len(w)
    assert out.quantiles.shape == (m, 6, 9) and out.neighbors.shape == (m, 10)
    np.testing.assert_allclose(out.weights.sum(1), 1.0, rtol=1e-5)
    assert (np.diff(out.quantiles, axis=-1) >= 0).all()
    np.testing.assert_allclose(out.confidence, out.weights.max(1))
    # neighbours are ordered by re-ranked distance: weights never increase along a row
    assert (np.diff(out.weights, axis=1) <= 1e-7).all()
    # the normalised quantiles are the raw ones in the query's own level/scale
    level, scale = window_stats(w.context, 16)
    np.testing.assert_allclose(
        out.norm_quantiles * scale[:, None, None] + level[:, None, None], out.quantiles, rtol=1e-4, atol=1e-3
    )


def test_query_identical_to_a_stored_pattern_retrieves_its_future():
    w, keys = _store()
    teacher = KnnTeacher(keys, w.context, w.future)
    rows = np.array([0, 17, len(w) - 1])
    out = teacher.query(keys[rows], w.context[rows])  # validation-style: nothing excluded
    assert (out.neighbors[:, 0] == rows).all()
    assert (out.confidence > 0.5).all()
    np.testing.assert_allclose(out.quantiles[..., 4], w.future[rows], rtol=1e-5)


def test_retrieved_futures_are_shifted_and_rescaled_to_the_query():
    # the query is a stored pattern times 10 plus 1000: same shape in normalised space
    w, keys = _store()
    teacher = KnnTeacher(keys, w.context, w.future)
    q_ctx = w.context[:1] * 10 + 1000
    out = teacher.query(_keys(q_ctx), q_ctx)
    assert out.neighbors[0, 0] == 0
    np.testing.assert_allclose(out.quantiles[0, :, 4], w.future[0] * 10 + 1000, rtol=1e-4)


def test_weighted_quantiles_match_unweighted_and_step_rule():
    rng = np.random.default_rng(1)
    v = rng.normal(size=(1, 2000, 1))
    got = weighted_quantiles(v, np.full((1, 2000), 1 / 2000))[0, 0]
    np.testing.assert_allclose(got, np.quantile(v[0, :, 0], np.arange(1, 10) / 10), atol=0.02)
    # one dominant sample covers every level; unused slots (weight 0) are ignored
    v = np.array([[[3.0], [1.0], [np.nan]]])
    got = weighted_quantiles(v, np.array([[0.05, 0.95, 0.0]]))[0, 0]
    assert got.tolist() == [1.0] * 9
    assert np.isnan(weighted_quantiles(v, np.zeros((1, 3)))).all()


def test_save_load_roundtrip(tmp_path):
    w, keys = _store()
    teacher = KnnTeacher(keys, w.context, w.future, TeacherConfig(k=7))
    a = teacher.query(keys[:20], w.context[:20], exclude=np.arange(20))
    loaded = KnnTeacher.load(teacher.save(tmp_path / "t"))
    b = loaded.query(keys[:20], w.context[:20], exclude=np.arange(20))
    assert loaded.config == teacher.config and loaded.size == teacher.size
    np.testing.assert_array_equal(a.neighbors, b.neighbors)
    np.testing.assert_array_equal(a.quantiles, b.quantiles)


def test_bad_index_type_and_context_length():
    w, keys = _store()
    with pytest.raises(ValueError):
        KnnTeacher(keys, w.context, w.future, TeacherConfig(index_type="ivfpq"))
    teacher = KnnTeacher(keys, w.context, w.future)
    with pytest.raises(ValueError):
        teacher.query(keys[:2], w.context[:2, 1:])


# index choice ----------------------------------------------------------------------------
def _clustered(n, d=32, n_clusters=100, seed=0):
    """Points around 100 overlapping centres: ANN has to work for its recall."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(n_clusters, d)).astype(np.float32)
    draw = lambda m: centres[rng.integers(0, n_clusters, m)] + 0.7 * rng.normal(size=(m, d)).astype(np.float32)  # noqa: E731
    return draw(n), draw(300)


def _teacher_on_keys(keys, cfg):
    n = len(keys)
    ctx = np.random.default_rng(1).normal(size=(n, 8)).astype(np.float32)
    return KnnTeacher(keys, ctx, np.zeros((n, 2), np.float32), cfg)


def _recall(index, xb, xq, k=50):
    _, exact = faiss.knn(xq, xb, k)
    _, approx = index.search(xq, k)
    return np.mean([len(set(a) & set(b)) / k for a, b in zip(approx, exact)])


def test_auto_index_is_exact_up_to_the_threshold_and_ivf_past_it():
    keys, _ = _clustered(400)
    assert TeacherConfig().index_type == "auto"
    assert _teacher_on_keys(keys, TeacherConfig(exact_max=400)).index_type == "flat"
    t = _teacher_on_keys(keys, TeacherConfig(exact_max=399))
    assert t.index_type == "ivf" and isinstance(faiss.downcast_index(t.index), faiss.IndexIVFFlat)
    info = t.index_info()
    assert info["nlist"] == round(4 * np.sqrt(400)) and info["nprobe"] == min(64, info["nlist"]) and not info["gpu"]
    assert TeacherConfig(nlist_max=50).resolve_nlist(1_000_000) == 50  # capped
    assert TeacherConfig().resolve_nlist(3) == 3  # never more lists than rows
    assert _teacher_on_keys(keys, TeacherConfig(index_type="hnsw")).index_type == "hnsw"
    assert _teacher_on_keys(keys, TeacherConfig(index_type="flat", exact_max=1)).index_type == "flat"


@pytest.mark.parametrize("kind", ["ivf", "hnsw"])
def test_approximate_index_recall_at_50_vs_exact(kind):
    xb, xq = _clustered(10_000)
    teacher = _teacher_on_keys(xb, TeacherConfig(index_type=kind))
    assert teacher.index_type == kind
    assert _recall(teacher.index, xb, xq) >= 0.95
    # the bound is not trivially met: a starved search on the same data misses many
    starved = TeacherConfig(index_type=kind, nprobe=1, hnsw_m=4, ef_search=1)
    assert _recall(_teacher_on_keys(xb, starved).index, xb, xq) < 0.8


def test_ivf_build_is_seeded():
    xb, xq = _clustered(3000)
    a, b = (_teacher_on_keys(xb, TeacherConfig(index_type="ivf", nprobe=2, seed=5)) for _ in range(2))
    np.testing.assert_array_equal(a.index.search(xq, 20)[1], b.index.search(xq, 20)[1])


@pytest.mark.parametrize("kind,param", [("ivf", "nprobe"), ("hnsw", "ef_search")])
def test_save_load_keeps_index_type_and_search_params(tmp_path, kind, param):
    w, keys = _store()
    cfg = TeacherConfig(k=5, index_type=kind, nprobe=3, ef_search=77)
    teacher = KnnTeacher(keys, w.context, w.future, cfg)
    a = teacher.query(keys[:30], w.context[:30], exclude=np.arange(30))
    path = teacher.save(tmp_path / "t")
    meta = json.loads((path / "teacher.json").read_text())
    assert meta["index_type"] == kind and meta["index"]["type"] == kind
    # faiss keeps its own copy of the parameter in index.faiss: make it disagree to see it re-applied
    raw = faiss.read_index(str(path / "index.faiss"))
    if kind == "ivf":
        raw.nprobe = 1
    else:
        raw.hnsw.efSearch = 5
    faiss.write_index(raw, str(path / "index.faiss"))
    loaded = KnnTeacher.load(path)
    assert loaded.config == cfg and loaded.index_type == kind
    got = loaded.index_info()
    assert got["nprobe" if kind == "ivf" else "ef_search"] == (3 if kind == "ivf" else 77)
    b = loaded.query(keys[:30], w.context[:30], exclude=np.arange(30))
    np.testing.assert_array_equal(a.neighbors, b.neighbors)
    np.testing.assert_array_equal(a.quantiles, b.quantiles)
    # search-time settings can be changed at load, nothing else
    value = 2 if kind == "ivf" else 9
    changed = KnnTeacher.load(path, **{param: value}).index_info()
    assert changed["nprobe" if kind == "ivf" else "ef_search"] == value
    with pytest.raises(ValueError):
        KnnTeacher.load(path, index_type="flat")


def test_gpu_is_opt_out_and_falls_back_to_cpu_without_one():
    w, keys = _store()
    assert not KnnTeacher(keys, w.context, w.future, TeacherConfig(use_gpu=False)).on_gpu
    if faiss_index._gpu_available():
        pytest.skip("a GPU is present: the fallback cannot be seen")
    with pytest.warns(RuntimeWarning, match="no GPU"):
        t = KnnTeacher(keys, w.context, w.future, TeacherConfig(use_gpu=True))
    assert not t.on_gpu and t.index is t._cpu_index
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert not KnnTeacher(keys, w.context, w.future).on_gpu  # auto: silent


# memory ------------------------------------------------------------------------------------
def test_chunked_row_stats_and_no_copies_of_float32_inputs(monkeypatch):
    w, keys = _store()
    ctx = w.context.copy()
    ctx[::7, :10] = np.nan
    level, scale = window_stats(ctx, 16)
    lc, sc = window_stats_chunked(ctx, 16, chunk=13)
    np.testing.assert_array_equal(level, lc)
    np.testing.assert_array_equal(scale, sc)
    teacher = KnnTeacher(keys.astype(np.float32), ctx, w.future)
    assert teacher.contexts is ctx and teacher.futures is w.future  # used as given
    assert not hasattr(teacher, "_ctx_norm") and not hasattr(teacher, "_fut_norm")
    # query results do not depend on the query chunking
    full = teacher.query(keys, ctx, exclude=np.arange(len(ctx)))
    monkeypatch.setattr(teacher_mod, "CHUNK", 7)
    monkeypatch.setattr(teacher_mod, "SEARCH_CHUNK", 20)
    small = teacher.query(keys, ctx, exclude=np.arange(len(ctx)))
    for name in ("neighbors", "weights", "quantiles", "norm_quantiles", "confidence"):
        np.testing.assert_array_equal(getattr(full, name), getattr(small, name))


# NaN-padded futures ------------------------------------------------------------------------
def test_weighted_quantiles_skip_nan_steps_and_renormalise():
    # values [M=1, K=3, H=3]: the heaviest neighbour's future stops after step 0, the next after step 1
    v = np.array([[[30.0, np.nan, np.nan], [20.0, 20.0, np.nan], [10.0, 10.0, 10.0]]])
    w = np.array([[0.55, 0.3, 0.15]])
    q = weighted_quantiles(v, w)  # [1, 3, 9]
    # step 0: all three; cdf over the sorted values 10, 20, 30 = 0.15, 0.45, 1.0
    assert q[0, 0].tolist() == [10.0] + [20.0] * 3 + [30.0] * 5
    # step 1: only 20 (0.3) and 10 (0.15), renormalised to 2/3 and 1/3
    assert q[0, 1].tolist() == [10.0] * 3 + [20.0] * 6
    # step 2: only 10 left, whatever its weight
    assert q[0, 2].tolist() == [10.0] * 9
    # a step no neighbour reaches is NaN, the others stay finite
    v2 = v.copy()
    v2[:, :, 2] = np.nan
    q2 = weighted_quantiles(v2, w)
    assert np.isnan(q2[0, 2]).all() and np.isfinite(q2[0, :2]).all()
    # without NaNs nothing changes vs. the weights as given
    full = np.random.default_rng(0).normal(size=(4, 5, 3))
    ww = np.random.default_rng(1).dirichlet(np.ones(5), size=4)
    q3 = weighted_quantiles(full, ww)
    cut = full.copy()
    cut[:, 0, 2] = np.nan  # the first neighbour has no value at the last step
    q4 = weighted_quantiles(cut, ww)
    np.testing.assert_array_equal(q3[:, :2], q4[:, :2])
    w_rest = ww[:, 1:] / ww[:, 1:].sum(1, keepdims=True)
    np.testing.assert_allclose(q4[:, 2], weighted_quantiles(full[:, 1:], w_rest)[:, 2])


def test_query_with_nan_padded_futures():
    w, keys = _store(h=6)
    fut = w.future.copy()
    fut[:, 4:] = np.nan  # every stored future is 2 steps shorter than H
    fut[0, 2:] = np.nan
    teacher = KnnTeacher(keys, w.context, fut)
    out = teacher.query(keys[:1], w.context[:1])  # row 0 is its own nearest neighbour
    assert out.neighbors[0, 0] == 0
    assert np.isfinite(out.quantiles[0, :4]).all() and np.isnan(out.quantiles[0, 4:]).all()
    assert np.isnan(out.norm_quantiles[0, 4:]).all()
    np.testing.assert_allclose(out.quantiles[0, :2, 4], w.future[0, :2], rtol=1e-5)  # its own future where known
    assert (np.diff(out.quantiles[0, :4], axis=-1) >= 0).all()
