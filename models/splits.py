"""Per-series splits of the long format (DESIGN.md contract).

test = last ``horizon`` points, validation = the ``horizon`` points before them,
train = the rest. Every consumer of domain data goes through here so that the
rule lives in one place.
"""
from __future__ import annotations

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


def split_frame(df: pd.DataFrame, horizon: int) -> Split:
    """Split a long frame (unique_id, ds, y) sorted by (unique_id, ds)."""
    if horizon < 1:
        raise ValueError("horizon must be >= 1")
    df = df.sort_values(["unique_id", "ds"], kind="stable").reset_index(drop=True)
    pos = _position_from_end(df)
    test = df[pos < horizon]
    val = df[(pos >= horizon) & (pos < 2 * horizon)]
    train = df[pos >= 2 * horizon]
    return Split(train.reset_index(drop=True), val.reset_index(drop=True), test.reset_index(drop=True))


def train_part(df: pd.DataFrame, horizon: int) -> pd.DataFrame:
    """Only the train part: what pre-training and datastores may ever see."""
    return split_frame(df, horizon).train


def to_arrays(df: pd.DataFrame) -> dict[str, np.ndarray]:
    """unique_id -> float32 values in time order."""
    df = df.sort_values(["unique_id", "ds"], kind="stable")
    return {str(uid): g["y"].to_numpy(np.float32) for uid, g in df.groupby("unique_id", sort=True)}
