"""Dates and numbers as exports write them: day-first and month-first dates, YYYYMMDD integers,
integer steps that skip around, thousands separators. Each is read as written, or refused with
the fix; never stored as something else (issue: "day-first dates are misread")."""

from __future__ import annotations

import pandas as pd
import pytest

from store.canonical import read_meta, read_store
from store.ingest import ingest_to_store
from store.validate import IngestError


def _months(fmt: str, sep: str = ";", n: int = 36, series: int = 2) -> str:
    rows = [f"Series{sep}Date{sep}Value"]
    for s in range(series):
        for i, d in enumerate(pd.date_range("2019-01-01", periods=n, freq="MS")):
            rows.append(f"s{s}{sep}{d.strftime(fmt)}{sep}{100 + 10 * s + i}")
    return "\n".join(rows) + "\n"


COLUMNS = {"Series": "unique_id", "Date": "ds", "Value": "y"}


def test_day_first_monthly_dates_are_read_as_months(write_file, tmp_path):
    path = write_file("export.csv", _months("%d/%m/%Y"))  # 01/02/2019 is 1 February
    store = ingest_to_store(str(path), "dayfirst", 6, 8, tmp_path, COLUMNS)
    frame, meta = read_store(store)
    assert meta["freq"] == "MS" and meta["season_length"] == 12 and meta["rows_quarantined"] == 0
    assert frame[frame["unique_id"] == "s0"]["ds"].iloc[:3].dt.strftime("%Y-%m-%d").tolist() == [
        "2019-01-01",
        "2019-02-01",
        "2019-03-01",
    ]


def test_day_first_with_days_past_12_and_month_first_are_both_read(write_file, tmp_path):
    days = pd.date_range("2021-03-01", periods=60, freq="D")
    for fmt, name in (("%d/%m/%Y", "dmy"), ("%m/%d/%Y", "mdy")):
        text = "unique_id,ds,y\n" + "\n".join(f"a,{d.strftime(fmt)},{i}" for i, d in enumerate(days)) + "\n"
        frame, meta = read_store(ingest_to_store(str(write_file(f"{name}.csv", text)), name, 7, 8, tmp_path))
        assert meta["freq"] == "D"
        assert frame["ds"].iloc[0] == pd.Timestamp("2021-03-01") and frame["ds"].iloc[-1] == days[-1]


def test_ambiguous_dates_are_refused_with_the_fix_and_read_with_date_format(write_file, tmp_path):
    days = pd.date_range("2021-01-01", periods=10, freq="D")  # 01/01 .. 10/01: days or months alike
    text = "unique_id,ds,y\n" + "\n".join(f"a,{d.strftime('%d/%m/%Y')},{i}" for i, d in enumerate(days)) + "\n"
    path = write_file("ambiguous.csv", text)
    with pytest.raises(IngestError, match="--date-format"):
        ingest_to_store(str(path), "ambiguous", 2, 2, tmp_path)
    frame, meta = read_store(ingest_to_store(str(path), "ambiguous", 2, 2, tmp_path, date_format="%d/%m/%Y"))
    assert meta["freq"] == "D" and frame["ds"].iloc[-1] == pd.Timestamp("2021-01-10")


def test_yyyymmdd_integers_are_dates(write_file, tmp_path):
    days = pd.date_range("2024-01-20", periods=40, freq="D")  # across a month end: 20240131, 20240201
    text = "unique_id,ds,y\n" + "\n".join(f"a,{d.strftime('%Y%m%d')},{i}" for i, d in enumerate(days)) + "\n"
    frame, meta = read_store(ingest_to_store(str(write_file("compact.csv", text)), "compact", 7, 8, tmp_path))
    assert meta["freq"] == "D" and frame["ds"].iloc[12] == pd.Timestamp("2024-02-01")


def test_unevenly_spaced_integer_steps_are_refused_and_a_missing_step_is_not(write_file, tmp_path):
    squares = "unique_id,ds,y\n" + "\n".join(f"a,{i * i},{i}" for i in range(30)) + "\n"
    with pytest.raises(IngestError, match="unevenly spaced integer steps"):
        ingest_to_store(str(write_file("squares.csv", squares)), "squares", 2, 2, tmp_path)
    # every row is told why, in a file the message names
    rejected = pd.read_csv(tmp_path / "store" / ".rejected" / "squares-quarantine.csv")
    assert len(rejected) == 30 and rejected["reason"].str.contains("unevenly spaced").all()
    gap = "unique_id,ds,y\n" + "\n".join(f"a,{i},{i}" for i in range(30) if i != 11) + "\n"
    meta = read_meta(ingest_to_store(str(write_file("gap.csv", gap)), "gap", 2, 2, tmp_path))
    assert meta["rows_kept"] == 29


