"""Could validation fit AutoETS once per series? Offline, on finished onboarding results.

Onboarding refits AutoETS at every validation origin and on test: on 366 monthly series of ~300
points that was 112 of 188 s. Serving already re-runs a fitted AutoETS over a longer context with
statsforecast's ``forward`` instead of refitting. Here AutoETS is fitted once per series, on its
earliest validation context, and re-run with ``forward`` at its later origins (and, as a second
variant, on test too). Prints validation and test sCRPS / MASE of both against the onboarding's own
refits (read from its per-window tables) and what the fits cost.

    python benchmarks/ets_reuse.py --runs /path/to/onboard_domains/out --domains m3-other,daily-panel
"""

import argparse
import json
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
from bench_common import REPO  # noqa: F401  (puts the repository on sys.path)

from models.forecasting.statistical import MAX_HISTORY, fit_one, forward_one
from models.memory.result import OnboardingResult
from models.metrics import per_series_metrics


def _series_job(args) -> list[tuple[int, np.ndarray]]:
    """One series' windows, earliest first: fit on the first, forward on the rest."""
    jobs, h, m = args
    out = []
    state, start = None, 0
    for i, ctx in jobs:
        if state is None:  # the first window, or every window while fits fall back (nothing to re-run)
            q, _, state = fit_one(ctx, h, m, "auto_ets", keep=True)
            start = max(0, len(ctx) - MAX_HISTORY)  # where the fitted history starts in this series
        else:
            q = forward_one(np.asarray(ctx, np.float64)[start:], h, "auto_ets", state)
            if q is None:
                q = fit_one(ctx, h, m, "auto_ets")[0]
        out.append((i, q))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", required=True)
    ap.add_argument("--domains", required=True)
    args = ap.parse_args()
    print("| domain | AutoETS | val sCRPS | val MASE | test sCRPS | test MASE | fit seconds |")
    print("|---|---|---|---|---|---|---|")
    with ProcessPoolExecutor(2) as pool:
        for domain in args.domains.split(","):
            run = json.loads((Path(args.runs) / f"{domain}.json").read_text())
            result = OnboardingResult.load(run["result_dir"])
            split = result.split
            wv, wt = split.windows("val"), split.windows("test")
            # every window of a series, validation by origin then test: one job per series
            # a validation window's origin counts back from test (1 = the latest): earliest first
            windows = [("val", i, int(s), -int(o)) for i, (s, o) in enumerate(zip(wv.series, wv.origin))]
            windows += [("test", i, int(s), 0) for i, s in enumerate(wt.series)]
            by_series: dict[int, list] = {}
            for part, i, s, o in sorted(windows, key=lambda r: (r[2], r[3])):
                by_series.setdefault(s, []).append((part, i))
            q = {
                "val": np.full((len(wv), split.horizon, 9), np.nan),
                "test": np.full((len(wt), split.horizon, 9), np.nan),
            }
            q_val_only = q["test"].copy()
            t = time.perf_counter()
            jobs, keys = [], []
            for s, items in by_series.items():
                h, m = int(split.horizons[s]), int(split.seasons[s])
                ctxs = [(k, (wv if part == "val" else wt).contexts[idx]) for k, (part, idx) in enumerate(items)]
                jobs.append((ctxs, h, m))
                keys.append((s, items, h))
            for (s, items, h), res in zip(keys, pool.map(_series_job, jobs, chunksize=8)):
                for k, qq in res:
                    part, idx = items[k]
                    q[part][idx, :h] = qq
            seconds = time.perf_counter() - t
            t = time.perf_counter()
            for idx, s in enumerate(wt.series):  # the second variant's test: refitted, as today
                h, m = int(split.horizons[s]), int(split.seasons[s])
                q_val_only[idx, :h] = fit_one(wt.contexts[idx], h, m, "auto_ets")[0]
            test_refit_s = time.perf_counter() - t

            def score(qq, w):
                m = per_series_metrics(qq, w.truth, [split.train[i] for i in w.series], split.seasons[w.series])
                return float(np.nanmean(m["sCRPS"])), float(np.nanmean(m["MASE"]))

            rows = {}
            for part in ("val", "test"):
                per = pd.read_csv(result.per_series_file(part))
                per = per[per["model"] == "auto_ets"]
                rows.setdefault("refit at every origin (today)", []).extend([per["sCRPS"].mean(), per["MASE"].mean()])
            rows["fit once, forward at later origins and on test"] = [*score(q["val"], wv), *score(q["test"], wt)]
            rows["fit once for validation, refit on test"] = [*score(q["val"], wv), *score(q_val_only, wt)]
            cost = {
                "refit at every origin (today)": "",
                "fit once, forward at later origins and on test": f"{seconds:.1f}",
                "fit once for validation, refit on test": f"{seconds:.1f} + {test_refit_s:.1f} (test, one process)",
            }
            for name, (vs, vm, ts, tm) in rows.items():
                print(f"| {domain} | {name} | {vs:.4f} | {vm:.3f} | {ts:.4f} | {tm:.3f} | {cost[name]} |", flush=True)


if __name__ == "__main__":
    main()
