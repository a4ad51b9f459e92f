"""Zero-shot evaluation of a registered backbone on packaged real data.

prepare (resolve and download the backbone, open a run folder) -> forecast one
dataset at a time (frozen backbone and statsforecast baselines on the test
windows, metrics per series) -> summarize (tables overall, by M3 category and by
frequency) -> log (MLflow run, metrics, artifacts, tags on the backbone version).

Test windows (DESIGN.md split: the test part is the last horizon of a series):
- M3: the official test part of every series, horizons 6/8/18/8 and season lengths
  1/4/12/1 for yearly/quarterly/monthly/other; the forecast sees the official
  training part only.
- vic_elec (half-hourly demand, a day = 48 steps, season 48) and epf_fr_be (hourly
  prices, 24 steps, season 24): the last ``windows`` non-overlapping windows of one
  horizon each (the last one is the test part), each forecast made from every point
  before its window (rolling origin).
The backbone sees at most its context; the statistical baselines are fitted on the
last ``max_history`` points; the MASE scale comes from the whole history.
"""
from __future__ import annotations

import json
import math
import os
import time
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
from mlflow.exceptions import MlflowException
from prefect import task

from infra.settings import EvaluateParams, Settings
from tasks import tracking
from tasks.baselines import baseline_forecasts_with_notes, baseline_pool, progress_logger
from tasks.logs import run_logger
from tasks.metrics import per_series_metrics, scaled_crps_parts, summarize
from tasks.sources import M3_CATEGORIES, M3_FREQUENCIES, M3_SEASON, _m3_index, m3_names, read_source

ELECTRICITY = {"vic_elec": (48, 48), "epf_fr_be": (24, 24)}  # (horizon, season): one day ahead
BACKBONE = "backbone"  # the backbone's row in the tables
METRICS = ("MASE", "sCRPS", "sMAPE", "sCRPS_pooled", "MASE_rel", "sCRPS_rel")
TAGGED = ("MASE", "sCRPS", "sMAPE", "MASE_rel", "sCRPS_rel")  # on the backbone's model version


# ----------------------------------------------------------------------------- data
@dataclass
class Group:
    """Test windows that share one horizon and season length."""

    dataset: str
    horizon: int
    season: int
    meta: pd.DataFrame  # one row per window: instance, unique_id, category, frequency, window, origin
    histories: list[np.ndarray]  # every point before each window, float64
    y: np.ndarray  # [N, horizon] the window's targets
    n_total: int  # series in the whole dataset (before --max-series)


def dataset_names() -> list[str]:
    return m3_names() + sorted(ELECTRICITY)


def check_datasets(names: list[str]) -> list[str]:
    known = dataset_names()
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ValueError(f"unknown dataset(s) {unknown}; available: m3, m3-<category>[-<frequency>] "
                         f"(categories {', '.join(M3_CATEGORIES)}), {', '.join(sorted(ELECTRICITY))}")
    return names


def subsample(n: int, max_series: int | None) -> np.ndarray:
    """Indices of at most ``max_series`` of ``n`` items, evenly spaced (deterministic)."""
    if not max_series or max_series >= n:
        return np.arange(n)
    return np.unique(np.linspace(0, n - 1, max_series).round().astype(int))


def _series(frame: pd.DataFrame) -> dict[str, pd.DataFrame]:
    frame = frame.sort_values(["unique_id", "ds"], kind="stable")
    return {str(uid): g for uid, g in frame.groupby("unique_id", sort=False)}


def load_groups(dataset: str, max_series: int | None = None, windows: int = 1) -> list[Group]:
    check_datasets([dataset])
    if dataset in ELECTRICITY:
        return [_electricity_group(dataset, max_series, windows)]
    return _m3_groups(dataset, max_series)


