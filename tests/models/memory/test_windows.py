import numpy as np
import pytest

from models.forecasting.inputs import left_pad, strip_left_nan
from models.memory.windows import sliding_windows


def test_full_context_windows_lie_inside_the_array():
    x = np.arange(20, dtype=np.float32)
    w = sliding_windows([x], context_length=5, horizon=3)
    # ends 5..17: every context and future inside x
    assert len(w) == 13
    assert w.end.tolist() == list(range(5, 18))
    for c, f, e in zip(w.context, w.future, w.end):
        assert c.tolist() == x[e - 5 : e].tolist()
        assert f.tolist() == x[e : e + 3].tolist()
    assert (w.end + 3 <= len(x)).all()


def test_short_context_is_left_padded_and_stride_is_anchored_at_the_end():
    x = np.arange(1, 11, dtype=np.float32)  # 1..10
    w = sliding_windows([x], context_length=6, horizon=2, stride=3, min_context=2)
    assert w.end.tolist() == [2, 5, 8]  # the most recent window (end 8) is always kept
    assert np.isnan(w.context[0, :4]).all() and w.context[0, 4:].tolist() == [1, 2]
    assert w.future[-1].tolist() == [9, 10]
    assert strip_left_nan(w.context[0]).tolist() == [1, 2]
    assert [strip_left_nan(c).size for c in w.context] == [2, 5, 6]


def test_series_index_and_skips():
    a = np.arange(10, dtype=np.float32)
    short = np.arange(3, dtype=np.float32)  # no room for context + future
    gap = np.arange(10, dtype=np.float32)
    gap[7] = np.nan  # futures covering a missing value are skipped
    w = sliding_windows([a, short, gap], context_length=4, horizon=2)
    assert set(w.series_index.tolist()) == {0, 2}
    assert not np.isnan(w.future).any()
    assert sorted(w.end[w.series_index == 2].tolist()) == [4, 5, 8]


def test_empty_and_bad_arguments():
    w = sliding_windows([np.ones(3, np.float32)], context_length=4, horizon=2)
    assert len(w) == 0 and w.context.shape == (0, 4) and w.future.shape == (0, 2)
    with pytest.raises(ValueError):
        sliding_windows([np.ones(10)], context_length=4, horizon=2, min_context=5)


def test_left_pad():
    out = left_pad([np.array([1.0, 2.0]), np.arange(10.0)], 4)
    assert np.isnan(out[0, :2]).all() and out[0, 2:].tolist() == [1, 2]
    assert out[1].tolist() == [6, 7, 8, 9]


def test_min_future_lets_short_horizon_series_give_right_padded_windows():
    short, long = np.arange(10, dtype=np.float32), np.arange(100, 130, dtype=np.float32)
    w = sliding_windows([short, long], context_length=4, horizon=5, min_context=2, min_future=[2, 5])
    s = w.series_index == 0
    # the short series: ends up to len - 2; futures run to its end, then NaN (never past it)
    assert w.end[s].tolist() == list(range(2, 9))
    last = w.future[s][-1]
    assert last[:2].tolist() == [8, 9] and np.isnan(last[2:]).all()
    for f, e in zip(w.future[s], w.end[s]):
        known = f[~np.isnan(f)]
        assert known.tolist() == short[e : e + 5].tolist()
    # the other series keeps full futures only
    assert not np.isnan(w.future[~s]).any()
    # same call without min_future: the short series only gives full-future windows
    w5 = sliding_windows([short, long], context_length=4, horizon=5, min_context=2)
    assert (w5.series_index == 0).sum() == 4
    with pytest.raises(ValueError, match="min_future"):
        sliding_windows([short], 4, 5, min_future=[6])
