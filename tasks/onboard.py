"""Onboarding a domain as three units of work that hand over a result folder:

adapt (teacher + adapter + fusion weight, backbone frozen) -> evaluate (test
table against baselines) -> register (MLflow run + teacher/adapter/fused models).
"""
from __future__ import annotations

import hashlib
import inspect
import json
import os
import shutil
import time
import warnings
from collections import Counter, defaultdict
from functools import lru_cache
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
from prefect import task

from infra.settings import OnboardParams, Settings
from models.splits import split_frame, to_arrays
from tasks import tracking
from tasks.datasets import log_store_input
from tasks.logs import run_logger
from tasks.baselines import grouped_baseline_forecasts
from tasks.ingest import META_FILE, read_series_meta, read_store, split_horizon
from tasks.metrics import evaluate, format_table, markdown_table, mase_scale, per_series_metrics
from tasks.model_logging import log_forecaster
from tasks.plots import fan_chart, per_horizon_plot

MODEL_NAMES = ("backbone", "teacher", "finetuned", "fused")  # those present in forecasts.npz are scored
BASELINE_JOBS = max(1, min(4, os.cpu_count() or 1))


def series_profile(store_dir: str | Path, params: OnboardParams, ids) -> tuple[dict[str, int] | None, dict]:
    """(per-series horizons or None, per-series season lengths) of a store holding series ``ids``. The
    source's own values (M3) win over params.horizon / params.season_length, which apply otherwise."""
    per_series = read_series_meta(store_dir) if params.series_horizons else None
    if per_series is None:
        return None, defaultdict(lambda: params.season_length, {u: params.season_length for u in ids})
    return (dict(zip(per_series["unique_id"], per_series["horizon"].astype(int))),
            dict(zip(per_series["unique_id"], per_series["season_length"].astype(int))))


# -------------------------------------------------------------------------- caching
# adapt and evaluate are cached across runs: the result folder is a function of the cache key
# (params, data md5, resolved backbone version and registry, task code, state dir), so a re-run
# after a crash resumes after the last finished stage. Cache records: <state_dir>/prefect-results.
ADAPT_FILES = ("forecasts.npz", "summary.json")  # summary.json is written last
EVALUATE_FILES = ("val_metrics.csv", "test_metrics.csv", "baseline_notes.json")  # notes last


def results_storage(settings: Settings) -> Path:
    """Where the onboarding tasks persist their results (Prefect cache records)."""
    return (settings.paths.state_dir / "prefect-results").resolve()


def _digest(*parts) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


@lru_cache(maxsize=None)
def _code_version(fn_name: str) -> str:
    """The task function's source plus models/*.py: changed code is a new result, not a stale one."""
    digest = hashlib.sha256(inspect.getsource(globals()[fn_name]).encode())
    for path in sorted((Path(__file__).resolve().parent.parent / "models").glob("*.py")):
        digest.update(path.name.encode() + path.read_bytes())
    return digest.hexdigest()


def _params_key(params: OnboardParams) -> dict:
    return params.model_dump(mode="json", exclude={"source"})  # the data md5 stands for the source


def store_md5(store_dir: str | Path) -> str:
    return json.loads((Path(store_dir) / META_FILE).read_text())["md5"]


def adapt_dir(params: OnboardParams, store_dir: str | Path, backbone_uri: str, settings: Settings) -> Path:
    """The result folder of adapting ``params`` on this store's data with the backbone version
    ``backbone_uri`` resolves to now (an alias that moved means a new folder)."""
    tracking.configure(settings)
    key = _digest(_params_key(params), store_md5(store_dir), backbone_version(backbone_uri), settings.tracking_uri,
                  _code_version("adapt_domain"), str(settings.paths.state_dir.resolve()))
    return settings.run_dir("onboard", params.domain, key)


def complete(folder: Path, files: tuple[str, ...]) -> bool:
    return all((folder / f).is_file() for f in files)


def result_id(result_dir: str | Path) -> str:
    """Stable id of a finished result folder: its name (the adapt key) and its summary."""
    out = Path(result_dir)
    return _digest(out.name, hashlib.md5((out / "summary.json").read_bytes()).hexdigest())


def _guarded_key(key: str, folder: Path, files: tuple[str, ...], settings: Settings) -> str:
    """A cache record whose result folder is gone or incomplete (a wiped state dir, another
    session) is dropped, so the task recomputes instead of returning a dangling path."""
    if not complete(folder, files):
        (results_storage(settings) / key).unlink(missing_ok=True)
    return key