def _m3_groups(dataset: str, max_series: int | None) -> list[Group]:
    series = _series(read_source(f"builtin:{dataset}").frame)
    idx = _m3_index()
    idx = idx[idx["sn"].isin(series)].reset_index(drop=True)  # JSON order: yearly, quarterly, ...
    n_total = len(idx)
    idx = idx.iloc[subsample(n_total, max_series)]
    groups = []
    for freq in M3_FREQUENCIES:
        part = idx[idx["frequency"] == freq]
        if part.empty:
            continue
        h = int(part["horizon"].iloc[0])
        assert (part["horizon"] == h).all(), f"M3 {freq}: mixed horizons"
        values = [series[sn]["y"].to_numpy(np.float64) for sn in part["sn"]]
        meta = pd.DataFrame({"instance": part["sn"].to_numpy(str), "unique_id": part["sn"].to_numpy(str),
                             "category": part["category"].to_numpy(), "frequency": freq, "window": 0,
                             "origin": [str(len(v) - h - 1) for v in values]})
        groups.append(Group(dataset, h, M3_SEASON[freq], meta, [v[:-h] for v in values],
                            np.stack([v[-h:] for v in values]), n_total))
    return groups


def _electricity_group(dataset: str, max_series: int | None, windows: int) -> Group:
    horizon, season = ELECTRICITY[dataset]
    series = _series(read_source(f"builtin:{dataset}").frame)
    ids = sorted(series)
    rows, histories, truth = [], [], []
    for i in subsample(len(ids), max_series):
        uid = ids[i]
        y = series[uid]["y"].to_numpy(np.float64)
        ds = series[uid]["ds"].to_numpy()
        for k in range(windows - 1, -1, -1):  # oldest window first; window 0 is the test part
            cut = len(y) - (k + 1) * horizon
            if cut < 2 * season + 1:
                continue
            rows.append((f"{uid}/{k}", uid, "", dataset, k, str(pd.Timestamp(ds[cut - 1]))))
            histories.append(y[:cut])
            truth.append(y[cut:cut + horizon])
    if not rows:
        raise ValueError(f"{dataset}: no series is long enough for {windows} window(s) of {horizon}")
    meta = pd.DataFrame(rows, columns=["instance", "unique_id", "category", "frequency", "window", "origin"])
    return Group(dataset, horizon, season, meta, histories, np.stack(truth), len(ids))


def pretrain_sources(data_version: str | None, settings: Settings) -> list[dict]:
    """The backbone's pre-training stores (its ``data_version`` tag, ``domain:md5,...``) with
    the source and horizon each was ingested with: from the store itself when its digest
    matches, else from the configured sources (``verified`` False)."""
    out = []
    for item in (data_version or "").split(","):
        domain, _, digest = item.strip().partition(":")
        if not domain or not digest:
            continue
        meta_file = settings.store_dir(domain) / "meta.json"
        meta = json.loads(meta_file.read_text()) if meta_file.is_file() else {}
        if meta and str(meta.get("md5", "")).startswith(digest):
            out.append({"domain": domain, "source": meta.get("source"), "horizon": int(meta["horizon"]),
                        "verified": True})
        elif domain in settings.sources:
            spec = settings.sources[domain]
            out.append({"domain": domain, "source": spec.source, "horizon": spec.horizon, "verified": False})
        else:
            out.append({"domain": domain, "source": None, "horizon": None, "verified": False})
    return out


def pretrain_overlap(groups: list[Group], sources: list[dict]) -> list[dict]:
    """Test points the backbone may have seen in pre-training.

    Pre-training uses the train part of each store: all but the last 2 x (store horizon)
    points of every series. A series of an evaluated window that is also in a builtin
    pre-training source overlaps when that train part reaches into its earliest window.
    Other builtins (M1, tourism, ...) are other collections: no overlap by construction.
    Sources that are not builtins (files, S3) cannot be checked: listed with series None.
    """
    starts: dict[str, int] = {}  # unique_id -> index of its earliest test point
    for g in groups:
        for uid, h in zip(g.meta["unique_id"], g.histories):
            starts[uid] = min(starts.get(uid, len(h)), len(h))
    found = []
    for src in sources:
        source = src.get("source") or ""
        if source.startswith("synthetic:"):
            continue
        name = source.removeprefix("builtin:")
        if source.startswith("builtin:") and name not in dataset_names() and not name.startswith("m3"):
            continue  # another packaged collection than the evaluated ones
        if not source.startswith("builtin:") or name not in dataset_names() or not src.get("horizon"):
            found.append({**src, "series": None, "points": None, "max_points": None})
            continue
        lengths = read_source(source).frame.groupby("unique_id").size()
        seen = {str(uid): int(n) - 2 * int(src["horizon"]) for uid, n in lengths.items()}
        leaks = [seen[uid] - start for uid, start in starts.items() if uid in seen and seen[uid] > start]
        if leaks:
            found.append({**src, "series": len(leaks), "points": int(sum(leaks)), "max_points": int(max(leaks))})
    return found