def test_thousands_separators_are_read_in_both_conventions(write_file, tmp_path):
    eu = (
        "Series;Date;Value\n"
        + "\n".join(
            f"a;{d.strftime('%Y-%m-%d')};1.{i:03d}.000,95"
            for i, d in enumerate(pd.date_range("2020-01-01", periods=30, freq="D"))
        )
        + "\n"
    )  # 1.005.000,95 -> 1005000.95
    frame, _ = read_store(ingest_to_store(str(write_file("eu.csv", eu)), "eu", 2, 2, tmp_path, COLUMNS))
    assert frame["y"].iloc[0] == pytest.approx(1000000.95) and frame["y"].iloc[5] == pytest.approx(1005000.95)
    us = (
        "unique_id,ds,y\n"
        + "\n".join(
            f'a,{d.strftime("%Y-%m-%d")},"10,00{i % 10}.10"'
            for i, d in enumerate(pd.date_range("2020-01-01", periods=30, freq="D"))
        )
        + "\n"
    )
    frame, _ = read_store(ingest_to_store(str(write_file("us.csv", us)), "us", 2, 2, tmp_path))
    assert frame["y"].iloc[3] == pytest.approx(10003.10)
    # a number no convention explains is quarantined with the reason, in a file the message names
    odd = "unique_id,ds,y\n" + "\n".join(f"a,2020-01-{i + 1:02d},1 234 5" for i in range(20)) + "\n"
    with pytest.raises(IngestError, match="separators") as e:
        ingest_to_store(str(write_file("odd.csv", odd)), "odd", 2, 2, tmp_path)
    assert "odd-quarantine.csv" in str(e.value)


def _panel(stamps, series: int = 3) -> str:
    rows = ["unique_id,ds,y"] + [f"s{s},{d},{100 + s + i % 7}" for s in range(series) for i, d in enumerate(stamps)]
    return "\n".join(rows) + "\n"


@pytest.mark.parametrize(
    "stamps, freq",
    [
        (pd.date_range("2020-01-01", periods=60, freq="D").delete(30).strftime("%Y-%m-%d"), "D"),  # one day lost
        (pd.bdate_range("2023-01-02", periods=60).delete(10).strftime("%Y-%m-%d"), "B"),  # a holiday
        (pd.date_range("2021-03-27", periods=96, freq="h").delete(26).strftime("%Y-%m-%d %H:%M"), "h"),  # DST
        (pd.date_range("2015-01-31", periods=48, freq="ME").delete(20).strftime("%Y-%m-%d"), "ME"),
    ],
)
def test_a_date_missing_from_every_series_keeps_the_frequency(write_file, tmp_path, stamps, freq):
    """Every series lacking the same step has no pandas frequency of its own: the domain was stored as
    integer steps, onboarded, and could then never be forecast (its next dates unknown)."""
    store = ingest_to_store(str(write_file("gaps.csv", _panel(stamps))), "gaps", 4, 8, tmp_path)
    assert read_meta(store)["freq"] == freq and read_meta(store)["rows_quarantined"] == 0


def test_dates_no_frequency_fits_are_refused_with_what_would_fit(write_file, tmp_path):
    mid_month = pd.date_range("2015-01-01", periods=48, freq="MS") + pd.Timedelta(days=14)
    with pytest.raises(IngestError, match="no frequency fits the dates in ds .*month starts or ends"):
        ingest_to_store(str(write_file("mid.csv", _panel(mid_month.strftime("%Y-%m-%d")))), "mid", 4, 8, tmp_path)


@pytest.mark.parametrize("fmt", ["%b-%y", "%y-%b", "%b %y"])
def test_spreadsheet_month_and_two_digit_year_are_months(write_file, tmp_path, fmt):
    """``Jan-15`` is January 2015 as a spreadsheet shows it; pandas read it as 15 January of year 1 and the
    domain was stored as scrambled dates in 1754."""
    stamps = pd.date_range("2015-01-01", periods=48, freq="MS").strftime(fmt)
    frame, meta = read_store(ingest_to_store(str(write_file("m.csv", _panel(stamps))), "m", 4, 8, tmp_path))
    assert meta["freq"] == "MS" and frame["ds"].min() == pd.Timestamp("2015-01-01")
    assert frame["ds"].max() == pd.Timestamp("2018-12-01")


