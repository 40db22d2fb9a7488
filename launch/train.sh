#!/usr/bin/env bash
# Train on one node: one rank per GPU (or NPROC ranks on CPU).
#
#   bash launch/train.sh launch/recipes/wizardcoder_evol_full.yaml [section.key=value ...]
#
# Environment: NPROC (ranks on this node; default: the number of visible GPUs, else 1),
# MASTER_PORT (default: a free port), PYTHON (default: the python that has tuner installed).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
PYTHON="${PYTHON:-$(command -v python3)}"
if [ -x "$here/../.venv/bin/python" ] && [ -z "${VIRTUAL_ENV:-}" ]; then PYTHON="$here/../.venv/bin/python"; fi
bindir="$(dirname "$PYTHON")"

read -r gpus < <("$PYTHON" -c "import torch; print(torch.cuda.device_count())")  # one torch import
NPROC="${NPROC:-$(( gpus > 0 ? gpus : 1 ))}"
if [ "$gpus" -eq 0 ]; then
  export DS_ACCELERATOR="${DS_ACCELERATOR:-cpu}"
fi
MASTER_PORT="${MASTER_PORT:-$("$PYTHON" -c "import socket; s=socket.socket(); s.bind(('127.0.0.1', 0)); print(s.getsockname()[1])")}"

exec "$bindir/deepspeed" --num_gpus "$NPROC" --master_port "$MASTER_PORT" --no_local_rank \
  --module tuner.cli train "$@"
