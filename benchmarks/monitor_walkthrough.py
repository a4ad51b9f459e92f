"""The README's monitoring walk-through, run for real with the CLI a user types: a served domain, a week of
new actuals arriving day by day, the monitor's verdict each morning, then a day whose actuals jump and the
re-onboarding the degraded verdict asks for.

Domain ``pedestrian``: the hourly counts of 4 Melbourne pedestrian sensors (``builtin:pedestrian``), the last
8 weeks before 2016-12-01 as history. Each morning, as the deployments would (ingest 02:00, monitor on the
ingest's event, forecast 06:00): yesterday's file lands in the source folder, ``tsfm ingest``, ``tsfm monitor``,
``tsfm forecast --origin <today>`` (24 hours). After the week, day 8's counts arrive multiplied by ``--jump``
(an event in town): the monitor finds the domain degraded and emits ``tsfm.domain.degraded``; with `tsfm deploy`
running, that event starts ``onboard-pedestrian``; here the same onboarding is run by hand.

Usage: python benchmarks/monitor_walkthrough.py [--work /tmp/tsfm-walkthrough] [--out transcript.md]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
DOMAIN = "pedestrian"
CUT = pd.Timestamp("2016-12-01")
LOG_LINE = re.compile(r"^\d\d:\d\d:\d\d\.\d+ \| |^See https://docs.prefect.io")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", default="/tmp/tsfm-walkthrough")
    ap.add_argument("--days", type=int, default=7)
    ap.add_argument("--jump", type=float, default=2.5)
    ap.add_argument("--out", default=None, help="write the transcript (markdown) here")
    args = ap.parse_args()
    work = Path(args.work)
    shutil.rmtree(work, ignore_errors=True)
    src = work / "incoming" / DOMAIN
    src.mkdir(parents=True)
    env = {
        **os.environ,
        "TSFM_PATHS__DATA_DIR": str(work / "data"),
        "TSFM_PATHS__STATE_DIR": str(work / ".tsfm"),
        "TSFM_PARAMS": str(work / "params.yaml"),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    env.pop("TSFM_MLFLOW__TRACKING_URI", None)
    transcript: list[str] = []

    def tsfm(*argv: str) -> str:
        t0 = time.perf_counter()
        done = subprocess.run(["tsfm", *argv], cwd=work, env=env, capture_output=True, text=True)
        said = [line for line in done.stderr.splitlines() if line.strip() and not LOG_LINE.match(line)]
        shown = " ".join(a if " " not in a else f"'{a}'" for a in argv)
        transcript.append(f"$ tsfm {shown}   # {time.perf_counter() - t0:.0f} s\n" + "\n".join(said))
        print(transcript[-1], flush=True)
        if done.returncode != 0:
            raise SystemExit(f"tsfm {shown} failed ({done.returncode}):\n{done.stderr[-3000:]}")
        return done.stdout

    from store.sources import read_source

    frame = read_source(f"builtin:{DOMAIN}").frame
    frame = frame[frame["ds"] >= CUT - pd.Timedelta(weeks=8)]
    frame[frame["ds"] < CUT].to_csv(src / "history.csv", index=False)
    transcript.append(f"# {DOMAIN}: {frame['unique_id'].nunique()} series, hourly, history up to {CUT}")
    tsfm("onboard", "--domain", DOMAIN, "--source", str(src), "--horizon", "24")
    for day in range(args.days + 2):
        today = CUT + pd.Timedelta(days=day)
        if day > 0:  # yesterday's actuals land in the source folder (the last day's with a jump)
            yesterday = frame[(frame["ds"] >= today - pd.Timedelta(days=1)) & (frame["ds"] < today)].copy()
            if day == args.days + 1:
                yesterday["y"] *= args.jump
                transcript.append(f"# {yesterday['ds'].min():%Y-%m-%d}: every sensor counts x{args.jump:g}")
            yesterday.to_csv(src / f"{today - pd.Timedelta(days=1):%Y-%m-%d}.csv", index=False)
            tsfm("ingest", "--domain", DOMAIN, "--source", str(src), "--horizon", "24")
            tsfm("monitor", "--domain", DOMAIN)
        if day <= args.days:
            tsfm("forecast", "--domain", DOMAIN, "--origin", f"{today:%Y-%m-%d}", "--executor", "inline")
    # what the degraded event's trigger runs: re-onboarding on the new data, through the gate
    tsfm("onboard", "--domain", DOMAIN, "--source", str(src), "--horizon", "24")

    from evaluation import realized

    ledger = pd.read_parquet(work / ".tsfm" / "monitor" / DOMAIN / "scored.parquet")
    by_origin = realized.summary(ledger, by=["origin", "model_version", "family"])
    table = by_origin[
        ["origin", "model_version", "family", "points", "MASE", "naive_MASE", "sCRPS", "sMAPE", "coverage"]
    ]
    md = "\n".join(
        ["| " + " | ".join(table.columns) + " |", "|" + "---|" * len(table.columns)]
        + [
            "| " + " | ".join(f"{v:.3f}" if isinstance(v, float) else str(v) for v in r) + " |"
            for r in table.itertuples(index=False)
        ]
    )
    text = "```\n" + "\n\n".join(transcript) + "\n```\n\nRealized accuracy by forecast origin (the ledger):\n\n" + md
    print(md)
    if args.out:
        Path(args.out).write_text(text + "\n")
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
