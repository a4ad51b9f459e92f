"""Per-series splits of the long format: test = the last ``horizon`` points of each series;
validation = up to ``origins`` windows of ``horizon`` points before it (rolling origins, each
a horizon apart, the latest right before test); train = the rest.

A series spares as many validation origins as it can while keeping at least one horizon of
train points (always one origin at least, so a series of ``2 * horizon + 1`` points still has
one point to train on). ``horizon`` is one number or, for a domain whose series have their own
official horizons (M3 categories mix yearly 6 and monthly 18), a mapping unique_id -> horizon.
Every consumer of domain data goes through here, so the rule lives in one place; ``SeriesSplit``
holds one domain's parts as arrays, made once per onboarding and saved with its result.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple, cast

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


AUTO_WINDOWS = 200  # validation windows a domain is given at least (where its series can spare them)
AUTO_MIN_ORIGINS, AUTO_MAX_ORIGINS = 3, 30


def resolve_origins(origins: int | None, n_series: int) -> int:
    """Validation origins per series: ``origins`` when given; None (auto) adapts to the domain's
    size, so the gate always has about ``AUTO_WINDOWS`` windows to judge on: 3 for 67 series or
    more (large domains pay nothing extra), up to 30 for one series (``split_frame`` gives a series
    more than 3 only while half of its points before test stay for training)."""
    if origins is not None:
        return int(origins)
    return int(np.clip(-(-AUTO_WINDOWS // max(int(n_series), 1)), AUTO_MIN_ORIGINS, AUTO_MAX_ORIGINS))


def spare_origins(lengths: np.ndarray, horizons: np.ndarray, origins: int) -> np.ndarray:
    """Validation origins each series can spare: up to ``origins``, keeping one horizon (and at least
    2 points: a datastore window's context and future) of train points before the earliest; at least 1."""
    lengths, horizons = np.asarray(lengths, np.int64), np.maximum(np.asarray(horizons, np.int64), 1)
    return np.clip((lengths - horizons - np.maximum(horizons, 2)) // horizons, 1, max(int(origins), 1))


def split_frame(df: pd.DataFrame, horizon: int | Mapping[str, int], origins: int | None = 1) -> Split:
    """Split a long frame (unique_id, ds, y) sorted by (unique_id, ds). ``origins`` None: by the
    domain's size (``resolve_origins``)."""
    auto = origins is None
    origins = resolve_origins(origins, df["unique_id"].nunique())
    if int(origins) < 1:
        raise ValueError(f"origins must be >= 1, got {origins}")
    df = df.sort_values(["unique_id", "ds"], kind="stable").reset_index(drop=True)
    if isinstance(horizon, Mapping):
        missing = set(df["unique_id"].astype(str)) - set(map(str, horizon))
        if missing:
            raise ValueError(f"no horizon for series {sorted(missing)[:5]}")
        horizon = df["unique_id"].astype(str).map({str(k): int(v) for k, v in horizon.items()}).to_numpy()
        if (cast(np.ndarray, horizon) < 1).any():
            raise ValueError("horizons must be >= 1")
    elif horizon < 1:
        raise ValueError("horizon must be >= 1")
    pos = _position_from_end(df).to_numpy()
    lengths = df.groupby("unique_id", sort=False)["y"].transform("size").to_numpy()
    h = np.broadcast_to(cast(Any, horizon), pos.shape)
    k = spare_origins(lengths, h, origins)
    if auto and origins > AUTO_MIN_ORIGINS:
        # the origins beyond the fixed default keep half of each series before test for training
        # (the datastore, the adapter and the statistical fits learn from it)
        half = (lengths - h) // (2 * np.maximum(h, 1))
        k = np.minimum(k, np.maximum(half, spare_origins(lengths, h, AUTO_MIN_ORIGINS)))
    test = df[pos < horizon]
    val = df[(pos >= horizon) & (pos < (1 + k) * horizon)]
    train = df[pos >= (1 + k) * horizon]
    return Split(train.reset_index(drop=True), val.reset_index(drop=True), test.reset_index(drop=True))


def train_part(df: pd.DataFrame, horizon: int | Mapping[str, int], origins: int | None = 1) -> pd.DataFrame:
    """Only the train part: what pre-training and datastores may ever see."""
    return split_frame(df, horizon, origins).train


def to_arrays(df: pd.DataFrame) -> dict[str, np.ndarray]:
    """unique_id -> float32 values in time order."""
    df = df.sort_values(["unique_id", "ds"], kind="stable")
    return {str(uid): g["y"].to_numpy(np.float32) for uid, g in df.groupby("unique_id", sort=True)}


def _pack(parts: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    lengths = np.array([len(p) for p in parts], dtype=np.int64)
    values = np.concatenate(parts).astype(np.float32) if parts else np.zeros(0, np.float32)
    return values, np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)


def _unpack(values: np.ndarray, offsets: np.ndarray) -> list[np.ndarray]:
    return [values[offsets[i] : offsets[i + 1]] for i in range(len(offsets) - 1)]


class Windows(NamedTuple):
    """The forecasts one part asks for: a context and its targets per (series, origin)."""

    contexts: list[np.ndarray]  # what each forecast may see
    truth: Float[np.ndarray, "m horizon"]  # NaN past the series' own horizon
    series: Int[np.ndarray, " m"]  # index of each window's series in ``SeriesSplit.ids``
    origin: Int[np.ndarray, " m"]  # horizons before the test window (1: right before it); 0: test

    def __len__(self) -> int:
        return len(self.contexts)


@dataclass(frozen=True)
class SeriesSplit:
    """One domain's series, each cut into train / validation / test parts (float32, NaN = missing).

    ``val`` holds a series' ``origins[i]`` validation windows back to back (earliest first).
    Only series with at least one train point and whole validation windows are kept; the
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
    origins: Int[np.ndarray, " n"] | None = None  # validation windows per series (None: 1 each)

    PARTS = ("train", "val", "test")

    def __post_init__(self) -> None:
        if self.origins is None:
            object.__setattr__(self, "origins", np.ones(len(self.ids), dtype=np.int64))

    @classmethod
    def from_frame(
        cls,
        df: pd.DataFrame,
        horizons: int | Mapping[str, int],
        seasons: int | Mapping[str, int] = 1,
        origins: int | None = 1,
    ) -> SeriesSplit:
        split = split_frame(df, horizons, origins)
        own: Callable[[str], int] = (
            (lambda u: int(horizons[u])) if isinstance(horizons, Mapping) else (lambda u: int(horizons))
        )
        season: Callable[[str], int] = (
            (lambda u: int(seasons[u])) if isinstance(seasons, Mapping) else (lambda u: int(seasons))
        )
        train, val, test = (to_arrays(p) for p in (split.train, split.val, split.test))
        ids = [
            u
            for u in sorted(set(train) | set(val))
            if u in train and u in val and len(train[u]) >= 1 and len(val[u]) % own(u) == 0
        ]
        skipped = sorted(set(df["unique_id"].astype(str)) - set(ids))
        if not ids:
            shortest = min(horizons.values()) if isinstance(horizons, Mapping) else horizons
            raise ValueError(f"no series long enough for 2 * horizon ({shortest}) + 1 points")
        return cls(
            ids,
            [train[u] for u in ids],
            [val[u] for u in ids],
            [test[u] for u in ids],
            np.array([own(u) for u in ids], dtype=np.int64),
            np.array([season(u) for u in ids], dtype=np.int64),
            skipped,
            np.array([len(val[u]) // own(u) for u in ids], dtype=np.int64),
        )

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def horizon(self) -> int:
        return int(self.horizons.max())

    @property
    def mixed(self) -> bool:
        """Series with different horizons."""
        return bool((self.horizons != self.horizon).any())

    def origin_counts(self) -> dict[int, int]:
        """origins -> number of series with that many validation windows."""
        values, counts = np.unique(cast(np.ndarray, self.origins), return_counts=True)
        return {int(v): int(c) for v, c in zip(values, counts)}

    def windows(self, part: str) -> Windows:
        """The forecasts scored on ``part``. Validation: each series' windows, earliest first, each
        seeing train and the validation windows before it; test: one per series, seeing train and
        all of validation."""
        if part == "test":
            return Windows(
                self.history("test"),
                pad_right(self.test, self.horizon),
                np.arange(len(self), dtype=np.int64),
                np.zeros(len(self), dtype=np.int64),
            )
        self._check(part)
        targets, series, origin = [], [], []
        for i, (val, h, k) in enumerate(zip(self.val, self.horizons, cast(np.ndarray, self.origins))):
            for j in range(int(k)):
                targets.append(val[j * h : (j + 1) * h])
                series.append(i)
                origin.append(int(k) - j)
        return Windows(
            self.history("val"),
            pad_right(targets, self.horizon),
            np.asarray(series, dtype=np.int64),
            np.asarray(origin, dtype=np.int64),
        )

    def history(self, part: str) -> list[np.ndarray]:
        """The contexts of ``part``'s windows, in ``windows(part)`` order (reads no target)."""
        self._check(part)
        if part == "test":
            return [np.concatenate([a, b]) for a, b in zip(self.train, self.val)]
        return [
            np.concatenate([train, val[: j * h]])
            for train, val, h, k in zip(self.train, self.val, self.horizons, cast(np.ndarray, self.origins))
            for j in range(int(k))
        ]

    def truth(self, part: str) -> Float[np.ndarray, "m horizon"]:
        """[windows, horizon] targets of ``part``, NaN past each series' own horizon."""
        return self.windows(part).truth

    @staticmethod
    def _check(part: str) -> None:
        if part not in ("val", "test"):
            raise ValueError(f"part must be 'val' or 'test', got {part!r}")

    def save(self, path: str | Path) -> Path:
        arrays: dict[str, Any] = {
            "horizons": self.horizons,
            "seasons": self.seasons,
            "origins": self.origins,
            "ids": np.asarray(self.ids, dtype=str),
            "skipped": np.asarray(self.skipped, dtype=str),
        }
        for part in self.PARTS:
            arrays[f"{part}_values"], arrays[f"{part}_offsets"] = _pack(getattr(self, part))
        np.savez_compressed(path, **arrays)
        return Path(path)

    @classmethod
    def load(cls, path: str | Path) -> SeriesSplit:
        with np.load(path) as z:
            parts = {p: _unpack(z[f"{p}_values"], z[f"{p}_offsets"]) for p in cls.PARTS}
            return cls(
                z["ids"].tolist(),
                parts["train"],
                parts["val"],
                parts["test"],
                z["horizons"],
                z["seasons"],
                z["skipped"].tolist(),
                z["origins"] if "origins" in z.files else None,
            )