# ------------------------------------------------------------------------- backbone
def resolve_registered(uri: str) -> tuple[str, str]:
    """``models:/<name>@<alias>``, ``models:/<name>/<version>``, ``<version>`` (of `backbone`)
    or ``<name>`` (its latest version) -> (name, version)."""
    ref = uri.strip().removeprefix("models:/").strip("/")
    client = mlflow.MlflowClient()
    try:
        if "@" in ref:
            name, alias = ref.split("@", 1)
            return name, str(client.get_model_version_by_alias(name, alias).version)
        if "/" in ref:
            name, version = ref.rsplit("/", 1)
        elif ref.isdigit():
            name, version = "backbone", ref
        else:
            name, version = ref, tracking.latest_version(ref)
            if version is None:
                raise LookupError(f"{uri}: registered model {ref!r} has no versions")
        return name, str(client.get_model_version(name, version).version)
    except MlflowException as exc:
        raise LookupError(f"{uri}: no such registered model version ({exc.message.splitlines()[0]})") from None


def effective_context(requested: int, max_context: int, patch_size: int, horizon: int) -> int:
    """The requested context, capped so that context + horizon patches fit in max_context."""
    room = max_context - math.ceil(horizon / patch_size) * patch_size
    if room < 1:
        raise ValueError(f"horizon {horizon} does not fit in the backbone's max_context {max_context}")
    return min(requested, room)


def _device(name: str) -> str:
    if name != "auto":
        return name
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def _n_jobs(n: int) -> int:
    if n:
        return n
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def prepare_evaluation(params: EvaluateParams, settings: Settings) -> dict:
    """Check the datasets, resolve and download the backbone, open the run folder."""
    from models.backbone_forecaster import BackboneForecaster

    check_datasets(params.datasets)
    tracking.configure(settings)
    name, version = resolve_registered(params.backbone)
    run_dir = settings.run_dir("evaluate", f"{name}-{version}-{time.strftime('%Y%m%d-%H%M%S')}")
    run_dir.mkdir(parents=True, exist_ok=True)
    local = Path(mlflow.artifacts.download_artifacts(f"models:/{name}/{version}", dst_path=str(run_dir / "model")))
    found = sorted(local.rglob("backbone_forecaster.json"))
    if not found:
        raise ValueError(f"{params.backbone} (models:/{name}/{version}) is not a backbone forecaster")
    model_dir = found[0].parent
    forecaster = BackboneForecaster.load(model_dir)
    cfg = forecaster.backbone.config
    tags = tracking.version_tags(name, version)
    info = {
        "uri": params.backbone, "name": name, "version": version, "model_dir": str(model_dir),
        "run_dir": str(run_dir), "train_context": int(forecaster.context_length),
        "context_length": int(params.context_length or forecaster.context_length),
        "max_context": int(cfg.max_context), "patch_size": int(cfg.patch_size),
        "parameters": int(sum(p.numel() for p in forecaster.backbone.parameters())),
        "preset": tags.get("preset"), "data_version": tags.get("data_version"),
        "pretrain_sources": pretrain_sources(tags.get("data_version"), settings),
        "started": time.time(),
    }
    (run_dir / "backbone.json").write_text(json.dumps(info, indent=2))
    run_logger().info("zero-shot evaluation of %s/%s (%s parameters, context %d) on %s -> %s", name, version,
                      f"{info['parameters']:,}", info["context_length"], ", ".join(params.datasets), run_dir)
    return info


