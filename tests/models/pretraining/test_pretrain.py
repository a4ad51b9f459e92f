"""The pre-training entry point, run as its own process like the Prefect task runs it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.corpus import seasonal_corpus

ROOT = Path(__file__).resolve().parents[3]
# one thread per process: the test machines have 2 cores, DDP runs 2 processes
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
METRIC_KEYS = {"preset", "n_params", "steps", "tokens_seen", "final_train_loss", "val_loss", "wall_seconds", "devices"}


def pretrain(*args: str, timeout: int = 240) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "models.pretraining", *args],
        cwd=ROOT,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    """24 seasonal series of 40..300 points (some shorter than a window), a few gaps."""
    return seasonal_corpus(
        tmp_path_factory.mktemp("corpus") / "train.parquet", 24, (40, 300), gap_rate=0.02, shuffle=True
    )  # unsorted on purpose


COMMON = ["--preset", "tiny", "--context-length", "64", "--horizon-length", "16", "--accelerator", "cpu"]


def test_tiny_run_learns_and_writes_outputs(corpus, tmp_path):
    out = tmp_path / "run"
    res = pretrain(
        "--data",
        str(corpus),
        "--out",
        str(out),
        *COMMON,
        "--devices",
        "1",
        "--max-steps",
        "60",
        "--batch-size",
        "16",
        "--warmup-steps",
        "5",
        "--lr",
        "3e-3",
    )
    assert res.returncode == 0, res.stderr[-3000:]
    metrics = json.loads((out / "metrics.json").read_text())
    assert METRIC_KEYS <= set(metrics)
    assert metrics["preset"] == "tiny" and metrics["steps"] == 60 and metrics["devices"] == 1
    # 16 windows of (64 + 16) / 8 = 10 patches per step
    assert metrics["tokens_seen"] == 60 * 16 * 10
    assert metrics["final_train_loss"] < 0.85 * metrics["initial_train_loss"], metrics
    assert np.isfinite(metrics["val_loss"])
    assert (out / "backbone" / "config.json").is_file() and (out / "backbone" / "weights.pt").is_file()
    assert (out / "checkpoints" / "last.ckpt").is_file()
    progress = [line for line in res.stdout.splitlines() if line.startswith("step ")]
    assert 9 <= len(progress) <= 11 and progress[-1].startswith("step 60/60")

    # the saved backbone forecasts (import here: torch only, cheap)
    from models.backbone.io import load_backbone

    fc = load_backbone(out / "backbone").forecast(__import__("torch").ones(2, 50), 16)
    assert fc.quantiles.shape == (2, 16, 9)


def test_ddp_two_cpu_processes(corpus, tmp_path):
    out = tmp_path / "ddp"
    res = pretrain(
        "--data",
        str(corpus),
        "--out",
        str(out),
        *COMMON,
        "--devices",
        "2",
        "--strategy",
        "ddp",
        "--max-steps",
        "10",
        "--batch-size",
        "8",
        "--warmup-steps",
        "2",
    )
    assert res.returncode == 0, res.stderr[-3000:]
    # rank zero alone writes: one summary line, one set of outputs
    assert res.stdout.count("done: ") == 1
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["devices"] == 2 and metrics["steps"] == 10
    assert metrics["tokens_seen"] == 10 * 8 * 2 * 10  # both ranks' windows
    assert sorted(p.name for p in (out / "backbone").iterdir()) == ["config.json", "weights.pt"]
    assert [p.name for p in (out / "checkpoints").iterdir()] == ["last.ckpt"]


def test_bad_input_fails_clearly_and_models_import_no_orchestration(tmp_path):
    missing = pretrain("--data", str(tmp_path / "nope.parquet"), "--out", str(tmp_path / "o"))
    assert missing.returncode != 0 and "data file not found" in missing.stderr
    unknown = pretrain("--data", __file__, "--out", str(tmp_path / "o"), "--preset", "7b")
    assert unknown.returncode != 0 and "unknown preset '7b'" in unknown.stderr and "2.5b" in unknown.stderr
    # empty data, run in a process that then checks the import boundary of models/
    empty = tmp_path / "empty.parquet"
    pd.DataFrame(
        {"unique_id": pd.Series([], dtype=str), "ds": pd.Series([], dtype=int), "y": pd.Series([], dtype=float)}
    ).to_parquet(empty)
    code = (
        "import sys\n"
        "from models.pretraining.train import main\n"
        f"rc = main(['--data', {str(empty)!r}, '--out', {str(tmp_path / 'o')!r}])\n"
        "import models.pretraining.module, models.pretraining.data, models.forecasting.batch, models.backbone.network\n"
        "bad = [m for m in ('prefect', 'mlflow', 'dvc', 'boto3') if m in sys.modules]\n"
        "print('RC', rc, 'FORBIDDEN', bad)\n"
    )
    res = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=120)
    assert "RC 2 FORBIDDEN []" in res.stdout, res.stdout + res.stderr[-2000:]
    assert "bad training data" in res.stderr and "no rows" in res.stderr


def test_windows_held_out_series_and_rank_sharding(corpus):
    import torch
    from torch.utils.data import DistributedSampler

    from models.pretraining.data import PretrainDataModule, window

    # short series are left-padded with missing values; the window ends at the series end
    w = window(np.arange(5, dtype=np.float32), 5, 8)
    assert np.isnan(w[:3]).all() and w[3:].tolist() == [0, 1, 2, 3, 4]

    dm = PretrainDataModule([corpus], context_length=64, future_length=16, batch_size=4, seed=0)
    assert set(dm.train_store.ids).isdisjoint(dm.val_store.ids) and len(dm.val_store) == 2
    item = dm.train_set[7]
    assert item["values"].shape == item["observed"].shape == (1, 80) and item["observed"].dtype == torch.bool
    # the same index is the same window (workers and ranks agree), another seed differs
    assert torch.equal(item["values"], dm.train_set[7]["values"])
    other = PretrainDataModule([corpus], 64, 16, batch_size=4, seed=1)
    assert not torch.equal(item["values"], other.train_set[7]["values"])
    # every window's future holds observed points to learn from
    assert all(dm.train_set[i]["observed"][0, -16:].any() for i in range(50))
    # under DDP each rank draws its own indices, so its own windows
    ranks = [set(DistributedSampler(dm.train_set, num_replicas=2, rank=r, seed=0)) for r in (0, 1)]
    assert ranks[0].isdisjoint(ranks[1]) and len(ranks[0] | ranks[1]) == len(dm.train_set)


def test_lr_schedules_warm_up_then_decay():
    from models.pretraining.optim import lr_factor

    cos = [lr_factor(s, 10, 100, "cosine", 0.1) for s in range(100)]
    assert cos[0] == pytest.approx(0.1) and cos[9] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(cos[9:], cos[10:])) and cos[-1] == pytest.approx(0.1, abs=1e-3)
    wsd = [lr_factor(s, 10, 100, "wsd", 0.0) for s in range(101)]
    assert wsd[50] == wsd[79] == 1.0 and wsd[90] < 1.0 and wsd[100] == 0.0
