"""Checkpoints that resume exactly: a run killed mid-way and resumed with --resume ends like
an uninterrupted one (same batches, same weights, same loss curve)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import numpy as np

from tests.models.pretraining.trainer_runs import MAX_STEPS, command, make_corpus, train_losses

ROOT = Path(__file__).resolve().parents[3]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
RTOL = 1e-4


def test_killed_run_resumes_with_the_same_loss_curve(tmp_path):
    data = make_corpus(tmp_path / "train.parquet")
    a, b = tmp_path / "a", tmp_path / "b"

    # A: uninterrupted, started in the background while B runs (2 cores, one thread each)
    log_a = (tmp_path / "a.log").open("w")
    run_a = subprocess.Popen(command(data, a), cwd=ROOT, env=ENV, stdout=log_a, stderr=subprocess.STDOUT)

    # B: checkpoints every 5 steps, SIGKILLed past step 10 once a checkpoint exists
    run_b = subprocess.Popen(
        command(data, b, "--checkpoint-every", "5"),
        cwd=ROOT,
        env=ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    last = b / "checkpoints" / "last.ckpt"
    killed_at = None
    deadline = time.time() + 120
    for line in run_b.stdout:  # progress lines every max_steps // 10 = 4 steps: "step 12/40 ..."
        if line.startswith("step ") and int(line.split()[1].split("/")[0]) > 10 and last.is_file():
            run_b.send_signal(signal.SIGKILL)
            killed_at = int(line.split()[1].split("/")[0])
            break
        assert time.time() < deadline, "run B never got past step 10"
    run_b.wait(timeout=30)
    assert killed_at is not None and run_b.returncode == -signal.SIGKILL, "run B ended before it was killed"
    assert not (b / "metrics.json").exists()

    import torch

    resumed_from = int(torch.load(last, map_location="cpu", weights_only=False)["global_step"])
    assert 10 <= resumed_from < MAX_STEPS and resumed_from % 5 == 0, resumed_from

    res = subprocess.run(
        command(data, b, "--checkpoint-every", "5", "--resume"),
        cwd=ROOT,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    assert f"resuming from {last}" in res.stdout
    run_a.wait(timeout=180)
    log_a.close()
    out_a = (tmp_path / "a.log").read_text()
    assert run_a.returncode == 0, out_a[-3000:]
    assert "resuming" not in out_a

    ma = json.loads((a / "metrics.json").read_text())
    mb = json.loads((b / "metrics.json").read_text())
    assert ma["steps"] == mb["steps"] == MAX_STEPS
    assert ma["tokens_seen"] == mb["tokens_seen"]
    for key in ("initial_train_loss", "final_train_loss", "val_loss"):
        assert np.isclose(mb[key], ma[key], rtol=RTOL, atol=0), (key, ma[key], mb[key])

    # the resumed part of B's curve is A's curve, step for step (the resumed part logs to version_1)
    la, lb = train_losses(a), train_losses(b)
    assert sorted(la) == list(range(MAX_STEPS))
    # nothing B logged before it was killed is lost to the resumed run's log
    assert set(range(resumed_from)) <= set(lb), sorted(lb)
    after = [s for s in la if s >= resumed_from]
    assert after and set(after) <= set(lb), (resumed_from, sorted(lb))
    diff = max(abs(la[s] - lb[s]) for s in after)
    print(f"resumed from step {resumed_from} (killed at {killed_at}); max |loss A - loss B| = {diff:.3g}")
    assert all(np.isclose(lb[s], la[s], rtol=RTOL, atol=0) for s in after), diff
    # and the curve is not flat: restarting the data at batch 0 would give other losses
    assert np.std([la[s] for s in after]) > 10 * RTOL * np.mean([la[s] for s in after])


def test_sampler_skips_exactly_the_consumed_batches_and_keeps_rank_shards():
    import torch

    from models.pretraining.data import ResumableSampler

    dataset = list(range(50))  # 25 per rank, 4 batches of 6 per epoch (drop_last in the loader)

    def batches(rank: int, start: int, epochs: int) -> list[list[int]]:
        sampler = ResumableSampler(dataset, batch_size=6, num_replicas=2, rank=rank, seed=3, start_batch=start)
        out = []
        for epoch in range(sampler.skip_epoch, sampler.skip_epoch + epochs):
            sampler.set_epoch(epoch)
            loader = torch.utils.data.DataLoader(dataset, batch_size=6, sampler=sampler, drop_last=True)
            out += [b.tolist() for b in loader]
        return out

    for rank in (0, 1):
        full = batches(rank, 0, 3)
        assert len(full) == 12 and full[:4] != full[4:8]  # a new permutation each epoch
        for start in (1, 3, 4, 6, 9):  # mid-epoch and on epoch boundaries
            resumed = batches(rank, start, 3 - start // 4)
            assert resumed == full[start:], (rank, start)
    # ranks draw disjoint windows
    r0, r1 = (sum(batches(r, 0, 1), []) for r in (0, 1))
    assert set(r0).isdisjoint(r1)


def test_epochs_hold_whole_optimizer_steps_under_accumulation():
    # 10 samples / batch 2 = 5 batches; with 2 batches per step an epoch keeps 4, so no optimizer
    # step straddles two epochs and step * 2 is exactly the batches consumed
    from models.pretraining.data import ResumableSampler

    data = list(range(10))
    sampler = ResumableSampler(data, batch_size=2, batches_per_step=2)
    assert sampler.batches_per_epoch == 4 and len(sampler) == len(list(sampler)) == 8
    resumed = ResumableSampler(data, batch_size=2, batches_per_step=2, start_batch=6)  # step 3
    resumed.set_epoch(1)
    sampler.set_epoch(1)
    assert list(resumed) == list(sampler)[4:]
    assert ResumableSampler(data, batch_size=2).batches_per_epoch == 5  # no accumulation: unchanged