# ------------------------------------------------------------------------- forecast
def _group_label(g: Group) -> str:
    freq = g.meta["frequency"].iloc[0]
    return g.dataset if freq == g.dataset else f"{g.dataset}/{freq}"


def forecast_dataset(dataset: str, backbone: dict, params: EvaluateParams) -> str:
    """Backbone and baseline forecasts for one dataset's test windows -> per-series metrics.

    Writes ``<run_dir>/<dataset>/per_series.csv`` (one row per window and model) and
    ``forecast.json`` (timings, contexts, baseline fallbacks); returns that folder.
    """
    from models.backbone_forecaster import BackboneForecaster

    out = Path(backbone["run_dir"]) / dataset
    out.mkdir(parents=True, exist_ok=True)
    groups = load_groups(dataset, params.max_series, params.windows)
    forecaster = BackboneForecaster.load(backbone["model_dir"])
    device, n_jobs = _device(params.device), _n_jobs(params.n_jobs)
    with ExitStack() as stack:
        pool = stack.enter_context(baseline_pool(n_jobs, params.baselines)) if n_jobs > 1 else None
        per, info = _forecast_groups(groups, forecaster, params, backbone, device, n_jobs, pool, out)
    per.to_csv(out / "per_series.csv", index=False)
    if info["fallbacks"]:
        run_logger().warning("%s: %d baseline note(s) (season or model fallbacks), listed in forecast.json",
                             dataset, len(info["fallbacks"]))
    info["series"] = int(per["unique_id"].nunique())
    info["series_total"] = groups[0].n_total
    info["pretrain_overlap"] = pretrain_overlap(groups, backbone.get("pretrain_sources", []))
    for o in info["pretrain_overlap"]:
        run_logger().warning("%s: pre-training data (%s) %s", dataset, o["domain"],
                             f"overlaps the test windows of {o['series']} series (up to {o['max_points']} points "
                             "each)" if o["series"] else "could not be checked for overlap")
    (out / "forecast.json").write_text(json.dumps({"dataset": dataset, **info}, indent=2))
    return str(out)


def _forecast_groups(groups, forecaster, params, backbone, device, n_jobs, pool, out) -> tuple[pd.DataFrame, dict]:
    import statsforecast.models  # noqa: F401  (imported before any clock starts)

    from models.inference import batch_forecast
    from tasks.plots import fan_chart

    logger = run_logger()
    seconds: dict[str, float] = {}
    notes: list[str] = []
    contexts: dict[str, int] = {}
    frames = []
    for g in groups:
        label = _group_label(g)
        n = len(g.histories)
        ctx = effective_context(backbone["context_length"], backbone["max_context"], backbone["patch_size"], g.horizon)
        contexts[label] = ctx
        started = time.perf_counter()
        q = batch_forecast(forecaster.backbone, g.histories, g.horizon, ctx, params.batch_size, device)["quantiles"]
        forecasts = {BACKBONE: q.astype(np.float64)}
        seconds[BACKBONE] = seconds.get(BACKBONE, 0.0) + time.perf_counter() - started
        logger.info("%s: backbone forecast %d window(s), horizon %d, context %d in %.1f s",
                    label, n, g.horizon, ctx, time.perf_counter() - started)
        fit_on = [h[-params.max_history:] for h in g.histories]
        for model in params.baselines:
            started = time.perf_counter()
            fc, model_notes = baseline_forecasts_with_notes(
                fit_on, g.horizon, g.season, models=(model,), n_jobs=n_jobs,
                progress=progress_logger(label, logger), executor=pool)
            forecasts.update(fc)
            notes += [f"{label} {note}" for note in model_notes]
            seconds[model] = seconds.get(model, 0.0) + time.perf_counter() - started
        for model, quantiles in forecasts.items():
            m = per_series_metrics(quantiles, g.y, g.histories, g.season)  # MASE scale: the whole history
            num, den = scaled_crps_parts(g.y, quantiles)
            frames.append(g.meta.assign(model=model, horizon=g.horizon, season=g.season, **m,
                                        crps_num=num, crps_den=den))
        fan_chart(g.histories, g.y, forecasts[BACKBONE], list(g.meta["instance"]),
                  out / f"fan_{label.replace('/', '_')}.png", f"{label}: zero-shot backbone forecast")
    per = pd.concat(frames, ignore_index=True)
    return per, {"windows": int(per["instance"].nunique()), "seconds": seconds, "contexts": contexts,
                 "n_jobs": n_jobs, "device": device, "fallbacks": notes}