def test_one_stray_timestamp_is_set_aside_alone(write_file, tmp_path):
    """A daily series with one stamp at noon lost every row from there on, and so the whole series; only
    a series whose spacing really changes (daily, then hourly) loses what follows the change."""
    days = list(pd.date_range("2020-01-01", periods=60, freq="D").strftime("%Y-%m-%d %H:%M"))
    stray = days[:10] + ["2020-01-11 12:00"] + days[10:]
    hourly = days[:40] + list(pd.date_range("2020-02-10", periods=100, freq="h").strftime("%Y-%m-%d %H:%M"))
    rows = ["unique_id,ds,y"] + [f"a,{d},{i % 7}" for i, d in enumerate(stray)]
    rows += [f"b,{d},{i % 7}" for i, d in enumerate(days)] + [f"c,{d},{i % 7}" for i, d in enumerate(hourly)]
    store = ingest_to_store(str(write_file("stray.csv", "\n".join(rows) + "\n")), "stray", 4, 8, tmp_path)
    frame, meta = read_store(store)
    assert meta["freq"] == "D" and (frame["unique_id"] == "a").sum() == 60  # all but the stray row
    q = pd.read_parquet(store / "quarantine.parquet")
    assert q.loc[q["unique_id"] == "a", "ds"].tolist() == ["2020-01-11 12:00"]
    assert "off the D grid of series 'a'" in q.loc[q["unique_id"] == "a", "reason"].iloc[0]
    # daily, then hourly from 10 February 00:00 (on the daily grid): quarantined from 01:00 on
    assert (frame["unique_id"] == "c").sum() == 41


def test_dots_with_two_groups_are_thousands_in_a_semicolon_file(write_file, tmp_path):
    """1.000.000 can only be a million: the column's other dotted values (1.250) are thousands too. Without
    such a value 1.250 may be either and stays a decimal, as before."""
    ds = pd.date_range("2020-01-01", periods=24, freq="MS").strftime("%Y-%m-%d")
    values = ["950", "1.250", "1.000.000"] * 8
    text = "unique_id;ds;y\n" + "".join(f"a;{d};{v}\n" for d, v in zip(ds, values))
    frame, _ = read_store(ingest_to_store(str(write_file("eu.csv", text)), "eu", 4, 8, tmp_path))
    assert frame["y"].iloc[:3].tolist() == [950.0, 1250.0, 1_000_000.0]


def test_weekly_series_on_different_weekdays_are_both_kept_and_keep_their_weekday(write_file, tmp_path):
    """One series on Sundays, another on Mondays: the Monday series lay off the domain's W-SUN grid and was
    quarantined whole. Each weekly series is on its own weekday's grid, and its forecasts stay on it."""
    from batch.futures import future_grid

    sun = pd.date_range("2020-01-05", periods=80, freq="W-SUN")
    mon = pd.date_range("2020-01-06", periods=80, freq="W-MON")
    rows = ["unique_id,ds,y"] + [f"a,{d.date()},{i % 13}" for i, d in enumerate(sun)]
    rows += [f"b,{d.date()},{i % 13}" for i, d in enumerate(mon)]
    frame, meta = read_store(ingest_to_store(str(write_file("w.csv", "\n".join(rows) + "\n")), "w", 6, 8, tmp_path))
    assert meta["rows_quarantined"] == 0 and frame.groupby("unique_id").size().to_dict() == {"a": 80, "b": 80}
    stamps = [g["ds"].reset_index(drop=True) for _, g in frame.groupby("unique_id")]
    future, ok, _ = future_grid(["a", "b"], stamps, 2, meta["freq"])
    assert ok.all() and list(future.dt.day_name()) == ["Sunday", "Sunday", "Monday", "Monday"]


def test_spreadsheet_serial_days_are_flagged_as_steps_and_read_as_dates_when_asked(write_file, tmp_path):
    """43831 is 2020-01-01 in Excel's usual (1900) system and 2024-01-02 in its 1904 system: which one a
    workbook used cannot be told from the numbers, so steps stay steps with a warning naming the fix, and
    --date-format excel / excel1904 read them as the user says."""
    from reports.summary import ingest_summary

    text = "unique_id,ds,y\n" + "\n".join(f"a,{43831 + i},{i % 7}" for i in range(60)) + "\n"
    path = write_file("serials.csv", text)
    store = ingest_to_store(str(path), "serials", 7, 8, tmp_path)
    assert read_meta(store)["freq"] is None
    summary = ingest_summary(store)
    assert "WARNING" in summary and "2020-01-01" in summary and "--date-format excel" in summary
    frame, meta = read_store(ingest_to_store(str(path), "serials", 7, 8, tmp_path, date_format="excel"))
    assert meta["freq"] == "D" and meta["season_length"] == 7 and not meta["notes"]
    assert frame["ds"].iloc[0] == pd.Timestamp("2020-01-01") and frame["ds"].iloc[-1] == pd.Timestamp("2020-02-29")
    frame, _ = read_store(ingest_to_store(str(path), "serials", 7, 8, tmp_path, date_format="excel1904"))
    assert frame["ds"].iloc[0] == pd.Timestamp("2024-01-02")
    # a time of day is the fraction: 43831.5 is noon
    hours = "unique_id,ds,y\n" + "\n".join(f"a,{43831 + i / 24:.6f},{i}" for i in range(60)) + "\n"
    frame, meta = read_store(
        ingest_to_store(str(write_file("h.csv", hours)), "hours", 6, 8, tmp_path, date_format="excel")
    )
    assert meta["freq"] == "h" and frame["ds"].iloc[12] == pd.Timestamp("2020-01-01 12:00")
    # ordinary steps say nothing
    steps = "unique_id,ds,y\n" + "\n".join(f"a,{i},{i}" for i in range(60)) + "\n"
    assert "WARNING" not in ingest_summary(ingest_to_store(str(write_file("s.csv", steps)), "steps", 7, 8, tmp_path))


