"""Would a new statistical member add to the ensemble? Offline, on finished onboarding results.

For each domain of an ``onboard_domains.py`` run, fits the extra statsforecast models (AutoCES,
DynamicOptimizedTheta, AutoARIMA) on the same validation and test contexts as the onboarding's
candidates, then fits the cross-validated greedy ensemble with and without each and prints its
validation and test scores, its weights, the extra model alone, and what its fits cost. A family earns
its place in onboarding by what it adds here, not by existing.

    python benchmarks/ensemble_members.py --runs /path/to/onboard_domains/out --domains m3-other,hourly-panel
"""

import argparse
import json
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from bench_common import REPO  # noqa: F401  (puts the repository on sys.path)

from evaluation.baselines import grouped_baseline_forecasts
from evaluation.ensemble import combine, fit_ensemble
from models.forecasting.statistical import LEVELS, MAX_HISTORY, _naive, _quantiles, mstl_seasons
from models.memory.result import OnboardingResult
from models.metrics import per_series_metrics

BASE = ["seasonal_naive", "auto_ets", "theta", "backbone", "fused", "teacher"]  # today's members


def _fit_chunk(args) -> list[np.ndarray]:
    from statsforecast.models import MSTL, AutoARIMA, AutoCES, DynamicOptimizedTheta

    xs, h, m, name = args
    make = {"ces": AutoCES, "dotm": DynamicOptimizedTheta, "arima": AutoARIMA, "mstl": MSTL}[name]
    out = []
    for x in xs:
        x = np.asarray(x, np.float64)[-MAX_HISTORY:]
        season = m if len(x) > 2 * m else 1
        if name == "mstl":  # the season and its longer cycle, as onboarding's MSTL takes them
            season = mstl_seasons(m, len(x)) or 1
        try:
            q = _quantiles(make(season_length=season).forecast(y=x, h=h, level=list(LEVELS)))
        except Exception:  # as onboarding does: a model that cannot fit falls back to naive
            q = None
        out.append(q if q is not None and np.isfinite(q).all() else _naive(x, h, 1))
    return out


def extra_forecasts(windows, split, name: str, pool) -> np.ndarray:
    horizons, seasons = split.horizons[windows.series], split.seasons[windows.series]
    out = np.full((len(windows), split.horizon, len(LEVELS) * 2 + 1), np.nan)
    for h, m in sorted(set(zip(horizons.tolist(), seasons.tolist()))):
        idx = np.flatnonzero((horizons == h) & (seasons == m))
        chunks = [idx[i : i + 32] for i in range(0, len(idx), 32)]
        jobs = [([windows.contexts[i] for i in c], h, m, name) for c in chunks]
        for c, res in zip(chunks, pool.map(_fit_chunk, jobs)):
            out[c, :h] = np.stack(res)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", required=True, help="the --out-dir of an onboard_domains.py run")
    ap.add_argument("--domains", required=True)
    ap.add_argument("--models", default="ces,dotm,arima")
    args = ap.parse_args()
    names = args.models.split(",")
    with ProcessPoolExecutor(2) as pool:
        for domain in args.domains.split(","):
            run = json.loads((Path(args.runs) / f"{domain}.json").read_text())
            result = OnboardingResult.load(run["result_dir"])
            split = result.split
            parts = {}
            for part in ("val", "test"):
                w = split.windows(part)
                fc, _, _ = grouped_baseline_forecasts(
                    w.contexts, split.horizons[w.series], split.seasons[w.series], split.horizon, n_jobs=2
                )
                fc.update(dict(result.forecasts(part).items()))
                for name in names:
                    t = time.perf_counter()
                    fc[name] = extra_forecasts(w, split, name, pool)
                    if part == "test":
                        print(f"{domain} {name}: {time.perf_counter() - t:.1f} s for {len(w)} series", flush=True)
                parts[part] = (w, fc)
            (wv, fv), (wt, ft) = parts["val"], parts["test"]

            def score(q, w):
                m = per_series_metrics(q, w.truth, [split.train[i] for i in w.series], split.seasons[w.series])
                return float(np.nanmean(m["sCRPS"])), float(np.nanmean(m["MASE"]))

            for label, members in [("base", BASE), *((f"+{n}", BASE + [n]) for n in names), ("+all", BASE + names)]:
                ens = fit_ensemble({m: fv[m] for m in members if m in fv}, wv.truth, wv.origin, wv.series)
                (sv, _), (st, mt) = score(ens.val, wv), score(combine(ft, ens.used), wt)
                print(
                    f"{domain} {label}: val sCRPS {sv:.4f}, test sCRPS {st:.4f} MASE {mt:.3f}, weights {ens.used}",
                    flush=True,
                )
            for name in names:
                st, mt = score(ft[name], wt)
                print(f"{domain} {name} alone: test sCRPS {st:.4f} MASE {mt:.3f}")


if __name__ == "__main__":
    main()
