"""Per-series splits of the long format: test = the last ``horizon`` points of each series,
validation = the ``horizon`` points before them, train = the rest.

``horizon`` is one number or, for a domain whose series have their own official horizons
(M3 categories mix yearly 6 and monthly 18), a mapping unique_id -> horizon. Every consumer
of domain data goes through here, so the rule lives in one place; ``SeriesSplit`` holds one
domain's parts as arrays, made once per onboarding and saved with its result.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from jaxtyping import Float, Int

from models.forecasting.inputs import pad_right


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


def _pack(parts: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    lengths = np.array([len(p) for p in parts], dtype=np.int64)
    values = np.concatenate(parts).astype(np.float32) if parts else np.zeros(0, np.float32)
    return values, np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)


def _unpack(values: np.ndarray, offsets: np.ndarray) -> list[np.ndarray]:
    return [values[offsets[i]:offsets[i + 1]] for i in range(len(offsets) - 1)]


@dataclass(frozen=True)
class SeriesSplit:
    """One domain's series, each cut into train / validation / test parts (float32, NaN = missing).

    Only series with at least one train point and a whole validation part are kept; the
    others are listed in ``skipped``. ``horizon`` (the longest own horizon) is what models
    forecast; truth arrays are NaN-padded past a series' own horizon (NaN = no target).
    """

    ids: list[str]
    train: list[np.ndarray]
    val: list[np.ndarray]
    test: list[np.ndarray]
    horizons: Int[np.ndarray, " n"]  # each series' own horizon
    seasons: Int[np.ndarray, " n"]  # each series' season length (MASE scale, seasonal baselines)
    skipped: list[str] = field(default_factory=list)

    PARTS = ("train", "val", "test")

    @classmethod
    def from_frame(cls, df: pd.DataFrame, horizons: int | Mapping[str, int],
                   seasons: int | Mapping[str, int] = 1) -> SeriesSplit:
        split = split_frame(df, horizons)
        own = (lambda u: int(horizons[u])) if isinstance(horizons, Mapping) else (lambda u: int(horizons))
        season = (lambda u: int(seasons[u])) if isinstance(seasons, Mapping) else (lambda u: int(seasons))
        train, val, test = (to_arrays(p) for p in (split.train, split.val, split.test))
        ids = [u for u in sorted(set(train) | set(val))
               if u in train and u in val and len(train[u]) >= 1 and len(val[u]) == own(u)]
        skipped = sorted(set(df["unique_id"].astype(str)) - set(ids))
        if not ids:
            shortest = min(horizons.values()) if isinstance(horizons, Mapping) else horizons
            raise ValueError(f"no series long enough for 2 * horizon ({shortest}) + 1 points")
        return cls(ids, [train[u] for u in ids], [val[u] for u in ids], [test[u] for u in ids],
                   np.array([own(u) for u in ids], dtype=np.int64),
                   np.array([season(u) for u in ids], dtype=np.int64), skipped)

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def horizon(self) -> int:
        return int(self.horizons.max())

    @property
    def mixed(self) -> bool:
        """Series with different horizons."""
        return bool((self.horizons != self.horizon).any())

    def history(self, part: str) -> list[np.ndarray]:
        """What a forecast of ``part`` may see: train before validation, train + validation before test."""
        if part == "val":
            return self.train
        if part == "test":
            return [np.concatenate([a, b]) for a, b in zip(self.train, self.val)]
        raise ValueError(f"part must be 'val' or 'test', got {part!r}")

    def truth(self, part: str) -> Float[np.ndarray, "n horizon"]:
        """[N, horizon] targets of ``part``, NaN past each series' own horizon."""
        return pad_right(getattr(self, part), self.horizon)

    def save(self, path: str | Path) -> Path:
        arrays = {"horizons": self.horizons, "seasons": self.seasons,
                  "ids": np.asarray(self.ids, dtype=str), "skipped": np.asarray(self.skipped, dtype=str)}
        for part in self.PARTS:
            arrays[f"{part}_values"], arrays[f"{part}_offsets"] = _pack(getattr(self, part))
        np.savez_compressed(path, **arrays)
        return Path(path)

    @classmethod
    def load(cls, path: str | Path) -> SeriesSplit:
        with np.load(path) as z:
            parts = {p: _unpack(z[f"{p}_values"], z[f"{p}_offsets"]) for p in cls.PARTS}
            return cls(z["ids"].tolist(), parts["train"], parts["val"], parts["test"], z["horizons"],
                       z["seasons"], z["skipped"].tolist())
