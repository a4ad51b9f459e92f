"""Rolling validation origins: how many windows each series spares, where they sit, and that no
window's target is ever in its context, in the train part or in the test window."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from models.splits import SeriesSplit, spare_origins, split_frame, train_part

H = 4


def _frame(lengths: dict[str, int]) -> pd.DataFrame:
    # y = 1000 * series number + position: every value says where it came from
    return pd.concat(
        [
            pd.DataFrame({"unique_id": uid, "ds": np.arange(n), "y": 1000.0 * k + np.arange(n)})
            for k, (uid, n) in enumerate(lengths.items())
        ],
        ignore_index=True,
    )


# a long series (3 origins), one that spares 2, one that spares 1, one just long enough, one too short
LENGTHS = {"long": 40, "two": 16, "one": 12, "tiny": 2 * H + 1, "short": 2 * H}


def test_each_series_spares_what_it_can_and_keeps_a_horizon_of_train():
    assert spare_origins(np.array([40, 16, 12, 9, 8]), np.full(5, H), 3).tolist() == [3, 2, 1, 1, 1]
    split = SeriesSplit.from_frame(_frame(LENGTHS), H, origins=3)
    assert split.ids == ["long", "one", "tiny", "two"] and split.skipped == ["short"]
    origins = dict(zip(split.ids, split.origins.tolist()))
    assert origins == {"long": 3, "two": 2, "one": 1, "tiny": 1}
    assert split.origin_counts() == {1: 2, 2: 1, 3: 1}
    train = dict(zip(split.ids, split.train))
    assert len(train["long"]) == 40 - 4 * H and len(train["two"]) == H and len(train["tiny"]) == 1


def test_windows_are_a_horizon_apart_before_test_and_see_only_their_past():
    df = _frame(LENGTHS)
    split = SeriesSplit.from_frame(df, H, origins=3)
    w = split.windows("val")
    assert len(w) == int(split.origins.sum()) == 7 and w.truth.shape == (7, H)
    full = {u: g["y"].to_numpy(np.float32) for u, g in df.groupby("unique_id")}
    for context, target, i, origin in zip(w.contexts, w.truth, w.series, w.origin):
        y = full[split.ids[i]]
        start = len(y) - H - origin * H  # origin 1 ends right where the test window starts
        np.testing.assert_array_equal(context, y[:start])  # the whole past, nothing after it
        np.testing.assert_array_equal(target, y[start : start + H])
    long = np.flatnonzero(w.series == split.ids.index("long"))
    assert w.origin[long].tolist() == [3, 2, 1]  # earliest first
    test = split.windows("test")
    for context, target, uid in zip(test.contexts, test.truth, split.ids):
        np.testing.assert_array_equal(context, full[uid][:-H])
        np.testing.assert_array_equal(target, full[uid][-H:])
    # no validation target is in the train part, and none is a test target
    train_values = set(np.concatenate(split.train).tolist())
    test_values = set(test.truth.ravel().tolist())
    assert not (set(w.truth.ravel().tolist()) & (train_values | test_values))


def test_pretraining_never_sees_a_validation_window_and_the_split_round_trips(tmp_path):
    df = _frame(LENGTHS)
    split = SeriesSplit.from_frame(df, H, origins=3)
    corpus = train_part(df, H, origins=3)
    assert set(corpus["y"]).isdisjoint(split.windows("val").truth.ravel().tolist())
    assert len(corpus) < len(train_part(df, H))  # more origins, less to pre-train on
    back = SeriesSplit.load(split.save(tmp_path / "split.npz"))
    assert back.origins.tolist() == split.origins.tolist()
    np.testing.assert_array_equal(back.windows("val").truth, split.windows("val").truth)
    with pytest.raises(ValueError, match="origins"):
        split_frame(df, H, origins=0)
