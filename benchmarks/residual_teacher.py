"""Would a residual teacher be worth distilling? Offline, on finished onboarding results.

Today's kNN teacher retrieves the futures of neighbouring train windows and maps them onto the
query's level and scale. A residual teacher retrieves what the backbone got wrong on those
neighbours instead: each train window's future minus the backbone's median forecast, in the
backbone's own normalised space, and adds their weighted mean to the backbone's forecast of the
query (every quantile shifted alike; ``shrink`` scales the correction). Neighbours and weights are
today's (the same faiss search and re-ranking), so the two teachers differ only in what they read
from the neighbours.

For each domain, validation sCRPS / MASE of: the backbone at the datastore's context (what the
adapter corrects), today's teacher, the residual teacher at shrink 1 and 0.5, and the fused model
as registered; then the same on test. Validation selects; test is shown, never used.

    python benchmarks/residual_teacher.py --runs /path/to/onboard_domains/out --domains m3-other,hourly-panel
"""

import argparse
import json
from pathlib import Path

import numpy as np
from bench_common import REPO  # noqa: F401  (puts the repository on sys.path)

from models.forecasting.batch import batch_forecast
from models.forecasting.inputs import left_pad
from models.forecasting.teacher import TeacherForecaster
from models.memory.result import OnboardingResult
from models.metrics import MEDIAN, per_series_metrics

SHRINKS = (1.0, 0.5)


def residuals(forecaster: TeacherForecaster, horizon: int) -> np.ndarray:
    """[datastore rows, horizon]: each train window's future minus the backbone's median, normalised."""
    store = forecaster.teacher
    contexts = list(np.asarray(store.contexts, np.float32))
    base = batch_forecast(forecaster.backbone, contexts, horizon, forecaster.context_length)
    futures = np.asarray(store.futures, np.float32)[:, :horizon]
    return base.normalise(futures) - base.norm_quantiles[..., MEDIAN]


def teachers(forecaster: TeacherForecaster, resid: np.ndarray, contexts, horizon: int) -> dict[str, np.ndarray]:
    c = forecaster.context_length
    base = batch_forecast(forecaster.backbone, contexts, horizon, c)
    out = forecaster.teacher.query(base.embedding, left_pad(contexts, c))
    nb, w = out.neighbors, out.weights.astype(np.float64)
    have = nb >= 0
    r = resid[np.where(have, nb, 0)]  # [m, k, h]
    wk = np.where(have, w, 0.0)[..., None] * np.isfinite(r)
    total = wk.sum(axis=1)
    mean_r = np.where(total > 0, (np.nan_to_num(r) * wk).sum(axis=1) / np.where(total > 0, total, 1), 0.0)
    med_r = _weighted_median(r, np.where(have, w, 0.0))
    found = {"backbone@datastore context": base.quantiles, "teacher": out.quantiles}
    for label, corr in (("mean", mean_r), ("median", med_r)):
        for s in SHRINKS:
            q = base.denormalise(base.norm_quantiles + s * corr[..., None].astype(np.float32))
            found[f"residual teacher, {label} x{s:g}"] = np.sort(q, axis=-1)
    return found


def _weighted_median(r: np.ndarray, w: np.ndarray) -> np.ndarray:
    """[m, k, h] residuals, [m, k] weights -> [m, h] weighted medians over the neighbours (0 where none):
    one neighbour with a tiny scale cannot drag the correction."""
    m, k, h = r.shape
    ww = np.broadcast_to(w[..., None], r.shape) * np.isfinite(r)
    order = np.argsort(np.where(np.isfinite(r), r, np.inf), axis=1)
    rs = np.take_along_axis(np.nan_to_num(r), order, axis=1)
    cw = np.cumsum(np.take_along_axis(ww, order, axis=1), axis=1)
    total = cw[:, -1:, :]
    pick = np.argmax(cw >= 0.5 * total, axis=1)  # [m, h]
    med = np.take_along_axis(rs, pick[:, None, :], axis=1)[:, 0, :]
    return np.where(total[:, 0, :] > 0, med, 0.0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", required=True, help="the --out-dir of an onboard_domains.py run")
    ap.add_argument("--domains", required=True)
    args = ap.parse_args()
    print("| domain | model | val sCRPS | val MASE | test sCRPS | test MASE |")
    print("|---|---|---|---|---|---|")
    for domain in args.domains.split(","):
        run = json.loads((Path(args.runs) / f"{domain}.json").read_text())
        result = OnboardingResult.load(run["result_dir"])
        split, h = result.split, result.split.horizon
        forecaster = TeacherForecaster.load(result.model_dir("teacher"))
        resid = residuals(forecaster, h)
        rows: dict[str, list[float]] = {}
        for part in ("val", "test"):
            w = split.windows(part)
            found = teachers(forecaster, resid, w.contexts, h)
            found["fused (registered)"] = dict(result.forecasts(part).items())["fused"]
            for name, q in found.items():
                m = per_series_metrics(q, w.truth, [split.train[i] for i in w.series], split.seasons[w.series])
                rows.setdefault(name, []).extend([float(np.nanmean(m["sCRPS"])), float(np.nanmean(m["MASE"]))])
        for name, (vs, vm, ts, tm) in rows.items():
            print(f"| {domain} | {name} | {vs:.4f} | {vm:.3f} | {ts:.4f} | {tm:.3f} |", flush=True)


if __name__ == "__main__":
    main()