# ------------------------------------------------------------------------ summarize
def scope_name(dataset: str, by: str, value: str) -> str:
    """Metric-name prefix: ``m3``, ``m3.category-micro``, ``m3.frequency-monthly``."""
    return dataset if by == "all" else f"{dataset}.{by}-{value}"


def dataset_table(dataset: str, per: pd.DataFrame) -> pd.DataFrame:
    """Rows (by, slice, model): the whole dataset, then each M3 category and frequency."""
    parts = [("all", dataset, per)]
    for by, order in (("category", M3_CATEGORIES), ("frequency", M3_FREQUENCIES)):
        values = [v for v in order if v in set(per[by])]
        if dataset.startswith("m3") and len(values) > 1:
            parts += [(by, v, per[per[by] == v]) for v in values]
    tables = []
    for by, value, sub in parts:
        t = summarize(sub).reset_index()
        t.insert(0, "n", sub["instance"].nunique())
        t.insert(0, "slice", value)
        t.insert(0, "by", by)
        t.insert(0, "dataset", dataset)
        t.insert(0, "scope", scope_name(dataset, by, value))
        tables.append(t)
    return pd.concat(tables, ignore_index=True)


def _fmt(v: float) -> str:
    return "nan" if not np.isfinite(v) else f"{v:.2f}" if abs(v) >= 10 else f"{v:.3f}"


def _md_rows(table: pd.DataFrame, first: str) -> list[str]:
    cols = ["MASE", "sCRPS", "sMAPE", "sCRPS_pooled", "MASE_rel", "sCRPS_rel"]
    head = [first, "n", "model", "MASE", "sCRPS", "sMAPE", "sCRPS pooled", "MASE rel", "sCRPS rel"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * 3 + "---:|" * len(cols)]
    for key, block in table.groupby(first, sort=False):
        best = {c: block[c].min() for c in cols}
        for _, r in block.iterrows():
            cells = [f"**{_fmt(r[c])}**" if r[c] == best[c] and len(block) > 1 else _fmt(r[c]) for c in cols]
            lines.append(f"| {key} | {r['n']} | {r['model']} | " + " | ".join(cells) + " |")
    return lines


def _pretrain_text(backbone: dict) -> str:
    sources = backbone.get("pretrain_sources") or []
    if not sources:
        return backbone.get("data_version") or "unknown"
    return ", ".join(f"{s['domain']} (`{s['source']}`, train part: all but the last 2 x {s['horizon']} points)"
                     if s.get("source") else s["domain"] for s in sources)