@pytest.mark.parametrize(
    ("labels", "freq", "first"),
    [
        (
            [f"{y} Q{q}" for y in range(2015, 2021) for q in range(1, 5)],
            "QS-JAN",
            "2015-01-01",
        ),  # tsibble's yearquarter
        ([f"Q{q} {y}" for y in range(2015, 2021) for q in range(1, 5)], "QS-JAN", "2015-01-01"),
        ([f"{y}M{m:02d}" for y in range(2019, 2021) for m in range(1, 13)], "MS", "2019-01-01"),  # statistics offices
        (  # ISO weeks across 2020's week 53, each its Monday
            [
                f"{d.isocalendar()[0]}-W{d.isocalendar()[1]:02d}"
                for d in pd.date_range("2020-10-05", periods=20, freq="W-MON")
            ],
            "W-MON",
            "2020-10-05",
        ),
    ],
)
def test_period_labels_are_their_periods_at_ingest_and_in_a_request(write_file, tmp_path, labels, freq, first):
    from models.forecasting.protocol import parse_context

    text = "unique_id,ds,y\n" + "\n".join(f"a,{label},{i}" for i, label in enumerate(labels)) + "\n"
    frame, meta = read_store(ingest_to_store(str(write_file("periods.csv", text)), "periods", 2, 8, tmp_path))
    assert meta["freq"] == freq and frame["ds"].iloc[0] == pd.Timestamp(first)
    request = pd.DataFrame({"unique_id": "a", "ds": labels, "y": range(len(labels))})
    assert parse_context(request)[2][0].iloc[0] == pd.Timestamp(first)


def test_unix_time_is_flagged_as_steps_and_read_as_utc_when_asked(write_file, tmp_path):
    from reports.summary import ingest_summary

    start = int(pd.Timestamp("2024-01-01").timestamp())
    for unit, scale in (("unix", 1), ("unix_ms", 1000)):
        text = "unique_id,ds,y\n" + "\n".join(f"a,{(start + 3600 * i) * scale},{i % 24}" for i in range(72)) + "\n"
        path = write_file(f"{unit}.csv", text)
        summary = ingest_summary(ingest_to_store(str(path), unit, 24, 8, tmp_path))
        assert "WARNING" in summary and f"--date-format {unit}" in summary and "2024-01-01 00:00:00 UTC" in summary
        frame, meta = read_store(ingest_to_store(str(path), unit, 24, 8, tmp_path, date_format=unit))
        assert meta["freq"] == "h" and meta["season_length"] == 24
        assert frame["ds"].iloc[0] == pd.Timestamp("2024-01-01") and frame["ds"].iloc[-1] == pd.Timestamp(
            "2024-01-03 23:00"
        )


@pytest.mark.parametrize("fmt", ["%d-%m-%Y %H:%M", "%m-%d-%Y %H:%M"])
def test_hourly_numeric_dates_of_a_few_days_take_the_order_their_hours_allow(write_file, tmp_path, fmt):
    """40 hours from 1 January: both orders fit every value, but only one reading is an hourly series
    (the other leaves a month of empty hours); it was refused as ambiguous."""
    hours = pd.date_range("2024-01-01", periods=40, freq="h")
    text = "unique_id,ds,y\n" + "\n".join(f"a,{t.strftime(fmt)},{i}" for i, t in enumerate(hours)) + "\n"
    frame, meta = read_store(ingest_to_store(str(write_file("hours.csv", text)), "hours", 4, 8, tmp_path))
    assert meta["freq"] == "h" and frame["ds"].iloc[-1] == hours[-1]
