"""Structural synthetic series: the shapes business and operations data have, drawn at random.

KernelSynth (``synthetic.py``) gives smooth Gaussian-process shapes. Real panels are also made
of what a forecaster models explicitly: a level with a trend that changes slope, one or two
seasonal cycles whose amplitude changes between regimes, level shifts, autoregressive or
integrated noise, occasional spikes, multiplicative structure (log-space composition) and
intermittent demand (mostly zeros). Lengths are drawn too: short histories are common in use.
Every series depends only on (seed, index), as KernelSynth's do.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd

# calendar periods in steps: quarterly 4, monthly 12, daily 7 / 30 / 365, hourly 24 / 168,
# half-hourly 48, weekly 52, plus a few irregular cycles
SEASONS = (4, 7, 12, 24, 48, 52, 30, 168, 5, 6, 10)


def _seasonal(t: np.ndarray, period: int, rng: np.random.Generator) -> np.ndarray:
    """A zero-mean cycle of ``period`` steps: a few random Fourier harmonics, unit std."""
    k = int(rng.integers(1, min(4, max(1, period // 2)) + 1))
    out = np.zeros(len(t))
    for j in range(1, k + 1):
        a, b = rng.normal(0, 1.0 / j, 2)
        out += a * np.sin(2 * np.pi * j * t / period) + b * np.cos(2 * np.pi * j * t / period)
    return out / max(out.std(), 1e-9)


def _regimes(n: int, rng: np.random.Generator, rate: float) -> np.ndarray:
    """Indices where a regime changes (Poisson number, uniform places)."""
    return np.sort(rng.integers(1, n, size=rng.poisson(rate))) if n > 2 else np.array([], int)


def _noise(n: int, rng: np.random.Generator) -> np.ndarray:
    """AR(1) noise, or a random walk (an integrated series), unit innovation std."""
    e = rng.standard_normal(n)
    if rng.random() < 0.25:
        return np.cumsum(e) / np.sqrt(max(n, 1)) * 3.0
    phi = rng.uniform(-0.3, 0.95)
    out = np.empty(n)
    acc = 0.0
    for i in range(n):
        acc = phi * acc + e[i]
        out[i] = acc
    return out * np.sqrt(1 - phi**2)


def structural_series(length: int, rng: np.random.Generator) -> np.ndarray:
    """[length] float64: one structural series drawn from ``rng`` alone."""
    n = length
    t = np.arange(n, dtype=np.float64)
    if rng.random() < 0.1:  # intermittent demand: zeros, then a positive size
        p = rng.uniform(0.05, 0.6)
        size = rng.gamma(rng.uniform(0.5, 4.0), rng.uniform(1.0, 20.0), n)
        return np.where(rng.random(n) < p, np.ceil(size), 0.0)
    # trend: piecewise linear, slope changing at regime points (sometimes damped toward flat)
    slopes = rng.normal(0, 1.0 / n, 1 + len(cuts := _regimes(n, rng, 1.0))) * rng.choice([0.0, 1.0, 3.0])
    slope = np.repeat(slopes, np.diff(np.concatenate([[0], cuts, [n]])))
    trend = np.cumsum(slope)  # a total change of a few noise units at most
    # seasonality: up to two cycles shorter than half the series, amplitude per regime
    season = np.zeros(n)
    for _ in range(int(rng.choice([0, 1, 1, 1, 2]))):
        periods = [p for p in SEASONS if 2 * p <= n]
        if not periods:
            break
        amp = rng.uniform(0.2, 2.0) * np.repeat(
            rng.uniform(0.5, 1.5, 1 + len(c := _regimes(n, rng, 0.5))), np.diff(np.concatenate([[0], c, [n]]))
        )
        season += amp * _seasonal(t, int(rng.choice(periods)), rng)
    # level shifts and spikes
    shifts = np.zeros(n)
    for c in _regimes(n, rng, 0.4):
        shifts[c:] += rng.normal(0, 2.0)
    spikes = np.where(rng.random(n) < rng.choice([0.0, 0.01]), rng.normal(0, 5.0, n), 0.0)
    noise = rng.uniform(0.05, 1.0) * _noise(n, rng)
    signal = trend + season + shifts + spikes + noise
    if rng.random() < 0.4:  # multiplicative: composed in log space
        y = np.exp(0.15 * signal + rng.normal(0, 1.0))
    else:
        y = signal
    return _placed(y, rng)


def _placed(y: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A random level and scale; half the time a non-negative quantity (sales, counts): moved up,
    not clipped."""
    level, scale = rng.normal(0, 50.0), np.exp(rng.uniform(-2, 6))
    y = level + scale * y
    if rng.random() < 0.5:
        y = y - min(y.min(), 0.0)
    return y


