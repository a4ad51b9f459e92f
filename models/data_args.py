"""Command-line arguments of the pre-training data pipeline (light: no Lightning import),
shared by ``python -m models.pretrain`` and ``PretrainDataModule.from_args``."""
from __future__ import annotations

import argparse
from pathlib import Path


def add_data_arguments(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--data", action="append", required=True,
                    help="long-format Parquet, one file per source (repeatable)")
    ap.add_argument("--data-weights", default=None,
                    help="mixture weight per --data file, comma separated in the same order "
                         "(default: in proportion to each file's number of windows)")
    ap.add_argument("--tsmixup-prob", type=float, default=0.0,
                    help="probability that a training window is a TSMixup of several sources' windows")
    ap.add_argument("--tsmixup-max-series", type=int, default=3, help="at most this many windows mixed")
    ap.add_argument("--kernelsynth-prob", type=float, default=0.0,
                    help="probability that a training window is a fresh KernelSynth series")
    ap.add_argument("--num-workers", type=int, default=0)
    ap.add_argument("--samples-per-epoch", type=int, default=1 << 16,
                    help="training items per (virtual) epoch, split between sources by --data-weights")
    ap.add_argument("--data-cache", default=None,
                    help="folder for the memory-mapped caches of --data (default: .tsfm-cache next to each file)")


def parse_weights(text: str | None, n: int) -> list[float] | None:
    """'0.7,0.3' -> [0.7, 0.3] normalised; None -> None (each source by its number of windows).
    Raises ValueError."""
    if text is None:
        return None
    weights = [float(t) for t in text.split(",") if t.strip()]
    if len(weights) != n:
        raise ValueError(f"--data-weights has {len(weights)} values for {n} --data files")
    if any(w < 0 for w in weights) or sum(weights) <= 0:
        raise ValueError("--data-weights must be >= 0 with a positive sum")
    total = sum(weights)
    return [w / total for w in weights]


def check_data_args(args: argparse.Namespace) -> str | None:
    """A message for the first bad data argument, else None."""
    for path in args.data:
        if not Path(path).is_file():
            return f"data file not found: {path}"
    try:
        parse_weights(args.data_weights, len(args.data))
    except ValueError as exc:
        return str(exc)
    for name in ("tsmixup_prob", "kernelsynth_prob"):
        if not 0.0 <= getattr(args, name) <= 1.0:
            return f"--{name.replace('_', '-')} must be in [0, 1]"
    if args.tsmixup_prob + args.kernelsynth_prob > 1.0:
        return "--tsmixup-prob + --kernelsynth-prob must be <= 1"
    if args.tsmixup_max_series < 2:
        return "--tsmixup-max-series must be >= 2"
    if args.num_workers < 0:
        return "--num-workers must be >= 0"
    if getattr(args, "samples_per_epoch", 1) < 1:
        return "--samples-per-epoch must be >= 1"
    return None
