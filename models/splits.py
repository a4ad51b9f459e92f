"""Per-series splits of the long format (DESIGN.md contract).

test = last ``horizon`` points, validation = the ``horizon`` points before them,
train = the rest. ``horizon`` is one number or, for a domain whose series have
their own official horizons (M3 categories mix yearly 6 and monthly 18), a
mapping unique_id -> horizon. Every consumer of domain data goes through here so
that the rule lives in one place.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd


@dataclass(frozen=True)
class Split:
    train: pd.DataFrame
    val: pd.DataFrame
    test: pd.DataFrame


def _position_from_end(df: pd.DataFrame) -> pd.Series:
    """0 for the last row of each series, 1 for the one before, ... (df sorted by unique_id, ds)."""
    return df.groupby("unique_id", sort=False).cumcount(ascending=False)


def split_frame(df: pd.DataFrame, horizon: int | Mapping[str, int]) -> Split:
    """Split a long frame (unique_id, ds, y) sorted by (unique_id, ds)."""
    df = df.sort_values(["unique_id", "ds"], kind="stable").reset_index(drop=True)
    if isinstance(horizon, Mapping):
        missing = set(df["unique_id"].astype(str)) - set(map(str, horizon))
        if missing:
            raise ValueError(f"no horizon for series {sorted(missing)[:5]}")
        horizon = df["unique_id"].astype(str).map({str(k): int(v) for k, v in horizon.items()}).to_numpy()
        if (horizon < 1).any():
            raise ValueError("horizons must be >= 1")
    elif horizon < 1:
        raise ValueError("horizon must be >= 1")
    pos = _position_from_end(df).to_numpy()
    test = df[pos < horizon]
    val = df[(pos >= horizon) & (pos < 2 * horizon)]
    train = df[pos >= 2 * horizon]
    return Split(train.reset_index(drop=True), val.reset_index(drop=True), test.reset_index(drop=True))


def train_part(df: pd.DataFrame, horizon: int | Mapping[str, int]) -> pd.DataFrame:
    """Only the train part: what pre-training and datastores may ever see."""
    return split_frame(df, horizon).train


def to_arrays(df: pd.DataFrame) -> dict[str, np.ndarray]:
    """unique_id -> float32 values in time order."""
    df = df.sort_values(["unique_id", "ds"], kind="stable")
    return {str(uid): g["y"].to_numpy(np.float32) for uid, g in df.groupby("unique_id", sort=True)}