def _panel(
    series: Callable[[int, np.random.Generator], np.ndarray],
    prefix: str,
    n_series: int,
    length: int,
    shortest: int,
    seed: int,
) -> pd.DataFrame:
    """Long frame of ``n_series`` series (unique_id ``<prefix>-00001``..., integer ds, y), lengths
    log-uniform between ``shortest`` and ``length``; series i depends only on (seed, i)."""
    frames = []
    for i, child in enumerate(np.random.SeedSequence(seed).spawn(n_series)):
        rng = np.random.default_rng(child)
        n = int(np.exp(rng.uniform(np.log(shortest), np.log(length + 1))))
        y = series(min(n, length), rng)
        frames.append(
            pd.DataFrame({"unique_id": f"{prefix}-{i + 1:05d}", "ds": np.arange(len(y), dtype=np.int64), "y": y})
        )
    return pd.concat(frames, ignore_index=True)


def structural(n_series: int, length: int, seed: int) -> pd.DataFrame:
    """Long frame of ``n_series`` structural series (unique_id ``st-00001``..., integer ds, y);
    lengths log-uniform between length / 16 (at least 16) and ``length``."""
    if n_series < 1 or length < 16:
        raise ValueError("structural needs n_series >= 1 and length >= 16")
    return _panel(structural_series, "st", n_series, length, max(16, length // 16), seed)


# Calendar series: (name, steps per day, season pairs in steps). Daily data repeat each week and
# each year (7, 365.25); hourly each day and week (24, 168); half-hourly (48, 336); quarter-hourly
# (96, 672). Most production series live at these frequencies, and a monthly-trained backbone has
# never seen a cycle longer than its context.
CALENDARS = (
    ("daily", 1, (7.0, 365.25)),
    ("hourly", 24, (24.0, 168.0)),
    ("half-hourly", 48, (48.0, 336.0)),
    ("quarter-hourly", 96, (96.0, 672.0)),
)


def _fourier(t: np.ndarray, period: float, harmonics: int, rng: np.random.Generator) -> np.ndarray:
    """A zero-mean cycle of ``period`` steps (may be fractional) with ``harmonics`` random
    harmonics decaying as 1/j; unit std."""
    out = np.zeros(len(t))
    for j in range(1, harmonics + 1):
        a, b = rng.normal(0, 1.0 / j, 2)
        out += a * np.sin(2 * np.pi * j * t / period) + b * np.cos(2 * np.pi * j * t / period)
    return out / max(out.std(), 1e-9)


def calendar_series(length: int, rng: np.random.Generator) -> np.ndarray:
    """[length] float64: one daily or sub-daily series with two seasonalities, weekday/weekend
    levels, holiday-like days (a whole day lower or higher), trend, level shifts and AR noise."""
    _, per_day, (short, long_) = CALENDARS[int(rng.choice(len(CALENDARS), p=[0.35, 0.35, 0.2, 0.1]))]
    n = length
    t = np.arange(n, dtype=np.float64) + rng.integers(0, int(long_))  # a random phase in the long cycle
    day = (t // per_day).astype(np.int64)
    # the short cycle (the week for daily data, the day for sub-daily) has a sharp shape: many
    # harmonics; the long one (year / week) a smoother one
    season = rng.uniform(0.3, 2.5) * _fourier(t, short, int(rng.integers(2, 8)), rng)
    if rng.random() < 0.8:
        season += rng.uniform(0.2, 2.0) * _fourier(t, long_, int(rng.integers(1, 5)), rng)
    if per_day > 1 and rng.random() < 0.6:  # weekends: another level and a damped daily profile
        weekend = (day % 7) >= 5
        season = np.where(weekend, season * rng.uniform(0.2, 1.0), season) - weekend * rng.uniform(0, 1.5)
    # holiday-like days: a few a year, each moving a whole day by the same factor
    holidays = np.zeros(n)
    n_days = int(day.max() - day.min() + 1)
    for d in rng.choice(n_days, size=min(n_days, rng.poisson(n_days / 365.25 * rng.uniform(0, 10))), replace=False):
        holidays[day - day.min() == d] = rng.normal(-2.0, 1.5)
    slope = rng.normal(0, 1.0 / n) * rng.choice([0.0, 1.0, 4.0])
    shifts = np.zeros(n)
    for c in _regimes(n, rng, 0.5):
        shifts[c:] += rng.normal(0, 1.5)
    noise = rng.uniform(0.05, 0.8) * _noise(n, rng)
    signal = slope * np.arange(n) + season + holidays + shifts + noise
    if rng.random() < 0.5:  # load, traffic, sales: multiplicative, positive
        y = np.exp(0.2 * signal + rng.normal(0, 1.0))
    else:
        y = signal
    return _placed(y, rng)


def calendar(n_series: int, length: int, seed: int) -> pd.DataFrame:
    """Long frame of ``n_series`` calendar series (unique_id ``cal-00001``..., integer ds, y);
    lengths log-uniform between length / 8 (at least 64) and ``length``."""
    if n_series < 1 or length < 64:
        raise ValueError("calendar needs n_series >= 1 and length >= 64")
    return _panel(calendar_series, "cal", n_series, length, max(64, length // 8), seed)
