#!/usr/bin/env bash
# Run the whole test suite on a fresh machine: creates ./.venv if needed, then pytest.
#
#   bash launch/test.sh [pytest args...]
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$root/launch/setup_env.sh"
cd "$root"
export TORCH_EXTENSIONS_DIR="${TORCH_EXTENSIONS_DIR:-$root/.cache/torch_extensions}"
export DS_ACCELERATOR="${DS_ACCELERATOR:-$("$root/.venv/bin/python" -c "import torch; print('cuda' if torch.cuda.is_available() else 'cpu')")}"
exec "$root/.venv/bin/python" -m pytest tests "$@"