def markdown_report(table: pd.DataFrame, backbone: dict, datasets: dict[str, dict], params: EvaluateParams) -> str:
    who = f"{backbone['name']} v{backbone['version']}"
    lines = [
        f"### Zero-shot evaluation of {who}",
        "",
        f"Backbone `models:/{backbone['name']}/{backbone['version']}` (asked for as `{backbone['uri']}`; "
        f"preset {backbone.get('preset') or '?'}, {backbone['parameters']:,} parameters, context "
        f"{backbone['context_length']} points, trained with {backbone['train_context']}); "
        f"pre-training data: {_pretrain_text(backbone)}.",
        "",
        "n = test windows (series x windows); means over them of MASE (seasonal-naive scale of the history), "
        "scaled CRPS over the quantiles 0.1..0.9 and sMAPE (%); sCRPS pooled = dataset-level "
        "(GIFT-Eval); *rel* = geometric mean over windows of the ratio to seasonal naive. Lower is better; "
        "the best value per block is bold.",
        "",
        "#### Overall",
        "",
        *_md_rows(table[table["by"] == "all"], "dataset"),
    ]
    for by in ("category", "frequency"):
        for dataset in table.loc[table["by"] == by, "dataset"].unique():
            sub = table[(table["by"] == by) & (table["dataset"] == dataset)]
            lines += ["", f"#### {dataset} by {by}", "", *_md_rows(sub, "slice")]
    lines += ["", "#### Test windows and run time", ""]
    for name, info in datasets.items():
        if name in ELECTRICITY:
            h, m = ELECTRICITY[name]
            what = (f"last {params.windows} window(s) of {h} steps per series (rolling origin, season {m}; "
                    f"baselines fitted on the last {params.max_history} points)")
        else:
            what = "official M3 test part (horizon 6/8/18/8, season 1/4/12/1 for yearly/quarterly/monthly/other)"
        if info["series"] < info["series_total"]:
            what += f"; {info['series']} of {info['series_total']} series, evenly spaced (--max-series)"
        secs = ", ".join(f"{k} {v:.1f} s" for k, v in info["seconds"].items())
        lines.append(f"- {name}: {info['windows']} windows; {what}. Time: {secs}.")
    for name, info in datasets.items():
        for o in info.get("pretrain_overlap", []):
            if o["series"]:
                lines.append(f"- **Not fully zero-shot on {name}**: pre-training used the train part of "
                             f"`{o['source']}` (store {o['domain']}, horizon {o['horizon']}), which holds up to "
                             f"{o['max_points']} test point(s) of {o['series']} of the series here "
                             f"({o['points']} points in all).")
            else:
                lines.append(f"- {name}: overlap with pre-training store {o['domain']} ({o['source']}) "
                             f"could not be checked.")
    if any(info["fallbacks"] for info in datasets.values()):
        n = sum(len(info["fallbacks"]) for info in datasets.values())
        lines.append(f"- {n} baseline fit(s) fell back to a simpler model (listed in forecast.json).")
    return "\n".join(lines) + "\n"


def summarize_evaluation(backbone: dict, dataset_dirs: list[str], params: EvaluateParams) -> dict:
    """Per-series metrics of every dataset -> ``zero_shot.csv`` and ``zero_shot.md``."""
    run_dir = Path(backbone["run_dir"])
    tables, infos = [], {}
    for d in map(Path, dataset_dirs):
        per = pd.read_csv(d / "per_series.csv", dtype={"instance": str, "unique_id": str, "category": str},
                          keep_default_na=False, na_values=[""])
        per["category"] = per["category"].fillna("")
        info = json.loads((d / "forecast.json").read_text())
        tables.append(dataset_table(info["dataset"], per))
        infos[info["dataset"]] = info
    table = pd.concat(tables, ignore_index=True)
    table.to_csv(run_dir / "zero_shot.csv", index=False)
    text = markdown_report(table, backbone, infos, params)
    (run_dir / "zero_shot.md").write_text(text)
    run_logger().info("zero-shot tables written to %s", run_dir / "zero_shot.md")
    return {"table_csv": str(run_dir / "zero_shot.csv"), "markdown_file": str(run_dir / "zero_shot.md"),
            "datasets": {k: str(Path(p)) for k, p in zip(infos, dataset_dirs)}}


# ------------------------------------------------------------------------------ log
def tag_label(dataset: str, info: dict) -> str:
    """Tag-name part of a dataset: a subsample says so, so it never passes for the full set."""
    return dataset if info["series"] >= info["series_total"] else f"{dataset}_sample{info['series']}"


