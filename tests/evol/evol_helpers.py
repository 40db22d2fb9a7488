"""Helpers for the Evol-Instruct tests: run `tuner evolve` as a real subprocess, read its files."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def evolve_command(*args: str | Path) -> list[str]:
    return [sys.executable, "-m", "tuner.cli", "evolve", *map(str, args)]


def evolve_env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO), "TUNER_CACHE_DIR": str(REPO / ".cache" / "tuner")}


def run_evolve(*args: str | Path, timeout: float = 600) -> subprocess.CompletedProcess:
    """Run `tuner evolve ARGS` to completion, in a fresh process as a user would."""
    return subprocess.run(evolve_command(*args), capture_output=True, text=True, cwd=REPO,
                          env=evolve_env(), timeout=timeout)


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def write_seed(path: Path, instructions: list[str]) -> Path:
    """A Code Alpaca style seed file (pretty-printed JSON array) with a small answer per item."""
    records = [{"instruction": text, "input": "", "output": f"def solve():\n    return {i}  # {text[:20]}"}
               for i, text in enumerate(instructions)]
    path.write_text(json.dumps(records, indent=4), encoding="utf-8")
    return path
