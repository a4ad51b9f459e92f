import numpy as np
import pytest

from models.teacher import KnnTeacher, TeacherConfig, weighted_quantiles, window_stats
from models.windows import sliding_windows


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
    assert ((out.entropy >= 0) & (out.entropy <= 1 + 1e-6)).all()
    assert ((out.effective_k >= 1 - 1e-5) & (out.effective_k <= 10 + 1e-4)).all()
    # neighbours are ordered by re-ranked distance: weights never increase along a row
    assert (np.diff(out.weights, axis=1) <= 1e-7).all()
    # the normalised quantiles are the raw ones in the query's own level/scale
    level, scale = window_stats(w.context, 16)
    np.testing.assert_allclose(out.norm_quantiles * scale[:, None, None] + level[:, None, None], out.quantiles, rtol=1e-4, atol=1e-3)


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
        KnnTeacher(keys, w.context, w.future, TeacherConfig(index_type="ivf"))
    teacher = KnnTeacher(keys, w.context, w.future)
    with pytest.raises(ValueError):
        teacher.query(keys[:2], w.context[:2, 1:])
