"""The scoring protocol helpers both servers share (models/forecasting/protocol.py)."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from models.forecasting.protocol import ANSWER_COLUMNS, forecast_frame, parse_context, parse_horizon, request_frame


def test_split_and_records_give_the_same_frame():
    rows = [["b", 2, 4.0], ["a", 1, 1.0], ["a", 2, None], ["b", 1, 3.0]]
    split, params = request_frame({"dataframe_split": {"columns": ["unique_id", "ds", "y"], "data": rows},
                                   "params": {"horizon": 3, "domain": "d"}})
    records, _ = request_frame({"dataframe_records": [dict(zip(["unique_id", "ds", "y"], r)) for r in rows]})
    assert params == {"horizon": 3, "domain": "d"}
    ids, values, stamps = parse_context(split)
    ids2, values2, _ = parse_context(records)
    assert ids == ids2 == ["a", "b"]
    np.testing.assert_array_equal(values[0], [1.0, np.nan])
    np.testing.assert_array_equal(values2[1], [3.0, 4.0])
    assert list(stamps[1]) == [1, 2]


@pytest.mark.parametrize("body, fragment", [
    ([1, 2], "JSON object"),
    ({"inputs": []}, "dataframe_split"),
    ({"dataframe_split": {"columns": ["unique_id", "ds", "y"], "data": [["a", 1]]}}, "3 values"),
    ({"dataframe_split": {"columns": "unique_id", "data": []}}, "columns"),
    ({"dataframe_records": {"a": 1}}, "list of objects"),
    ({"dataframe_records": [], "params": [1]}, "params"),
])
def test_malformed_bodies_raise_value_error(body, fragment):
    with pytest.raises(ValueError, match=fragment):
        request_frame(body)


@pytest.mark.parametrize("value, expected", [(5, 5), ("7", 7), (3.0, 3)])
def test_horizon_accepts_integers(value, expected):
    assert parse_horizon(value, 8) == expected


@pytest.mark.parametrize("value, fragment", [("soon", "integer"), (2.5, "integer"), (True, "integer"),
                                             (None, "integer"), (0, ">= 1"), (9, "trained horizon 8")])
def test_horizon_rejects(value, fragment):
    with pytest.raises(ValueError, match=fragment):
        parse_horizon(value, 8)


@pytest.mark.parametrize("frame, fragment", [
    (pd.DataFrame({"unique_id": ["a"], "y": [1.0]}), "ds"),
    (pd.DataFrame({"unique_id": ["a"], "ds": [1], "y": ["x"]}), "not numeric"),
    (pd.DataFrame({"unique_id": ["a"], "ds": [1], "y": [np.inf]}), "infinite"),
    (pd.DataFrame({"unique_id": ["a", "a"], "ds": [1, 1], "y": [1.0, 2.0]}), "duplicate"),
    (pd.DataFrame({"unique_id": ["a"], "ds": ["not a date"], "y": [1.0]}), "timestamps"),
    (pd.DataFrame({"unique_id": ["a"], "ds": [1.5], "y": [1.0]}), "integer steps"),
    (pd.DataFrame({"unique_id": [], "ds": [], "y": []}), "no context rows"),
])
def test_bad_context_raises_value_error(frame, fragment):
    with pytest.raises(ValueError, match=fragment):
        parse_context(frame)


def test_answer_frame_continues_each_series():
    frame = pd.DataFrame({"item_id": ["s"] * 3, "timestamp": ["2024-01-31", "2024-02-29", "2024-03-31"],
                          "target": [1.0, 2.0, 3.0]})  # the accepted aliases
    ids, values, stamps = parse_context(frame)
    q = np.sort(np.random.default_rng(0).normal(size=(1, 2, 9)), axis=-1)
    out = forecast_frame(ids, stamps, q, None)
    assert list(out.columns) == ANSWER_COLUMNS
    assert list(out["ds"]) == ["2024-04-30T00:00:00", "2024-05-31T00:00:00"]  # month ends inferred
    np.testing.assert_array_equal(out["mean"], q[0, :, 4])
