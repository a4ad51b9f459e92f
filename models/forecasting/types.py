"""What forecasting returns: named arrays with their shapes, never string-keyed dicts."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from jaxtyping import Float

from models.metrics import MEDIAN, QUANTILES


class QuantileForecast(NamedTuple):
    """A forecaster's answer for N series."""

    quantiles: Float[np.ndarray, "n horizon quantile"]  # raw space, sorted on the last axis
    levels: tuple[float, ...] = QUANTILES

    @property
    def median(self) -> Float[np.ndarray, "n horizon"]:
        return self.quantiles[..., MEDIAN]

    @property
    def horizon(self) -> int:
        return int(self.quantiles.shape[1])

    @classmethod
    def empty(cls, horizon: int) -> QuantileForecast:
        return cls(np.zeros((0, horizon, len(QUANTILES)), np.float32))


class BackboneForecast(NamedTuple):
    """The frozen backbone's forecast with what adaptation builds on (numpy, float32)."""

    quantiles: Float[np.ndarray, "n horizon quantile"]  # raw space, sorted
    norm_quantiles: Float[np.ndarray, "n horizon quantile"]  # (quantiles - loc) / scale
    loc: Float[np.ndarray, " n"]  # the causal scaler's loc at the last context step
    scale: Float[np.ndarray, " n"]
    embedding: Float[np.ndarray, "n d_model"]  # last context patch's hidden state: the kNN key

    def normalise(self, x: Float[np.ndarray, "n ..."]) -> Float[np.ndarray, "n ..."]:
        """Raw values (truth [N, H] or quantiles [N, H, Q]) -> this forecast's normalised space."""
        shape = (-1,) + (1,) * (x.ndim - 1)
        return ((x - self.loc.reshape(shape)) / self.scale.reshape(shape)).astype(np.float32)

    def denormalise(self, x: Float[np.ndarray, "n ..."]) -> Float[np.ndarray, "n ..."]:
        shape = (-1,) + (1,) * (x.ndim - 1)
        return (x * self.scale.reshape(shape) + self.loc.reshape(shape)).astype(np.float32)
