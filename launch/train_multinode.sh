#!/usr/bin/env bash
# Train on several nodes listed in a DeepSpeed hostfile (see hostfile.example).
#
# Without NODE_RANK, run this once on the first node: DeepSpeed's launcher starts every node over
# pdsh/ssh (passwordless ssh between the nodes is required).
#   HOSTFILE=hostfile MASTER_ADDR=node-0 bash launch/train_multinode.sh RECIPE.yaml [key=value ...]
#
# With NODE_RANK, run it on every node yourself (no ssh; e.g. from a cluster scheduler), giving
# each its rank in hostfile order and the same MASTER_ADDR/MASTER_PORT:
#   HOSTFILE=hostfile NODE_RANK=0 MASTER_ADDR=node-0 MASTER_PORT=29600 bash launch/train_multinode.sh RECIPE.yaml
#   HOSTFILE=hostfile NODE_RANK=1 MASTER_ADDR=node-0 MASTER_PORT=29600 bash launch/train_multinode.sh RECIPE.yaml
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
PYTHON="${PYTHON:-$(command -v python3)}"
if [ -x "$here/../.venv/bin/python" ] && [ -z "${VIRTUAL_ENV:-}" ]; then PYTHON="$here/../.venv/bin/python"; fi
bindir="$(dirname "$PYTHON")"

: "${HOSTFILE:?set HOSTFILE to a DeepSpeed hostfile (see hostfile.example)}"
: "${MASTER_ADDR:?set MASTER_ADDR to the address of the first node in the hostfile}"
MASTER_PORT="${MASTER_PORT:-29600}"
if ! "$PYTHON" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
  export DS_ACCELERATOR="${DS_ACCELERATOR:-cpu}"
fi

args=(--hostfile "$HOSTFILE" --master_addr "$MASTER_ADDR" --master_port "$MASTER_PORT" --no_local_rank)
if [ -n "${NODE_RANK:-}" ]; then
  args+=(--no_ssh --node_rank "$NODE_RANK")
fi
exec "$bindir/deepspeed" "${args[@]}" --module tuner.cli train "$@"
