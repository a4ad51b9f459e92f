"""Pictures people would rather look at than read: forecast fan charts."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # headless: flows run on servers and in CI
import matplotlib.pyplot as plt
import numpy as np


def _panels(n: int):
    """A grid of up to 3 columns for ``n`` small-multiple panels: (fig, axes)."""
    cols = 3 if n > 3 else max(n, 1)
    rows = int(np.ceil(max(n, 1) / cols))
    return plt.subplots(rows, cols, figsize=(4.2 * cols, 2.8 * rows), squeeze=False)


def _save_panels(fig, axes, n: int, title: str, path: Path) -> Path:
    """Blank the unused panels, legend on the first, title, write ``path``."""
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=7, loc="upper left")
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def fan_chart(
    histories: list[np.ndarray],
    truth: np.ndarray,  # [N, H]
    quantiles: np.ndarray,  # [N, H, 9]
    ids: list[str],
    out_file: Path,
    title: str,
    n_series: int = 6,
    tail: int = 48,
    stamps: list[np.ndarray | None] | None = None,  # per series: the times of its history, then its future
) -> Path:
    """Context tail, truth and the 10-90 / 30-70 bands with the median for a few series; on their
    own dates where ``stamps`` gives them, else on steps."""
    n = min(n_series, len(ids))
    fig, axes = _panels(n)
    picks = np.linspace(0, len(ids) - 1, n).astype(int)
    dated = False
    for ax, i in zip(axes.flat, picks):
        hist = histories[i][-tail:]
        t0, h = len(hist), truth.shape[1]
        times = None if stamps is None else stamps[i]
        if times is not None and len(times) >= len(histories[i]) + 1:  # the history's dates and at least one future
            past = times[len(histories[i]) - t0 : len(histories[i])]
            future = times[len(histories[i]) : len(histories[i]) + h]
            h = len(future)
            ax.plot(past, hist, color="0.3", lw=1)
            steps = future
            dated = True
        else:
            steps = np.arange(t0, t0 + h)
            ax.plot(np.arange(t0), hist, color="0.3", lw=1)
        quantiles_i, truth_i = quantiles[i, :h], truth[i, :h]
        ax.fill_between(steps, quantiles_i[:, 0], quantiles_i[:, 8], alpha=0.2, color="C0", label="10-90%")
        ax.fill_between(steps, quantiles_i[:, 2], quantiles_i[:, 6], alpha=0.35, color="C0", label="30-70%")
        ax.plot(steps, quantiles_i[:, 4], color="C0", lw=1.5, label="median")
        ax.plot(steps, truth_i, color="C3", lw=1.2, label="actual")
        ax.set_title(str(ids[i]), fontsize=9)
        ax.tick_params(labelsize=7)
    if dated:
        fig.autofmt_xdate(rotation=30)  # once for the figure: it sets every panel's date labels
    return _save_panels(fig, axes, n, title, out_file)


def per_horizon_plot(errors: dict[str, np.ndarray], path: Path, title: str, ylabel: str = "MASE at step") -> Path:
    """One line per model: error by forecast step ``{model: [H]}`` (NaN steps are gaps)."""
    fig, ax = plt.subplots(figsize=(7, 4))
    for name, err in errors.items():
        steps = np.arange(1, len(err) + 1)
        ax.plot(steps, err, marker="o", ms=3, lw=2.2 if name == "fused" else 1.2, label=name)
    ax.set_xlabel("forecast step")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def forecast_vs_actual_plot(points, history, path: Path, title: str, tail: int = 36) -> Path:
    """Per series (at most 6): the history's tail, the stored forecast (median and 10-90% band) and the
    actuals that arrived. ``points``: scored rows (unique_id, ds, y, 0.1, 0.5, 0.9, last_ds);
    ``history``: the store's rows (unique_id, ds, y) of those series."""
    import pandas as pd

    ids = list(dict.fromkeys(points["unique_id"]))[:6]
    fig, axes = _panels(len(ids))
    for ax, uid in zip(axes.flat, ids):
        p = points[points["unique_id"] == uid].sort_values("ds")
        h = history[history["unique_id"] == uid].sort_values("ds")
        last = p["last_ds"].iloc[0]
        try:
            h = h[pd.to_datetime(h["ds"]) <= pd.to_datetime(last)].tail(tail)
        except (TypeError, ValueError):
            h = h[h["ds"] <= last].tail(tail)
        ax.plot(h["ds"], h["y"], color="0.3", lw=1)
        ax.fill_between(p["ds"], p["0.1"], p["0.9"], alpha=0.2, color="C0", label="10-90%")
        ax.plot(p["ds"], p["0.5"], color="C0", lw=1.5, label="forecast (median)")
        ax.plot(p["ds"], p["y"], color="C3", lw=1.2, marker="o", ms=2.5, label="actual")
        ax.set_title(str(uid), fontsize=9)
        ax.tick_params(labelsize=7)
        for label in ax.get_xticklabels():
            label.set_rotation(30)
    return _save_panels(fig, axes, len(ids), title, path)
