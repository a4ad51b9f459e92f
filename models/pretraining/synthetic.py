"""KernelSynth-style synthetic series (the Chronos recipe, our own code).

Each series is one sample of a zero-mean Gaussian process whose kernel combines
up to ``MAX_KERNELS`` kernels drawn from a bank (periodic with many periods,
linear, RBF, rational quadratic, white noise, constant) by random + or *.
Inputs live on [0, 1] so kernel hyper-parameters do not depend on the length;
periods are given in steps and converted.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd

MAX_KERNELS = 5

# A kernel maps (x [length], d = x_i - x_j [length, length]) -> covariance [length, length].
Kernel = Callable[[np.ndarray, np.ndarray], np.ndarray]


def _periodic(period_steps: float, length: int) -> Kernel:
    p = period_steps / length  # period on the [0, 1] grid
    return lambda x, d: np.exp(-2.0 * np.sin(np.pi * np.abs(d) / p) ** 2)


def _linear(sigma0: float) -> Kernel:
    return lambda x, d: sigma0**2 + np.outer(x, x)


def _rbf(scale: float) -> Kernel:
    return lambda x, d: np.exp(-0.5 * (d / scale) ** 2)


def _rational_quadratic(alpha: float) -> Kernel:
    return lambda x, d: (1.0 + d**2 / (2.0 * alpha)) ** (-alpha)


def _white(level: float) -> Kernel:
    return lambda x, d: level * np.eye(len(x))


def _constant(value: float) -> Kernel:
    return lambda x, d: np.full_like(d, value)


# Periods of common calendars in steps: hourly (24, 168), half-hourly (48, 336),
# quarter-hourly (96, 672), daily (7, 14, 30, 365), weekly (4, 13, 26, 52),
# monthly (3, 6, 12), quarterly (4, 40), yearly (10).
PERIODS = (3, 4, 6, 7, 10, 12, 13, 14, 24, 26, 30, 40, 48, 52, 96, 168, 336, 365, 672)


def kernel_bank(length: int) -> list[Kernel]:
    bank: list[Kernel] = [_periodic(p, length) for p in PERIODS if p < length]
    bank += [_linear(s) for s in (0.0, 1.0, 10.0)]
    bank += [_rbf(s) for s in (0.1, 1.0, 10.0)]
    bank += [_rational_quadratic(a) for a in (0.1, 1.0, 10.0)]
    bank += [_white(n) for n in (0.1, 1.0)]
    bank += [_constant(1.0)]
    return bank


def _random_kernel(rng: np.random.Generator, bank: list[Kernel], x: np.ndarray, d: np.ndarray) -> np.ndarray:
    n = int(rng.integers(1, MAX_KERNELS + 1))
    picks = rng.choice(len(bank), size=n, replace=True)
    cov = bank[picks[0]](x, d)
    for i in picks[1:]:
        k = bank[i](x, d)
        cov = cov + k if rng.random() < 0.5 else cov * k
    return cov


def _sample_gp(cov: np.ndarray, z: np.ndarray) -> np.ndarray:
    """One draw L @ z with cov = L L^T; jitter grows until Cholesky succeeds
    (periodic/constant/linear kernels are low rank), eigh as a last resort."""
    scale = max(float(np.mean(np.diag(cov))), 1e-12)
    eye = np.eye(len(cov))
    for jitter in (1e-6, 1e-5, 1e-4, 1e-3):
        try:
            return np.linalg.cholesky(cov + jitter * scale * eye) @ z
        except np.linalg.LinAlgError:
            continue
    w, v = np.linalg.eigh((cov + cov.T) / 2)
    return v @ (np.sqrt(np.clip(w, 0.0, None)) * z)


def kernelsynth_arrays(n_series: int, length: int, seed: int) -> np.ndarray:
    """[n_series, length] float64. Series i depends only on (seed, i), so a larger
    n_series extends a smaller one instead of reshuffling it."""
    if n_series < 1 or length < 2:
        raise ValueError("kernelsynth needs n_series >= 1 and length >= 2")
    out = np.empty((n_series, length))
    for i, child in enumerate(np.random.SeedSequence(seed).spawn(n_series)):
        out[i] = kernelsynth_series(length, np.random.default_rng(child))
    return out


def kernelsynth_series(length: int, rng: np.random.Generator) -> np.ndarray:
    """[length] float64: one GP sample with a random kernel, drawn from ``rng`` alone
    (pre-training draws one per training item, seeded by the item's index)."""
    x = np.linspace(0.0, 1.0, length)
    d = x[:, None] - x[None, :]
    cov = _random_kernel(rng, kernel_bank(length), x, d)
    return _sample_gp(cov, rng.standard_normal(length))


def kernelsynth(n_series: int, length: int, seed: int) -> pd.DataFrame:
    """Long frame: unique_id ``ks-00001``..., ds integer steps 0..length-1, y float64."""
    values = kernelsynth_arrays(n_series, length, seed)
    ids = np.array([f"ks-{i + 1:05d}" for i in range(n_series)])
    return pd.DataFrame(
        {
            "unique_id": np.repeat(ids, length),
            "ds": np.tile(np.arange(length, dtype=np.int64), n_series),
            "y": values.reshape(-1),
        }
    )
