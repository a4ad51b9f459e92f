"""AutoGluon-TimeSeries as a peer, on exactly the windows tsfm's onboarding scored.

Two steps, two environments (AutoGluon is never a dependency of tsfm):

  1. forecast, in the peer venv (``make peer``: ``.venv-peer`` with torch 2.13 and
     ``benchmarks/peer-requirements.txt``): for every domain of an ``onboard_domains.py`` run, each
     series' train + validation parts are the context and its test part the target, read from the
     onboarding's own ``split.npz``. One TimeSeriesPredictor per (horizon, season) group (M3 categories
     mix yearly, quarterly and monthly series), with its statistical, tabular and deep models (no
     foundation model: they load from a hub this machine cannot reach), two validation windows and its
     WeightedEnsemble, and the wall-clock budget tsfm's onboarding of that domain took (split over
     the groups by series count). Quantiles 0.1..0.9 go to ``<out>/autogluon/<domain>.npz``.

        .venv-peer/bin/python benchmarks/peer_autogluon.py forecast --runs /work/bench-after/out

  2. score, in the project's venv: tsfm's own metrics (MASE with the train part's seasonal-naive
     scale, scaled CRPS over the 9 quantiles, means over series) for AutoGluon beside the served
     champion and the best statistical model, and geometric means over the domains.

        .venv/bin/python benchmarks/peer_autogluon.py score --runs /work/bench-after/out
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

LEVELS = [round(0.1 * i, 1) for i in range(1, 10)]
# a regular calendar for AutoGluon by season (tsfm's splits are arrays; only the spacing matters)
FREQ = {1: "YS", 4: "QS", 12: "MS", 52: "W", 7: "D", 24: "h", 48: "30min"}
MODELS = {
    "SeasonalNaive": {},
    "AutoETS": {},
    "DynamicOptimizedTheta": {},
    "NPTS": {},
    "RecursiveTabular": {},
    "DirectTabular": {},
    "DeepAR": {},
    "PatchTST": {},
    "TiDE": {},
    "TemporalFusionTransformer": {},
}


def _parts(split_file: Path) -> dict:
    with np.load(split_file) as z:
        out = {k: z[k] for k in z.files}

    def unpack(p):
        return [out[f"{p}_values"][a:b] for a, b in zip(out[f"{p}_offsets"][:-1], out[f"{p}_offsets"][1:])]

    return {
        "ids": out["ids"].tolist(),
        "train": unpack("train"),
        "val": unpack("val"),
        "test": unpack("test"),
        "horizons": out["horizons"],
        "seasons": out["seasons"],
    }


def forecast(runs: Path) -> None:
    import pandas as pd
    from autogluon.timeseries import TimeSeriesDataFrame, TimeSeriesPredictor

    out_dir = runs / "autogluon"
    out_dir.mkdir(exist_ok=True)
    for result_json in sorted(runs.glob("*.json")):
        run = json.loads(result_json.read_text())
        domain = result_json.stem
        target = out_dir / f"{domain}.npz"
        if target.is_file():
            continue
        split = _parts(Path(run["result_dir"]) / "split.npz")
        n, h_max = len(split["ids"]), int(split["horizons"].max())
        quantiles = np.full((n, h_max, len(LEVELS)), np.nan)
        groups = sorted(set(zip(split["horizons"].tolist(), split["seasons"].tolist())))
        started, models_used = time.perf_counter(), {}
        for h, m in groups:
            idx = np.flatnonzero((split["horizons"] == h) & (split["seasons"] == m))
            budget = max(30.0, float(run["wall_s"]) * len(idx) / n)
            rows = []
            for i in idx:
                y = np.concatenate([split["train"][i], split["val"][i]]).astype(np.float64)
                ds = pd.date_range("2000-01-01", periods=len(y), freq=FREQ.get(m, "D"))
                rows.append(pd.DataFrame({"item_id": split["ids"][i], "timestamp": ds, "target": y}))
            data = TimeSeriesDataFrame.from_data_frame(pd.concat(rows, ignore_index=True))
            predictor = TimeSeriesPredictor(
                prediction_length=h,
                quantile_levels=LEVELS,
                eval_metric="WQL",
                path=str(out_dir / f"models-{domain}-h{h}-m{m}"),
                verbosity=1,
            )
            predictor.fit(
                data, hyperparameters=MODELS, num_val_windows=2, time_limit=budget, enable_ensemble=True, random_seed=0
            )
            pred = predictor.predict(data)
            models_used[f"h{h}-m{m}"] = predictor.model_best
            for i in idx:
                quantiles[i, :h] = pred.loc[split["ids"][i]][[str(q) for q in LEVELS]].to_numpy()
        np.savez_compressed(
            target, quantiles=quantiles, seconds=time.perf_counter() - started, best=json.dumps(models_used)
        )
        print(
            f"{domain}: {time.perf_counter() - started:.0f} s (budget {run['wall_s']:.0f} s), best {models_used}",
            flush=True,
        )


def score(runs: Path) -> None:
    import pandas as pd
    from bench_common import REPO  # noqa: F401  (puts the repository on sys.path)

    from models.memory.result import OnboardingResult
    from models.metrics import per_series_metrics
    from reports.tables import markdown_table

    rows = []
    for result_json in sorted(runs.glob("*.json")):
        peer = runs / "autogluon" / f"{result_json.stem}.npz"
        if not peer.is_file():
            continue
        run = json.loads(result_json.read_text())
        result = OnboardingResult.load(run["result_dir"])
        w = result.split.windows("test")
        with np.load(peer) as z:
            q, seconds, best = z["quantiles"], float(z["seconds"]), json.loads(str(z["best"]))
        scores = per_series_metrics(q, w.truth, result.split.train, result.split.seasons)
        test = pd.read_csv(result.metrics_file("test"), index_col=0)
        served = (run.get("promotion") or {}).get("family") or run["challenger"]["family"]
        row = {
            "domain": result_json.stem,
            "served": served,
            "autogluon_best": ", ".join(sorted(set(best.values()))),
            "tsfm_s": run.get("wall_s"),
            "autogluon_s": seconds,
        }
        for metric in ("MASE", "sCRPS"):
            ag = float(np.nanmean(scores[metric]))
            stat = float(test.loc[["auto_ets", "theta"], metric].min())
            row[f"{metric}_tsfm"], row[f"{metric}_autogluon"] = float(test.loc[served, metric]), ag
            row[f"{metric}_tsfm_vs_stat"], row[f"{metric}_autogluon_vs_stat"] = row[f"{metric}_tsfm"] / stat, ag / stat
            row[f"{metric}_tsfm_vs_autogluon"] = row[f"{metric}_tsfm"] / ag
        rows.append(row)
    table = pd.DataFrame(rows).set_index("domain")
    ratios = [c for c in table.columns if "_vs_" in c]
    table.loc["geometric mean", ratios] = np.exp(np.log(table[ratios].astype(float)).mean())
    text = markdown_table(table)
    print(text)
    (runs / "peer_autogluon.md").write_text(text + "\n")
    table.to_csv(runs / "peer_autogluon.csv")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("step", choices=("forecast", "score"))
    ap.add_argument("--runs", required=True, help="the --out-dir of an onboard_domains.py run")
    args = ap.parse_args()
    {"forecast": forecast, "score": score}[args.step](Path(args.runs))