def _adapt_cache_key(_ctx, inputs: dict) -> str:
    folder = adapt_dir(inputs["params"], inputs["store_dir"], inputs["backbone_uri"], inputs["settings"])
    return _guarded_key(f"onboard-adapt-{folder.name}", folder, ADAPT_FILES, inputs["settings"])


def _evaluate_key(result_dir: str | Path, store_dir: str | Path, params: OnboardParams) -> str:
    return _digest(str(Path(result_dir).resolve()), result_id(result_dir), store_md5(store_dir),
                   _params_key(params), _code_version("evaluate_domain"))


def _evaluate_cache_key(_ctx, inputs: dict) -> str:
    from infra.settings import load_settings

    key = _evaluate_key(inputs["result_dir"], inputs["store_dir"], inputs["params"])
    return _guarded_key(f"onboard-evaluate-{key}", Path(inputs["result_dir"]), EVALUATE_FILES,
                        inputs.get("settings") or load_settings())


# ---------------------------------------------------------------------------- adapt
def backbone_version(backbone_uri: str) -> str:
    """The version a backbone URI (``models:/backbone@alias`` or ``.../<version>``) points at now."""
    if "@" in backbone_uri:
        name, alias = backbone_uri.removeprefix("models:/").split("@")
        return str(mlflow.MlflowClient().get_model_version_by_alias(name, alias).version)
    return backbone_uri.rstrip("/").rsplit("/", 1)[-1]


def resolve_backbone(backbone_uri: str) -> tuple[str, Path]:
    """Registered backbone URI -> (version, local folder holding backbone/config.json)."""
    version = backbone_version(backbone_uri)
    local = Path(mlflow.artifacts.download_artifacts(f"models:/backbone/{version}"))
    configs = sorted(local.rglob("backbone/config.json"))
    if not configs:
        raise FileNotFoundError(f"no backbone weights inside {backbone_uri}")
    return version, configs[0].parent


def adapt_domain(params: OnboardParams, store_dir: str, backbone_uri: str, settings: Settings) -> str:
    """Fit the domain's teacher, adapter and fusion weight; returns the result folder."""
    from models.backbone import load_backbone, save_backbone
    from models.fused import FusedForecaster
    from models.onboarding import onboard

    tracking.configure(settings)
    pinned = f"models:/backbone/{backbone_version(backbone_uri)}"  # one version for the key and the fit
    out = adapt_dir(params, store_dir, pinned, settings)
    if complete(out, ADAPT_FILES):  # an earlier run (or a crashed one) finished this very result
        run_logger().info("adapt %s: result already complete in %s", params.domain, out)
        return str(out)
    shutil.rmtree(out, ignore_errors=True)  # a partial folder of a killed attempt
    df, meta = read_store(Path(store_dir))
    horizons, seasons = series_profile(store_dir, params, df["unique_id"].astype(str).unique())
    if horizons is None and params.horizon > int(meta["horizon"]):
        raise ValueError(
            f"horizon {params.horizon} exceeds the {meta['horizon']} the store of {params.domain!r} was "
            f"validated for; re-ingest with --horizon {params.horizon}")
    version, backbone_dir = resolve_backbone(pinned)
    backbone = load_backbone(backbone_dir)
    started = time.perf_counter()
    if horizons is not None:
        run_logger().info("%s: per-series horizons from the source (%s), models forecast %d steps",
                          params.domain, ", ".join(f"{h}: {n} series" for h, n in
                                                   sorted(Counter(horizons.values()).items())),
                          max(horizons.values()))
    result = onboard(backbone, df, params, horizons=horizons)
    out.mkdir(parents=True, exist_ok=True)

    result.fused.save(out / "fused")
    result.teacher_forecaster.save(out / "teacher")
    if result.finetuned is not None:  # scored for comparison (and forgetting), never registered
        save_backbone(result.finetuned, out / "finetuned" / "backbone")
    FusedForecaster(backbone, result.adapter, 1.0, params.context_length, result.horizon).save(out / "adapter")
    arrays = {"val_y": result.val_truth, "test_y": result.test_truth, "horizons": result.horizons,
              "seasons": np.array([seasons[u] for u in result.series_ids], dtype=np.int64)}
    for name in result.forecasts_val:
        arrays[f"val_{name}"] = result.forecasts_val[name]
        arrays[f"test_{name}"] = result.forecasts_test[name]
    np.savez_compressed(out / "forecasts.npz", **arrays)
    pd.DataFrame(result.alpha_table).to_csv(out / "alpha_table.csv", index=False)
    summary = {
        "domain": params.domain, "alpha": float(result.alpha), "series": list(map(str, result.series_ids)),
        "skipped_series": list(map(str, result.skipped_ids)),
        "n_windows": int(result.n_windows), "history": result.history, "timings": result.timings,
        "backbone_uri": backbone_uri, "backbone_version": version, "data_version": meta["md5"],
        "freq": meta.get("freq"), "store": str(store_dir), "seconds": time.perf_counter() - started,
        "horizon": result.horizon, "per_series_horizons": horizons is not None,
        "teacher_confidence": result.teacher_confidence, "finetune_history": result.finetune_history,
        "adapter_parameters": result.adapter.n_parameters(),
        "backbone_parameters": sum(p.numel() for p in backbone.parameters()),
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=float))
    run_logger().info("adapted %s: alpha=%.2f from %d windows in %.1fs", params.domain, result.alpha,
             result.n_windows, summary["seconds"])
    return str(out)


