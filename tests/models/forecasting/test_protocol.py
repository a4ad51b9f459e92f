"""The scoring protocol helpers both servers share (models/forecasting/protocol.py)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from models.forecasting.protocol import (
    ANSWER_COLUMNS,
    forecast_frame,
    future_index,
    future_timestamps,
    parse_context,
    parse_horizon,
    request_frame,
)


def test_split_and_records_give_the_same_frame():
    rows = [["b", 2, 4.0], ["a", 1, 1.0], ["a", 2, None], ["b", 1, 3.0]]
    split, params = request_frame(
        {
            "dataframe_split": {"columns": ["unique_id", "ds", "y"], "data": rows},
            "params": {"horizon": 3, "domain": "d"},
        }
    )
    records, _ = request_frame({"dataframe_records": [dict(zip(["unique_id", "ds", "y"], r)) for r in rows]})
    assert params == {"horizon": 3, "domain": "d"}
    ids, values, stamps = parse_context(split)
    ids2, values2, _ = parse_context(records)
    assert ids == ids2 == ["a", "b"]
    np.testing.assert_array_equal(values[0], [1.0, np.nan])
    np.testing.assert_array_equal(values2[1], [3.0, 4.0])
    assert list(stamps[1]) == [1, 2]


@pytest.mark.parametrize(
    "body, fragment",
    [
        ([1, 2], "JSON object"),
        ({"inputs": []}, "dataframe_split"),
        ({"dataframe_split": {"columns": ["unique_id", "ds", "y"], "data": [["a", 1]]}}, "3 values"),
        ({"dataframe_split": {"columns": "unique_id", "data": []}}, "columns"),
        ({"dataframe_records": {"a": 1}}, "list of objects"),
        ({"dataframe_records": [], "params": [1]}, "params"),
    ],
)
def test_malformed_bodies_raise_value_error(body, fragment):
    with pytest.raises(ValueError, match=fragment):
        request_frame(body)


@pytest.mark.parametrize("value, expected", [(5, 5), ("7", 7), (3.0, 3)])
def test_horizon_accepts_integers(value, expected):
    assert parse_horizon(value, 8) == expected


@pytest.mark.parametrize(
    "value, fragment",
    [
        ("soon", "integer"),
        (2.5, "integer"),
        (True, "integer"),
        (None, "integer"),
        (0, ">= 1"),
        (9, "trained horizon 8"),
    ],
)
def test_horizon_rejects(value, fragment):
    with pytest.raises(ValueError, match=fragment):
        parse_horizon(value, 8)


@pytest.mark.parametrize(
    "frame, fragment",
    [
        (pd.DataFrame({"unique_id": ["a"], "y": [1.0]}), "ds"),
        (pd.DataFrame({"unique_id": ["a"], "ds": [1], "y": ["x"]}), "not numeric"),
        (pd.DataFrame({"unique_id": ["a"], "ds": [1], "y": [np.inf]}), "infinite"),
        (pd.DataFrame({"unique_id": ["a", "a"], "ds": [1, 1], "y": [1.0, 2.0]}), "duplicate"),
        (pd.DataFrame({"unique_id": ["a"], "ds": ["not a date"], "y": [1.0]}), "timestamps"),
        (pd.DataFrame({"unique_id": ["a"], "ds": [1.5], "y": [1.0]}), "integer steps"),
        (pd.DataFrame({"unique_id": [], "ds": [], "y": []}), "no context rows"),
    ],
)
def test_bad_context_raises_value_error(frame, fragment):
    with pytest.raises(ValueError, match=fragment):
        parse_context(frame)


def test_answer_frame_continues_each_series():
    frame = pd.DataFrame(
        {"item_id": ["s"] * 3, "timestamp": ["2024-01-31", "2024-02-29", "2024-03-31"], "target": [1.0, 2.0, 3.0]}
    )  # the accepted aliases
    ids, values, stamps = parse_context(frame)
    q = np.sort(np.random.default_rng(0).normal(size=(1, 2, 9)), axis=-1)
    out = forecast_frame(ids, future_timestamps(ids, stamps, 2, None), q)
    assert list(out.columns) == ANSWER_COLUMNS
    assert list(out["ds"]) == ["2024-04-30T00:00:00", "2024-05-31T00:00:00"]  # month ends inferred
    np.testing.assert_array_equal(out["median"], q[0, :, 4])
    np.testing.assert_allclose(out["mean"], q[0].mean(axis=-1))  # the expected value, not the median
    # the fast JSON answer says the same
    fast = json.loads(answer_json(ids, future_timestamps(ids, stamps, 2, None), q))["predictions"]
    assert [r["median"] for r in fast] == pytest.approx(list(q[0, :, 4]))
    assert [r["mean"] for r in fast] == pytest.approx(list(q[0].mean(axis=-1)))


def _stamps(*dates) -> pd.Series:
    return pd.Series(pd.to_datetime(list(dates)))


@pytest.mark.parametrize(
    "context, domain_freq, expected",
    [
        # month ends stay month ends, even where the domain was ingested as month starts
        (pd.Series(pd.date_range("2017-01-31", "2018-03-31", freq="ME")), "MS", ["2018-04-30", "2018-05-31"]),
        (pd.Series(pd.date_range("2017-01-01", "2018-03-01", freq="MS")), "ME", ["2018-04-01", "2018-05-01"]),
        # weekly Mondays stay Mondays (not month starts)
        (pd.Series(pd.date_range("2018-01-01", periods=10, freq="W-MON")), "MS", ["2018-03-12", "2018-03-19"]),
        (
            pd.Series(pd.date_range("2018-01-01", periods=60, freq="30min")),
            None,
            ["2018-01-02 06:00:00", "2018-01-02 06:30:00"],
        ),
        (pd.Series(pd.date_range("2018-01-01", periods=10, freq="B")), "D", ["2018-01-15", "2018-01-16"]),
        # too short to tell: the domain's frequency, anchored on the series' own last point
        (_stamps("2018-03-31"), "ME", ["2018-04-30", "2018-05-31"]),
        (_stamps("2018-02-28", "2018-03-31"), None, ["2018-04-30", "2018-05-31"]),
        (_stamps("2018-03-01", "2018-04-01"), "MS", ["2018-05-01", "2018-06-01"]),
    ],
)
def test_future_timestamps_continue_the_callers_own(context, domain_freq, expected):
    assert future_index("s", context, 2, domain_freq) == list(pd.to_datetime(expected))


def test_integer_steps_continue_as_integers_and_irregular_timestamps_are_refused():
    assert future_index("s", pd.Series([3, 4, 5]), 3) == [6, 7, 8]
    assert future_index("s", pd.Series([0, 5, 10]), 2) == [15, 20]
    with pytest.raises(ValueError, match="irregular"):
        future_index("s", _stamps("2018-01-01", "2018-01-02", "2018-01-05"), 2, "D")
    with pytest.raises(ValueError, match="single timestamp"):
        future_index("s", _stamps("2018-01-01"), 2, None)


# --------------------------------------------------------------- the hot path equals the pandas path
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from models.forecasting.protocol import answer_json, parse_rows  # noqa: E402


@st.composite
def _bodies(draw):
    n_series = draw(st.integers(1, 4))
    kind = draw(st.sampled_from(["int", "date", "datetime", "hour"]))
    rows = []
    for k in range(n_series):
        n = draw(st.integers(1, 30))
        start = draw(st.integers(0, 50))
        if kind == "int":
            stamps = [start + i * draw(st.sampled_from([1, 1, 7])) for i in range(n)]
        else:
            freq = {"date": "MS", "datetime": "D", "hour": "h"}[kind]
            index = pd.date_range("2001-01-01", periods=n + start, freq=freq)[start:]
            stamps = [str(t.date()) if kind == "date" else t.strftime("%Y-%m-%dT%H:%M:%S") for t in index]
        values = draw(
            st.lists(st.one_of(st.none(), st.floats(-1e9, 1e9), st.integers(-(10**6), 10**6)), min_size=n, max_size=n)
        )
        rows += [[draw(st.sampled_from(["a", "b", "B", "10", "é"])) + str(k), t, v] for t, v in zip(stamps, values)]
    return draw(st.permutations(rows))


@settings(max_examples=300, deadline=None, derandomize=True, database=None)
@given(rows=_bodies())
def test_the_fast_parser_and_answer_match_the_pandas_ones(rows):
    columns = ["unique_id", "ds", "y"]
    frame, _ = request_frame({"dataframe_split": {"columns": columns, "data": rows}})
    try:
        slow = parse_context(frame)
    except ValueError as e:
        with pytest.raises(ValueError, match=str(e)[:30].replace("(", r"\(").replace(")", r"\)")):
            parse_rows(columns, rows)
        return
    fast = parse_rows(columns, rows)
    assert fast is not None
    assert fast[0] == slow[0]
    assert all(np.array_equal(a, b, equal_nan=True) for a, b in zip(fast[1], slow[1]))
    try:
        futures = future_timestamps(slow[0], slow[2], 5, "MS")
    except ValueError:
        with pytest.raises(ValueError):
            future_timestamps(fast[0], fast[2], 5, "MS")
        return
    assert future_timestamps(fast[0], fast[2], 5, "MS") == futures
    q = np.sort(np.random.default_rng(0).normal(size=(len(fast[0]), 5, 9)), axis=-1)
    import json

    expected = {"predictions": forecast_frame(slow[0], futures, q).to_dict(orient="records")}
    assert json.loads(answer_json(fast[0], futures, q)) == json.loads(json.dumps(expected))


def _context(stamps: list[str]) -> pd.DataFrame:
    return pd.DataFrame({"unique_id": "a", "ds": stamps, "y": np.arange(len(stamps), dtype=float)})


def test_numeric_dates_are_read_in_the_order_ingest_reads_them():
    """01/02/2020 is read as the values show, as at ingest (``models.forecasting.dates``): the server read
    day-first dates month-first and answered a daily series with monthly forecasts."""
    [_], _, [days] = parse_context(_context([f"{d:02d}/01/2020" for d in range(1, 20)]))
    assert days.iloc[1] == pd.Timestamp("2020-01-02") and days.iloc[-1] == pd.Timestamp("2020-01-19")
    [_], _, [months] = parse_context(_context([f"01/{d:02d}/2020" for d in range(1, 20)]))
    assert months.iloc[1] == pd.Timestamp("2020-01-02")
    with pytest.raises(ValueError, match="read as day-first or month-first alike; send ISO 8601"):
        parse_context(_context([f"{d:02d}/01/2020" for d in range(1, 13)]))  # daily one way, monthly the other


def test_a_few_missing_steps_of_a_fixed_step_domain_are_filled_with_nulls():
    """A context missing a day (or two hours) was a 400 although ingest keeps such series: it is put back
    on the domain's grid with null values, and its future continues from its last stamp. Months and
    contexts with more missing than present stay as they are (then ``future_index`` refuses them)."""
    from models.forecasting.protocol import fill_gaps

    days = pd.Series(pd.date_range("2020-01-01", periods=40, freq="D").delete(20))
    [v], [s] = fill_gaps([np.arange(39.0)], [days], "D")
    assert len(v) == 40 and np.isnan(v[20]) and v[21] == 20.0 and s.iloc[20] == pd.Timestamp("2020-01-21")
    assert future_index("a", s, 2, "D") == [pd.Timestamp("2020-02-10"), pd.Timestamp("2020-02-11")]
    hours = pd.Series(pd.date_range("2021-03-28", periods=48, freq="h").delete([2, 3]))
    assert len(fill_gaps([np.arange(46.0)], [hours], "h")[0][0]) == 48
    months = pd.Series(pd.date_range("2020-01-31", periods=24, freq="ME").delete(5))
    assert len(fill_gaps([np.arange(23.0)], [months], "ME")[0][0]) == 23  # months: left alone
    sparse = pd.Series(pd.to_datetime(["2020-01-01", "2020-01-02", "2020-01-09", "2020-01-30"]))
    [v], [s] = fill_gaps([np.arange(4.0)], [sparse], "D")
    with pytest.raises(ValueError, match="timestamps are irregular"):
        future_index("a", s, 2, "D")


def test_a_series_never_below_zero_gets_no_negative_quantile():
    from models.forecasting.protocol import floor_at_zero

    q = np.array([[[-2.0, 0.5, 3.0]], [[-2.0, 0.5, 3.0]], [[-2.0, 0.5, 3.0]], [[-2.0, 0.5, 3.0]]])
    contexts = [np.array([0.0, 2.0, np.nan]), np.array([1.0, -0.1]), np.array([np.nan, np.nan]), np.array([])]
    out = floor_at_zero(q, contexts)
    assert out[0].tolist() == [[0.0, 0.5, 3.0]]  # counts: floored, order kept
    assert (out[1:] == q[1:]).all()  # a negative value seen, or nothing seen: as forecast
    assert q[0, 0, 0] == -2.0  # the caller's array is left alone


def test_daily_midnights_across_a_daylight_saving_change_are_dates_and_instants_still_need_one_offset():
    from models.forecasting.protocol import on_grid_with_futures, parse_context

    def frame(stamps):
        return pd.DataFrame(
            {"unique_id": "a", "ds": [t.isoformat() for t in stamps], "y": np.arange(float(len(stamps)))}
        )

    paris = pd.date_range("2024-03-20", periods=20, freq="D", tz="Europe/Paris")  # +01:00, then +02:00
    ids, values, stamps = parse_context(frame(paris))
    assert stamps[0].iloc[-1] == pd.Timestamp("2024-04-08")  # as ingest reads them: calendar dates
    assert on_grid_with_futures(ids, values, stamps, 2, "D")[1] == [
        [pd.Timestamp("2024-04-09"), pd.Timestamp("2024-04-10")]
    ]
    with pytest.raises(ValueError, match="one offset per request"):  # noon across the change: instants
        parse_context(frame(paris + pd.Timedelta(hours=12)))
