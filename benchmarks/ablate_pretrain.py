"""Pre-training recipe ablation: each variant trained under the same CPU budget, scored zero-shot
on validation windows only.

Every variant is the base recipe with a few fields changed (``VARIANTS``). Each one:
  1. a 150-step probe measures its steady seconds per step on this machine, and ``max_steps`` is
     set so the run itself trains for ``--budget`` seconds (same seed, same data order where it
     applies);
  2. trains with ``python -m models.pretraining`` on one of the corpora below (train parts only);
  3. forecasts the validation windows, never an official test window:
     - M3: each series' rolling validation windows (``SeriesSplit``: up to 3 origins a horizon
       apart before the official test part, the series' own horizon and season);
     - vic_elec and epf_fr_be: 3 windows of one day before the 7 test windows ``tsfm evaluate``
       scores;
  4. is scored against seasonal naive on the same windows: the geometric mean over windows of
     MASE and scaled CRPS ratios, per M3 frequency, M3 overall, and per electricity set.
Results go to ``OUT/<variant>/scores.json`` (a finished variant is not re-run: the harness
resumes), one MLflow run per variant (experiment ``tsfm-ablation``) and a markdown table.

Corpora (ingested once under ``OUT/data``, train parts cut as onboarding cuts them; synthetic
sets at fixed mixture shares, real sets sharing the rest by their points: ``mixture_weights``):
  - ``rich``: 1,000 KernelSynth series of 512 points, 4,000 structural synthetic series and every
    packaged real series never evaluated (``zero_shot_val.REAL``); no M3, no electricity;
  - ``kernelsynth``: the KernelSynth series alone (what the demo pre-trains on, larger).

    python benchmarks/ablate_pretrain.py --budget 240 --out benchmarks/out/ablation
    python benchmarks/ablate_pretrain.py --variants base,patch16 --budget 60   # a quick look
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from bench_common import REPO, machine, run_trainer, steady_seconds_per_step, trainer_command, warn_if_busy
from zero_shot_val import (
    EVERY_FREQ,
    EVERY_FREQ_SHARE,
    MIN_TRAIN_POINTS,
    REAL,
    corpus,
    eval_windows,
    mixture_weights,
    score,
    score_table,
)

BASE = {
    "preset": "tiny",
    "batch_size": 64,
    "context_length": 256,
    "horizon_length": 32,
    "lr": 3e-3,
    "warmup_steps": 40,
    "seed": 0,
}
# the shipped backbone continued with contexts of 256-2,048 steps at a constant cost per step
LONG = {
    "init": str(REPO / "models" / "backbone" / "shipped"),
    "context_length": 2048,
    "min_context_length": 256,
    "horizon_length": 48,
    "lr": 1e-3,
    "warmup_steps": 100,
}
# name -> (corpus, recipe fields changed from BASE); one lever per variant, then combinations
VARIANTS: dict[str, tuple[str, dict]] = {
    "base": ("rich", {}),  # tiny: patch 8
    "patch16": ("rich", {"patch_size": 16}),
    "patch32": ("rich", {"patch_size": 32}),  # every Toto preset's patch
    "origins4": ("rich", {"mask_origins": 4}),
    "random_ctx": ("rich", {"random_context": True}),
    "scaler_w8": ("rich", {"scaler_window": 8}),
    # the levers that won, together; then more origins; then the same recipe at the 4m shape
    "combo": ("rich", {"patch_size": 16, "mask_origins": 4, "random_context": True}),
    "combo_o8": ("rich", {"patch_size": 16, "mask_origins": 8, "random_context": True}),
    "combo_4m": ("rich", {"preset": "4m", "patch_size": 16, "mask_origins": 4, "random_context": True}),
    # the data lever: KernelSynth alone (what the demo pre-trains on, larger)
    "ks_only": ("kernelsynth", {}),
    "ks_patch16": ("kernelsynth", {"patch_size": 16}),
    # issue 25: the shipped backbone continued on the corpus for every frequency with contexts of
    # 256-2,048 steps at a constant cost per step; the optimizer is the lever
    "freq_adamw": ("every_freq", LONG),
    "freq_muon": ("every_freq", {**LONG, "optimizer": "muon"}),
}
CORPORA = {
    "kernelsynth": {"ks": ("synthetic:kernelsynth?n_series=1000&length=512&seed=1", 32)},
    # KernelSynth, structural synthetic series and every packaged real series never evaluated
    "rich": {
        "ks": ("synthetic:kernelsynth?n_series=1000&length=512&seed=1", 32),
        "st": ("synthetic:structural?n_series=4000&length=1024&seed=2", 16),
        **REAL,
    },
    "every_freq": EVERY_FREQ,
}
SHARES = {"every_freq": EVERY_FREQ_SHARE}


# ----------------------------------------------------------------------------- runs
def recipe(fields: dict, steps: int, data: list[str], run_dir: Path, shares: dict | None = None) -> list[str]:
    from models.pretraining.spec import TrainerJob

    job = TrainerJob(
        **{
            **BASE,
            **fields,
            "max_steps": steps,
            "data": data,
            "data_weights": mixture_weights(data, shares),
            "out": str(run_dir),
            "data_cache": str(run_dir.parent.parent / "cache"),
            "resume": True,
            "checkpoint_every": max(steps // 4, 1),
        }
    )
    return trainer_command(job)


def train(cmd: list[str], log: Path) -> dict:
    run_trainer(cmd, log)
    return json.loads((Path(cmd[cmd.index("--out") + 1]) / "metrics.json").read_text())


PROBE_STEPS = 150


def run_variant(name: str, out: Path, budget: float, groups: dict) -> dict:
    corpus_name, fields = VARIANTS[name]
    folder = out / "runs" / name
    result_file = folder / "scores.json"
    if result_file.is_file():
        return json.loads(result_file.read_text())
    folder.mkdir(parents=True, exist_ok=True)
    horizon = {**BASE, **fields}["horizon_length"]  # a training window needs more points than its masked future
    data = corpus(corpus_name, CORPORA[corpus_name], out, min_points=max(MIN_TRAIN_POINTS, horizon))
    shares = SHARES.get(corpus_name)
    train(recipe(fields, PROBE_STEPS, data, folder / "probe", shares), folder / "probe.log")
    per_step = steady_seconds_per_step(folder / "probe.log")
    steps = max(50, int(budget / per_step))
    print(f"{name}: {per_step * 1000:.0f} ms/step -> {steps} steps for {budget:.0f} s", flush=True)
    started = time.time()
    metrics = train(recipe(fields, steps, data, folder / "run", shares), folder / "train.log")
    scores = score(folder / "run" / "backbone", groups, {**BASE, **fields}["context_length"])
    result = {
        "variant": name,
        "corpus": corpus_name,
        "fields": fields,
        "steps": steps,
        "tokens_seen": metrics["tokens_seen"],
        "train_seconds": metrics["wall_seconds"],
        "wall_seconds": round(time.time() - started, 1),
        "val_loss": metrics["val_loss"],
        **scores,
    }
    result_file.write_text(json.dumps(result, indent=2))
    return result


def log_mlflow(results: list[dict], out: Path, tracking_uri: str | None) -> None:
    import mlflow

    mlflow.set_tracking_uri(tracking_uri or f"sqlite:///{out / 'mlflow.db'}")
    mlflow.set_experiment("tsfm-ablation")
    for r in results:
        with mlflow.start_run(run_name=r["variant"]):
            mlflow.log_params(
                {
                    "variant": r["variant"],
                    "corpus": r["corpus"],
                    "steps": r["steps"],
                    **{f"recipe.{k}": v for k, v in {**BASE, **r["fields"]}.items()},
                }
            )
            mlflow.log_metrics(
                {
                    k.replace("/", "."): float(v)
                    for k, v in r.items()
                    if isinstance(v, (int, float)) and not isinstance(v, bool) and k != "steps"
                }
            )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "out" / "ablation"))
    ap.add_argument("--budget", type=float, default=240.0, help="training seconds per variant")
    ap.add_argument("--variants", default=",".join(VARIANTS), help=f"comma separated: {', '.join(VARIANTS)}")
    ap.add_argument("--tracking-uri", default=None, help="MLflow tracking URI (default: sqlite under --out)")
    args = ap.parse_args()
    names = [v for v in args.variants.split(",") if v]
    unknown = sorted(set(names) - set(VARIANTS))
    if unknown:
        ap.error(f"unknown variant(s) {unknown}; known: {', '.join(VARIANTS)}")
    warn_if_busy()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    print(f"machine: {machine()}", flush=True)
    groups = eval_windows(out)
    results = [run_variant(n, out, args.budget, groups) for n in names]
    log_mlflow(results, out, args.tracking_uri)
    text = score_table(results)
    (out / "table.md").write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