# ------------------------------------------------------------------------- evaluate
def evaluate_domain(result_dir: str, store_dir: str, params: OnboardParams, settings: Settings | None = None) -> str:
    """Validation and test tables: baselines (statsforecast) vs backbone, teacher, fused.
    (``settings``: where the cached task keeps its result; the tables do not depend on it.)"""
    out = Path(result_dir)
    summary = json.loads((out / "summary.json").read_text())
    df, meta = read_store(Path(store_dir))
    # the same split the adapt step used: the source's per-series horizons, or params.horizon
    split = split_frame(df, split_horizon(Path(store_dir), meta) if summary.get("per_series_horizons")
                        else params.horizon)
    train = to_arrays(split.train)
    trainval = to_arrays(pd.concat([split.train, split.val]))
    ids = summary["series"]
    if not set(ids) <= set(train):
        raise RuntimeError("series in the result folder are missing from the store")
    arrays = dict(np.load(out / "forecasts.npz"))
    horizons, seasons, horizon = arrays["horizons"], arrays["seasons"], int(summary["horizon"])
    notes = {}
    for part, histories in (("val", [train[i] for i in ids]), ("test", [trainval[i] for i in ids])):
        forecasts, part_notes, seconds = grouped_baseline_forecasts(histories, horizons, seasons, horizon,
                                                                    n_jobs=BASELINE_JOBS)
        notes[part] = part_notes
        names = [m for m in MODEL_NAMES if f"{part}_{m}" in arrays]
        forecasts.update({m: arrays[f"{part}_{m}"] for m in names})
        # MASE scale from the train part (DESIGN.md), for both validation and test
        insample = [train[i] for i in ids]
        table = evaluate(forecasts, arrays[f"{part}_y"], insample, seasons)
        per_series = pd.concat([
            pd.DataFrame({"unique_id": ids, "model": m, "horizon": horizons, "season": seasons,
                          **per_series_metrics(q, arrays[f"{part}_y"], insample, seasons)})
            for m, q in forecasts.items()])
        per_series.to_csv(out / f"{part}_per_series.csv", index=False)  # pooled across domains (M3 overall)
        latency = {**seconds, **{m: summary["timings"].get(f"latency_{part}_{m}", np.nan) for m in names}}
        # forecast latency: wall milliseconds per series (batched models in batches of params.batch_size)
        table["ms_per_series"] = [1000.0 * latency.get(m, np.nan) / max(len(ids), 1) for m in table.index]
        table.to_csv(out / f"{part}_metrics.csv")
        (out / f"{part}_metrics.txt").write_text(format_table(table) + "\n")
        fan_chart(histories, arrays[f"{part}_y"], arrays[f"{part}_fused"], ids,
                  out / f"{part}_fan_chart.png", f"{params.domain}: fused forecast on {part}")
        # where in the horizon each model gains or loses: mean scaled absolute error per step
        scale = mase_scale(insample, seasons)[:, None]
        with np.errstate(invalid="ignore", divide="ignore"), warnings.catch_warnings(action="ignore"):
            per_step = {m: np.nanmean(np.abs(arrays[f"{part}_y"] - q[..., q.shape[-1] // 2]) / scale, axis=0)
                        for m, q in forecasts.items()}
        per_horizon_plot(per_step, out / f"{part}_per_horizon.png", f"{params.domain}: error by step ({part})")
    (out / "baseline_notes.json").write_text(json.dumps(notes, indent=2, default=str))
    return result_dir


# ------------------------------------------------------------------------- register
def register_domain(result_dir: str, params: OnboardParams, settings: Settings) -> dict:
    """Log the onboarding run and register teacher-, adapter- and fused-<domain>. Idempotent: run
    again on the same result folder (a retry, a resumed run) it reuses the run and the versions."""
    out = Path(result_dir)
    summary = json.loads((out / "summary.json").read_text())
    val = pd.read_csv(out / "val_metrics.csv", index_col=0)
    test = pd.read_csv(out / "test_metrics.csv", index_col=0)
    domain = params.domain
    experiment_id = tracking.use_experiment("onboard", settings)
    # idempotent: the run and the versions of this result folder are found by its id and reused
    rid = result_id(out)
    reuse = tracking.find_run(experiment_id, rid)
    with mlflow.start_run(run_id=reuse,
                          run_name=f"onboard-{domain}-bb{summary['backbone_version']}") as run:
        mlflow.set_tag(tracking.RESULT_ID_TAG, rid)
        if run.data.tags.get(LOGGED_TAG) != "true":  # a retried/resumed run logs only what is missing
            _log_onboarding_run(out, summary, params, val, test)
            mlflow.set_tag(LOGGED_TAG, "true")

        tags = {"data_version": summary["data_version"], "git_commit": tracking.git_commit(),
                "backbone_version": summary["backbone_version"], "domain": domain, "run_id": run.info.run_id,
                "alpha": summary["alpha"]}
        for k in ("sCRPS", "MASE", "sMAPE"):
            tags[f"val_{k}"] = val.loc["fused", k]
            tags[f"backbone_val_{k}"] = val.loc["backbone", k]
        description = (f"Validation (fusion weight alpha={summary['alpha']:.2f} chosen here):\n\n"
                       + markdown_table(val.rename_axis("model")) + "\n\nTest:\n\n"
                       + markdown_table(test.rename_axis("model")))
        horizon = int(summary.get("horizon", params.horizon))
        meta = {"domain": domain, "freq": summary.get("freq"), "default_horizon": horizon,
                "max_horizon": horizon, "context_length": params.context_length}
        versions = {}
        for kind in ("teacher", "adapter", "fused"):
            # the model is logged only when no version of this result exists yet
            def log_model(kind=kind) -> str:
                return log_forecaster(kind, out / kind, {**meta, "kind": kind}, name=kind)
            versions[kind] = tracking.register(log_model, f"{kind}-{domain}", tags, description, result_id=rid)
        tracking.set_alias(f"fused-{domain}", "challenger", versions["fused"])
    return {"run_id": run.info.run_id, "fused_version": versions["fused"],
            "teacher_version": versions["teacher"], "adapter_version": versions["adapter"],
            "alpha": summary["alpha"], "result_dir": result_dir,
            "val_table": str(out / "val_metrics.txt"), "test_table": str(out / "test_metrics.txt")}


def _log_onboarding_run(out: Path, summary: dict, params: OnboardParams, val: pd.DataFrame,
                        test: pd.DataFrame) -> None:
    """Params, tags, the store as input, metrics and the report files, into the active run."""
    mlflow.log_params({**params.model_dump(exclude={"alpha_grid"}), "alpha_grid": str(params.alpha_grid)})
    mlflow.log_params({"backbone_uri": summary["backbone_uri"], "backbone_version": summary["backbone_version"],
                       "n_windows": summary["n_windows"], "alpha": summary["alpha"]})
    mlflow.set_tags({"domain": params.domain, "data_version": summary["data_version"],
                     "git_commit": tracking.git_commit(), "backbone_version": summary["backbone_version"]})
    log_store_input(summary["store"], context="domain")  # digest = DVC's md5 of the store
    for part, table in (("val", val), ("test", test)):
        for model, row in table.iterrows():
            mlflow.log_metrics({f"{part}_{model}_{k}": float(v) for k, v in row.items() if np.isfinite(v)})
    for i, rec in enumerate(summary["history"]):
        mlflow.log_metrics({f"adapter_{k}": float(v) for k, v in rec.items()
                            if isinstance(v, (int, float)) and k != "epoch"}, step=i)
    for f in sorted(out.glob("*.csv")) + sorted(out.glob("*.png")) + sorted(out.glob("*.txt")) + [out / "summary.json"]:
        mlflow.log_artifact(str(f), artifact_path="report")


LOGGED_TAG = "tsfm_logged"  # set once the run holds its params, metrics and report

adapt_task = task(adapt_domain, name="adapt", cache_key_fn=_adapt_cache_key, persist_result=True)
evaluate_task = task(evaluate_domain, name="evaluate", cache_key_fn=_evaluate_cache_key, persist_result=True)
register_task = task(register_domain, name="register", **tracking.remote_retries())
