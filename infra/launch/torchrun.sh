#!/usr/bin/env bash
# Launch pre-training with torchrun on one or many nodes: the same entry point as a
# single-machine run (python -m models.pretraining); every argument is passed through to it.
#
#   NNODES=1 NPROC_PER_NODE=2 bash infra/launch/torchrun.sh --data corpus.parquet --out runs/x ...
#
# Run this once per node. Settings come from the environment:
#   NNODES          nodes in the job (default 1); with RDZV_ENDPOINT also a range MIN:MAX
#   NPROC_PER_NODE  processes per node (default: the node's GPU count, else 1); torchrun also takes gpu/cpu/auto
#   Static rendezvous (fixed node ranks, what most clusters and cloud VMs use):
#     NODE_RANK     this node's rank, 0..NNODES-1 (default 0)
#     MASTER_ADDR   address of node 0, reachable from every node (default 127.0.0.1)
#     MASTER_PORT   a free TCP port on node 0 (default 29500). With NNODES=1 and neither
#                   MASTER_PORT nor RDZV_ENDPOINT set, torchrun --standalone picks a free port.
#   Dynamic rendezvous (c10d; node ranks assigned at start, used by the SLURM template):
#     RDZV_ENDPOINT host:port of the rendezvous store (any one node, usually the first)
#     RDZV_ID       a job id shared by all nodes (default tsfm)
#   MAX_RESTARTS    worker-group restarts after a failure (default 0); pass --resume so a
#                   restarted group continues from OUT/checkpoints/last.ckpt
#   PYTHON          interpreter (default: the repository's .venv/bin/python if present, else python)
#   DRY_RUN=1       print the command and exit
#
# Inside the workers models.pretraining reads torchrun's environment: --devices auto becomes
# LOCAL_WORLD_SIZE processes per node and Lightning picks up ranks and the process group
# from torchrun (TorchElasticEnvironment, which Lightning prefers over SLURM's).
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
if [[ -z "${PYTHON:-}" ]]; then
  if [[ -x "$REPO/.venv/bin/python" ]]; then PYTHON="$REPO/.venv/bin/python"; else PYTHON=python; fi
fi
# models/ importable from any working directory (relative --data/--out paths stay the caller's)
export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}"

NNODES="${NNODES:-1}"
if [[ -z "${NPROC_PER_NODE:-}" ]]; then
  NPROC_PER_NODE=1
  if command -v nvidia-smi >/dev/null 2>&1; then
    gpus="$(nvidia-smi -L 2>/dev/null | grep -c '^GPU' || true)"
    if [[ "$gpus" -gt 0 ]]; then NPROC_PER_NODE="$gpus"; fi
  fi
fi

launch=(--nnodes="$NNODES" --nproc-per-node="$NPROC_PER_NODE" --max-restarts="${MAX_RESTARTS:-0}")
if [[ -n "${RDZV_ENDPOINT:-}" ]]; then
  launch+=(--rdzv-backend=c10d --rdzv-endpoint="$RDZV_ENDPOINT" --rdzv-id="${RDZV_ID:-tsfm}")
elif [[ "$NNODES" == "1" && -z "${MASTER_PORT:-}" ]]; then
  launch+=(--standalone)
else
  launch+=(--node-rank="${NODE_RANK:-0}" --master-addr="${MASTER_ADDR:-127.0.0.1}"
           --master-port="${MASTER_PORT:-29500}")
fi

cmd=("$PYTHON" -m torch.distributed.run "${launch[@]}" -m models.pretraining "$@")
echo "+ ${cmd[*]}" >&2
if [[ "${DRY_RUN:-0}" == "1" ]]; then exit 0; fi
exec "${cmd[@]}"
