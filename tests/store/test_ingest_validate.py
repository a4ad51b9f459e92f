"""Validation through real files: fatal errors raise, bad rows are quarantined and counted."""

from __future__ import annotations

import pandas as pd
import pytest

from store.sources import read_source
from store.validate import IngestError, validate_frame


def validate_file(path, horizon=1, min_train=2):
    src = read_source(str(path))
    return validate_frame(src.frame, src.name, horizon, min_train)


MESSY = """unique_id,ds,y
a,2024-01-01,1.0
a,2024-01-02,2.0
a,2024-01-03,3.0
a,not-a-date,4.0
a,2024-01-03,5.0
a,2024-01-04,abc
a,2024-01-05,inf
a,2024-01-06,
,2024-01-07,7.0
a,2024-01-08,8.0
a,7,9.0
b,2024-01-01,1.0
a,2024-01-09,9
"""


def test_messy_csv_quarantines_each_bad_row_with_row_column_reason(write_file):
    res = validate_file(write_file("messy.csv", MESSY))
    q = res.quarantine
    got = list(zip(q["row"], q["column"]))
    assert got == [(4, "ds"), (5, "ds"), (6, "y"), (7, "y"), (8, "y"), (9, "unique_id"), (11, "ds"), (12, "unique_id")]
    reasons = dict(zip(q["row"], q["reason"]))
    assert "not a timestamp or integer step: 'not-a-date'" in reasons[4]
    assert "duplicate (unique_id, ds)" in reasons[5] and "first at row 3" in reasons[5]
    assert reasons[6] == "y is not numeric: 'abc'"
    assert reasons[7] == "y is infinite: 'inf'"
    assert reasons[8].startswith("y is missing")
    assert reasons[9] == "unique_id is missing"
    assert "integer step" in reasons[11] and "messy.csv" in reasons[11]
    assert "series 'b' has 1 good points" in reasons[12]
    # the original values travel with the quarantined row
    assert q.set_index("row").loc[6, ["unique_id", "ds", "y"]].tolist() == ["a", "2024-01-04", "abc"]
    # every input row is either kept or quarantined
    assert res.rows_in == 13 == res.rows_kept + res.rows_quarantined
    assert res.rows_kept == 5 and res.n_series == 1
    good = res.good
    assert good["ds"].dtype == "datetime64[ns]" and good["y"].dtype == "float64"
    assert good["ds"].is_monotonic_increasing
    assert good["y"].tolist() == [1.0, 2.0, 3.0, 8.0, 9.0]


def test_blank_lines_keep_the_file_row_numbers(write_file):
    path = write_file("blank.csv", "unique_id,ds,y\na,0,1\n\na,1,x\na,2,3\na,3,4\na,4,5\n")
    res = validate_file(path)
    assert res.quarantine[["row", "column"]].values.tolist() == [[3, "y"]]  # line 4 of the file
    assert res.rows_in == 5 and res.rows_kept == 4
    assert res.good["ds"].dtype == "int64" and res.ds_kind == "integer"


def test_too_short_series_are_quarantined_whole(write_file):
    rows = [f"long,{i},{i}" for i in range(10)] + [f"short,{i},{i}" for i in range(5)]
    path = write_file("short.csv", "unique_id,ds,y\n" + "\n".join(rows) + "\n")
    res = validate_file(path, horizon=2, min_train=3)  # needs 2*2 + 3 = 7 points
    q = res.quarantine
    assert q["row"].tolist() == list(range(11, 16))
    assert set(q["column"]) == {"unique_id"}
    assert all("series 'short' has 5 good points, needs >= 7" in r for r in q["reason"])
    assert res.good["unique_id"].unique().tolist() == ["long"]
    assert res.rows_in == res.rows_kept + res.rows_quarantined == 15


def test_parquet_with_native_types_and_aliases(tmp_path):
    df = pd.DataFrame(
        {
            "item_id": ["x"] * 6,
            "timestamp": pd.to_datetime(["2024-01-01", "2024-01-02", None, "2024-01-04", "2024-01-04", "2024-01-06"]),
            "target": [1.0, float("inf"), 3.0, float("nan"), 5.0, 6.0],
            "extra": range(6),
        }
    )
    path = tmp_path / "native.parquet"
    df.to_parquet(path)
    res = validate_file(path, horizon=1, min_train=1)
    assert res.quarantine[["row", "column"]].values.tolist() == [[2, "y"], [3, "ds"], [4, "y"]]
    assert list(res.good.columns) == ["unique_id", "ds", "y"]
    assert res.good["y"].tolist() == [1.0, 5.0, 6.0]


def test_missing_columns_names_file_columns_and_what_was_found(write_file):
    path = write_file("nocols.csv", "series,ds,value\na,1,2\n")
    with pytest.raises(IngestError) as e:
        validate_file(path)
    msg = str(e.value)
    assert "nocols.csv" in msg
    assert "unique_id (or item_id)" in msg and "y (or target)" in msg and "ds (or" not in msg
    assert "['series', 'ds', 'value']" in msg


def test_empty_file_and_header_only_file(write_file):
    with pytest.raises(IngestError, match=r"empty\.csv: empty file"):
        validate_file(write_file("empty.csv", ""))
    with pytest.raises(IngestError, match=r"header\.csv: no data rows"):
        validate_file(write_file("header.csv", "unique_id,ds,y\n"))


def test_integer_steps_and_float_text_are_told_apart(write_file):
    path = write_file("steps.csv", "unique_id,ds,y\ns,0,1\ns,1,2\ns,2.0,3\ns,2.5,4\ns,3,5\ns,4,6\n")
    res = validate_file(path)
    assert res.good["ds"].tolist() == [0, 1, 2, 3, 4]
    assert res.quarantine["row"].tolist() == [4]
    assert "'2.5'" in res.quarantine["reason"][0]


def test_a_value_a_thousand_times_its_series_is_kept_and_named_in_a_warning():
    """A unit slip (100,000 in a series near 100) is not dropped, but the ingest says which series and
    where; spiky prices (50x) and lumpy demand (mostly zeros) say nothing."""
    import numpy as np

    n = 40
    flat = 100 + np.arange(n) % 7.0
    flat[5] = 100_000.0
    prices = 40 + np.arange(n) % 5.0
    prices[20] = 2_000.0
    lumpy = np.where(np.arange(n) % 9 == 0, 12.0, 0.0)
    frame = pd.DataFrame(
        {
            "unique_id": ["flat"] * n + ["prices"] * n + ["lumpy"] * n,
            "ds": list(range(n)) * 3,
            "y": np.concatenate([flat, prices, lumpy]),
        }
    )
    result = validate_frame(frame, "spikes.csv", horizon=4, min_train=8)
    assert result.rows_kept == 3 * n  # kept as written
    (note,) = result.notes
    assert "1 series" in note and "'flat'" in note and "100000 at 5" in note and "prices" not in note
    assert not validate_frame(frame[frame.unique_id != "flat"], "ok.csv", horizon=4, min_train=8).notes
