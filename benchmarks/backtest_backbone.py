"""Does offering the long-context backbone help what is served? A backtest over earlier cutoffs.

One onboarding's test is the last horizon of each series: for an hourly or half-hourly domain of a few
series that is one day, too little to tell two close variants apart. This script cuts ``k`` horizons
off the end of every series (k = each of ``--cutoffs``), onboards each cut with defaults twice, with
and without the long-context backbone on offer (``--set long_context_backbone=true`` / ``false``), through the
same `tsfm onboard` users run, and compares what each serves on its own test window.

    python benchmarks/backtest_backbone.py --source hourly.csv --domain hourly --horizon 24 \
        --season-length 24 --cutoffs 1,2 --out-dir /tmp/backtest
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
from bench_common import REPO, fmt, markdown_table, warn_if_busy, write_json

# domain suffix -> (the table's name for it, the setting)
VARIANTS = {"on": ("offered", "true"), "off": ("default only", "false")}


def cut(source: Path, horizon: int, k: int, out: Path) -> Path:
    """The source without the last ``k`` horizons of every series."""
    frame = pd.read_csv(source)
    from_end = frame.groupby("unique_id", sort=False).cumcount(ascending=False)  # 0 on each series' last row
    kept = frame[from_end >= k * horizon]
    out.parent.mkdir(parents=True, exist_ok=True)
    kept.to_csv(out, index=False)
    return out


def onboard(domain: str, source: Path, args: argparse.Namespace, extra: list[str], out_dir: Path) -> dict:
    out = out_dir / f"{domain}.json"
    cmd = [
        str(Path(sys.executable).parent / "tsfm"),
        "onboard",
        "--domain",
        domain,
        "--source",
        str(source),
        "--horizon",
        str(args.horizon),
        "--season-length",
        str(args.season_length),
        "--finetune-steps",
        "0",
        *extra,
        "--out",
        str(out),
    ]
    print("$", " ".join(cmd), flush=True)
    started = time.perf_counter()
    with open(out_dir / f"{domain}.log", "w") as log:
        code = subprocess.run(cmd, cwd=REPO, stdout=log, stderr=subprocess.STDOUT).returncode
    if code != 0:
        raise SystemExit(f"error: `tsfm onboard` of {domain} exited {code}; see {out_dir / f'{domain}.log'}")
    result = json.loads(out.read_text())
    result["wall_s"] = time.perf_counter() - started
    return result


def served_row(result: dict) -> dict:
    """What the onboarding offered as challenger, with its validation and test scores."""
    family = result["challenger"]["family"]
    folder = Path(result["result_dir"])
    val = pd.read_csv(folder / "val_metrics.csv", index_col=0)
    test = pd.read_csv(folder / "test_metrics.csv", index_col=0)
    return {
        "served": family,
        "backbone": f"v{result['backbone']['version']}",
        "val_sCRPS": float(val.loc[family, "sCRPS"]),
        "test_MASE": float(test.loc[family, "MASE"]),
        "test_sCRPS": float(test.loc[family, "sCRPS"]),
        "wall_s": result["wall_s"],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--source", required=True, help="a unique_id,ds,y CSV")
    ap.add_argument("--domain", required=True, help="prefix of the domains onboarded")
    ap.add_argument("--horizon", type=int, required=True)
    ap.add_argument("--season-length", type=int, required=True)
    ap.add_argument("--cutoffs", default="0,1,2", help="horizons cut off the end, comma-separated")
    ap.add_argument("--out-dir", default=".tsfm/bench/backtest_backbone")
    args = ap.parse_args()
    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    warn_if_busy()
    rows = []
    for k in (int(c) for c in args.cutoffs.split(",")):
        source = cut(Path(args.source), args.horizon, k, out_dir / "data" / f"{args.domain}-c{k}.csv")
        for suffix, (variant, on) in VARIANTS.items():
            extra = ["--set", f"long_context_backbone={on}"]
            result = onboard(f"{args.domain}-c{k}-{suffix}", source, args, extra, out_dir)
            rows.append({"cutoff": k, "variant": variant, **served_row(result)})
    ratios = {
        metric: math.exp(
            sum(
                math.log(on[metric] / off[metric])
                for on, off in zip(rows[::2], rows[1::2])
                if on[metric] > 0 and off[metric] > 0
            )
            / max(len(rows) // 2, 1)
        )
        for metric in ("val_sCRPS", "test_MASE", "test_sCRPS")
    }
    columns = [
        ("cutoff", "horizons cut", ""),
        ("variant", "long-context backbone", ""),
        ("backbone", "backbone used", ""),
        ("served", "served", ""),
        ("val_sCRPS", "val sCRPS", ".4f"),
        ("test_MASE", "test MASE", ".3f"),
        ("test_sCRPS", "test sCRPS", ".4f"),
        ("wall_s", "wall s", ".0f"),
    ]
    print(markdown_table(rows, columns))
    print(
        "\noffered / default only, geometric mean over cutoffs: "
        + ", ".join(f"{m} {fmt(v, '.3f')}" for m, v in ratios.items())
    )
    write_json(str(out_dir / "backtest.json"), {"rows": rows, "ratios": ratios})


if __name__ == "__main__":
    main()
