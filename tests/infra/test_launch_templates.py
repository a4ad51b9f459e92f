"""Multi-node launch templates (infra/launch/): torchrun.sh runs for real on CPU (gloo),
slurm.sbatch is checked for syntax and run in dry-run mode with stand-in srun/scontrol."""

from __future__ import annotations

import json
import os
import socket
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from tests.corpus import seasonal_corpus
from tests.models.pretraining.trainer_runs import TINY

ROOT = Path(__file__).resolve().parents[2]
LAUNCH = ROOT / "infra" / "launch"
TORCHRUN = LAUNCH / "torchrun.sh"
SBATCH = LAUNCH / "slurm.sbatch"
LAUNCH_VARS = (
    "NNODES",
    "NPROC_PER_NODE",
    "NODE_RANK",
    "MASTER_ADDR",
    "MASTER_PORT",
    "RDZV_ENDPOINT",
    "RDZV_ID",
    "MAX_RESTARTS",
    "DRY_RUN",
    "WORLD_SIZE",
    "LOCAL_WORLD_SIZE",
    "RANK",
    "LOCAL_RANK",
)
# one thread per process: the test machines have 2 cores and these runs start 2 processes
BASE_ENV = {k: v for k, v in os.environ.items() if k not in LAUNCH_VARS and not k.startswith("SLURM_")}
BASE_ENV.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONUNBUFFERED="1", PYTHON=sys.executable)
# the tiny run of the trainer tests, 6 steps; the launcher decides the processes
TRAIN = [*TINY, "--max-steps", "6", "--batch-size", "4", "--warmup-steps", "1"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(script: Path, *args: str, env: dict, cwd: Path = ROOT) -> subprocess.Popen:
    return subprocess.Popen(
        ["bash", str(script), *args],
        cwd=cwd,
        env={**BASE_ENV, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(proc: subprocess.Popen, timeout: int = 120) -> tuple[int, str, str]:
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
    return proc.returncode, out, err


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    return seasonal_corpus(tmp_path_factory.mktemp("corpus") / "train.parquet", 12, (60, 200), periods=(12,))


def test_torchrun_one_node_two_cpu_processes(corpus, tmp_path):
    out = tmp_path / "run"
    # from another working directory: the script finds the repository itself
    proc = launch(
        TORCHRUN,
        "--data",
        str(corpus),
        "--out",
        str(out),
        *TRAIN,
        cwd=tmp_path,
        env={"NNODES": "1", "NPROC_PER_NODE": "2", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(free_port())},
    )
    rc, stdout, stderr = finish(proc)
    assert rc == 0, stderr[-3000:]
    assert "-m torch.distributed.run" in stderr and "-m models.pretraining" in stderr
    assert stdout.count("done: ") == 1  # rank zero alone reports and writes
    metrics = json.loads((out / "metrics.json").read_text())
    # --devices auto became torchrun's LOCAL_WORLD_SIZE
    assert metrics["devices"] == 2 and metrics["steps"] == 6
    assert metrics["tokens_seen"] == 6 * 4 * 2 * 10
    assert sorted(p.name for p in (out / "backbone").iterdir()) == ["config.json", "weights.pt"]
    assert (out / "checkpoints" / "last.ckpt").is_file()


# Remove the marker once models/pretraining/train.py passes num_nodes = WORLD_SIZE // LOCAL_WORLD_SIZE to the
# Trainer under torchrun: without it Lightning sees devices=1 x num_nodes=1 in a world of 2 and either
# raises ("does not match the world size") or, with a single-device strategy, trains each node alone.
def test_torchrun_two_nodes_on_localhost(corpus, tmp_path):
    """Two torchrun agents (NODE_RANK 0 and 1, one process each) form one world of 2."""
    out = tmp_path / "run"
    common = {"NNODES": "2", "NPROC_PER_NODE": "1", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(free_port())}
    procs = [
        launch(TORCHRUN, "--data", str(corpus), "--out", str(out), *TRAIN, env={**common, "NODE_RANK": str(r)})
        for r in (0, 1)
    ]
    results = [finish(p) for p in procs]
    for rc, _, stderr in results:
        assert rc == 0, stderr[-3000:]
    assert sum(stdout.count("done: ") for _, stdout, _ in results) == 1
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["devices"] == 2 and metrics["tokens_seen"] == 6 * 4 * 2 * 10


def dry_run(script: Path, env: dict, *args: str) -> str:
    res = subprocess.run(
        ["bash", str(script), *args],
        cwd=ROOT,
        env={**BASE_ENV, **env, "DRY_RUN": "1"},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert res.returncode == 0, res.stderr
    lines = [line for line in res.stderr.splitlines() if line.startswith("+ ")]
    assert len(lines) == 1, res.stderr
    return lines[0]


def test_torchrun_flags_from_environment():
    static = dry_run(
        TORCHRUN,
        {"NNODES": "4", "NODE_RANK": "3", "NPROC_PER_NODE": "8", "MASTER_ADDR": "10.0.0.1", "MASTER_PORT": "29501"},
        "--out",
        "o",
        "--preset",
        "22m",
    )
    assert "-m torch.distributed.run --nnodes=4 --nproc-per-node=8" in static
    assert "--node-rank=3 --master-addr=10.0.0.1 --master-port=29501" in static
    assert static.endswith("-m models.pretraining --out o --preset 22m")
    elastic = dry_run(TORCHRUN, {"NNODES": "2:4", "RDZV_ENDPOINT": "head:29400", "RDZV_ID": "j1"}, "--out", "o")
    assert "--nnodes=2:4" in elastic and "--rdzv-backend=c10d --rdzv-endpoint=head:29400 --rdzv-id=j1" in elastic
    assert "--node-rank" not in elastic
    single = dry_run(TORCHRUN, {}, "--out", "o")
    assert "--nnodes=1" in single and "--standalone" in single


def test_sbatch_syntax_and_same_entry_point(tmp_path):
    assert subprocess.run(["bash", "-n", str(SBATCH)], capture_output=True).returncode == 0
    assert subprocess.run(["bash", "-n", str(TORCHRUN)], capture_output=True).returncode == 0
    text = SBATCH.read_text()
    assert "#SBATCH --nodes=" in text and "#SBATCH --ntasks-per-node=1" in text and "srun " in text
    assert "infra/launch/torchrun.sh" in text
    assert "-m models.pretraining" in TORCHRUN.read_text()

    # run the job script with stand-ins for srun and scontrol: one torchrun per node, c10d on the first node
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, body in {
        "srun": 'while [[ "$1" == --* ]]; do shift; done\nexec "$@"\n',
        "scontrol": "printf 'node-a\\nnode-b\\n'\n",
    }.items():
        path = bin_dir / name
        path.write_text("#!/bin/bash\n" + body)
        path.chmod(path.stat().st_mode | stat.S_IEXEC)
    env = {
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        "SLURM_JOB_NODELIST": "node-[a-b]",
        "SLURM_NNODES": "2",
        "SLURM_JOB_ID": "77",
        "SLURM_GPUS_ON_NODE": "4",
        "SLURM_SUBMIT_DIR": str(ROOT),
    }
    line = dry_run(SBATCH, env, "--data", "d.parquet", "--out", "runs/x", "--preset", "22m")
    assert "-m torch.distributed.run --nnodes=2 --nproc-per-node=4" in line
    assert "--rdzv-backend=c10d --rdzv-endpoint=node-a:29500 --rdzv-id=77" in line
    assert line.endswith("-m models.pretraining --data d.parquet --out runs/x --preset 22m")
