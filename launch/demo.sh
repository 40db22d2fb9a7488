#!/usr/bin/env bash
# Create ./.venv if needed, then run the embedded end-to-end job (`tuner demo`) on a tiny model
# and bundled data. Output goes to runs/demo (override: bash launch/demo.sh --out DIR).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$root/launch/setup_env.sh"
cd "$root"
export TORCH_EXTENSIONS_DIR="${TORCH_EXTENSIONS_DIR:-$root/.cache/torch_extensions}"
exec "$root/.venv/bin/tuner" demo "$@"