def log_evaluation(backbone: dict, summary: dict, params: EvaluateParams, settings: Settings) -> dict:
    """One MLflow run (experiment tsfm-evaluate) + tags on the backbone's model version."""
    from prefect.artifacts import create_markdown_artifact

    table = pd.read_csv(summary["table_csv"], keep_default_na=False, na_values=["", "nan", "NaN"])
    text = Path(summary["markdown_file"]).read_text()
    infos = {name: json.loads((Path(d) / "forecast.json").read_text()) for name, d in summary["datasets"].items()}
    name, version = backbone["name"], backbone["version"]
    run_name = f"zero-shot-{name}-{version}"  # which registered model and version was evaluated
    tracking.use_experiment("evaluate", settings)
    with mlflow.start_run(run_name=run_name) as run:
        mlflow.log_params({**params.model_dump(exclude={"datasets", "baselines"}),
                           "datasets": ",".join(params.datasets), "baselines": ",".join(params.baselines),
                           "backbone_name": name, "backbone_version": version,
                           "context_length_used": backbone["context_length"]})
        overlap = {d: sum(o["series"] or 0 for o in info["pretrain_overlap"]) for d, info in infos.items()}
        mlflow.set_tags({"backbone_version": version, "backbone_model": name, "git_commit": tracking.git_commit(),
                         "backbone_data_version": backbone.get("data_version") or "unknown",
                         **{f"pretrain_overlap_series.{d}": n for d, n in overlap.items() if n}})
        metrics = {}
        for _, r in table.iterrows():
            for m in METRICS:
                if np.isfinite(r[m]):
                    metrics[f"{r['scope']}/{r['model']}/{m}"] = float(r[m])
        for dataset, info in infos.items():
            metrics.update({f"{dataset}/{model}/seconds": float(s) for model, s in info["seconds"].items()})
        mlflow.log_metrics(metrics)
        mlflow.log_artifact(summary["markdown_file"])
        mlflow.log_artifact(summary["table_csv"])
        mlflow.log_artifact(str(Path(backbone["run_dir"]) / "backbone.json"))
        for dataset, d in summary["datasets"].items():
            for f in sorted(Path(d).iterdir()):
                mlflow.log_artifact(str(f), artifact_path=f"datasets/{dataset}")

    client = mlflow.MlflowClient()
    headline = {}
    overall = table[(table["by"] == "all") & (table["model"] == BACKBONE)]
    for _, r in overall.iterrows():
        label = tag_label(r["dataset"], infos[r["dataset"]])
        for m in TAGGED:
            headline[f"zero_shot_{label}_{m.lower()}"] = f"{r[m]:.4f}"
        if overlap.get(r["dataset"]):
            headline[f"zero_shot_{label}_pretrain_overlap_series"] = str(overlap[r["dataset"]])
    headline["zero_shot_run_id"] = run.info.run_id
    for key, value in headline.items():
        client.set_model_version_tag(name, version, key, value)
    try:
        create_markdown_artifact(key="zero-shot-evaluation", markdown=text,
                                 description=f"zero-shot evaluation of {name} v{version}")
    except Exception as exc:  # no Prefect API reachable: the report is in MLflow and on disk anyway
        run_logger().warning("no Prefect artifact: %s", exc)
    results = {f"{r['scope']}/{r['model']}/{m}": float(r[m]) for _, r in table[table["by"] == "all"].iterrows()
               for m in ("MASE", "sCRPS", "sMAPE", "MASE_rel", "sCRPS_rel")}
    return {
        "run_id": run.info.run_id, "backbone": f"models:/{name}/{version}", "backbone_version": version,
        "datasets": list(summary["datasets"]), "markdown_file": summary["markdown_file"],
        "table_csv": summary["table_csv"], "run_dir": backbone["run_dir"], "tags": headline, "results": results,
        "seconds": round(time.time() - backbone["started"], 1),
    }


prepare_task = task(prepare_evaluation, name="prepare-evaluation")
forecast_task = task(forecast_dataset, name="zero-shot-forecast", task_run_name="zero-shot-{dataset}")
summarize_task = task(summarize_evaluation, name="summarize-evaluation")
log_task = task(log_evaluation, name="log-evaluation")
