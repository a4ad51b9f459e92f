"""The batch's vectorised future timestamps equal the server's per-series rule."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from batch.futures import future_grid
from models.forecasting.protocol import future_index


def _series(starts: list[str], freq: str, n: int, tz: str | None = None) -> list[pd.Series]:
    return [pd.Series(pd.date_range(s, periods=n, freq=freq, tz=tz)) for s in starts]


@pytest.mark.parametrize(
    "freq,starts",
    [
        ("MS", ["2020-01-01", "2021-07-01"]),
        ("ME", ["2020-01-31", "2019-02-28"]),  # month ends stay month ends
        ("QS-JAN", ["2020-01-01", "2020-04-01"]),
        ("W-MON", ["2024-01-01", "2024-03-04"]),
        ("h", ["2024-03-30 22:00", "2024-01-01"]),
        ("D", ["2024-02-27", "2023-12-30"]),
    ],
)
def test_grid_equals_the_servers_rule(freq, starts):
    stamps = _series(starts, freq, 6)
    ids = [f"s{i}" for i in range(len(stamps))]
    future, ok, skipped = future_grid(ids, stamps, 5, freq)
    assert ok.all() and not skipped
    want = [t for uid, ds in zip(ids, stamps) for t in future_index(uid, ds, 5, freq)]
    assert list(pd.DatetimeIndex(future)) == list(pd.DatetimeIndex(want))


def test_time_zone_kept_and_integer_steps_continue():
    stamps = _series(["2024-03-30"], "D", 4, tz="UTC")
    future, ok, _ = future_grid(["a"], stamps, 3, "D")
    assert str(future.dt.tz) == "UTC" and future.iloc[0] == pd.Timestamp("2024-04-03", tz="UTC")
    ints = [pd.Series([1, 2, 3], dtype="int64"), pd.Series([10, 20], dtype="int64"), pd.Series([7], dtype="int64")]
    future, ok, _ = future_grid(["a", "b", "c"], ints, 2, None)
    assert future.tolist() == [4, 5, 30, 40, 8, 9]


def test_a_series_off_the_domains_frequency_takes_its_own_and_an_irregular_one_is_skipped():
    stamps = [
        pd.Series(pd.to_datetime(["2024-01-01", "2024-01-02", "2024-01-04", "2024-01-05"])),  # a gap, on the grid
        pd.Series(pd.date_range("2024-01-01", periods=5, freq="W-MON")),  # weekly in a daily domain
        pd.Series(
            pd.to_datetime(["2024-01-01", "2024-01-02", "2024-01-04 12:00", "2024-01-06 00:00"], format="ISO8601")
        ),
    ]
    future, ok, skipped = future_grid(["d", "w", "x"], stamps, 2, "D")
    assert ok.tolist() == [True, True, False] and "irregular" in skipped["x"]
    assert list(future) == [
        pd.Timestamp("2024-01-06"),
        pd.Timestamp("2024-01-07"),
        pd.Timestamp("2024-02-05"),
        pd.Timestamp("2024-02-12"),
    ]
    assert np.asarray(future).shape == (4,)


def test_a_chunk_whose_every_series_is_irregular_gives_no_rows_and_says_why():
    from batch.chunks import forecast_chunk

    class Never:
        def predict(self, contexts, horizon, ids=None):
            raise AssertionError("nothing to forecast")

    frame = pd.DataFrame(
        {
            "unique_id": ["x"] * 4,
            "y": [1.0, 2.0, 3.0, 4.0],
            "ds": pd.to_datetime(
                ["2024-01-01", "2024-01-02", "2024-01-04 12:00", "2024-01-06 00:00"], format="ISO8601"
            ),
        }
    )
    rows, skipped = forecast_chunk(
        Never(), frame, 3, "D", {"name": "m", "version": "1", "family": "fused"}, pd.Timestamp("2026-11-30", tz="UTC")
    )
    assert rows.empty and "irregular" in skipped["x"]


def test_a_count_series_gets_no_negative_forecast_and_a_signed_one_keeps_its_tail():
    """Seasonal naive's normal intervals cross zero for a series of small counts; the batch writes no
    negative quantile for it, while a series that itself went below zero keeps its lower tail."""
    from batch.chunks import forecast_chunk
    from models.forecasting.protocol import QUANTILE_COLUMNS
    from models.forecasting.statistical import StatisticalForecaster

    counts = [0.0, 3.0, 0.0, 1.0, 0.0, 4.0, 0.0, 0.0, 2.0, 0.0, 5.0, 0.0] * 3
    frame = pd.DataFrame(
        {
            "unique_id": ["counts"] * 36 + ["signed"] * 36,
            "ds": list(pd.date_range("2024-01-01", periods=36, freq="D")) * 2,
            "y": counts + [c - 0.5 for c in counts],
        }
    )
    model = StatisticalForecaster("seasonal_naive", default_season=7)
    raw = model.predict([np.array(counts)], 4).quantiles
    assert raw.min() < 0  # what the floor is for
    rows, skipped = forecast_chunk(
        model,
        frame,
        4,
        "D",
        {"name": "m", "version": "1", "family": "seasonal_naive"},
        pd.Timestamp("2026-12-08", tz="UTC"),
    )
    assert not skipped
    quantiles = rows.set_index("unique_id")[QUANTILE_COLUMNS]
    assert quantiles.loc["counts"].to_numpy().min() == 0.0 and (rows.loc[rows.unique_id == "counts", "mean"] >= 0).all()
    assert quantiles.loc["signed"].to_numpy().min() < 0  # it went below zero itself: its tail is its own
