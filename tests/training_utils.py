"""Running `tuner train` as a real subprocess (alone or under the deepspeed launcher) from tests."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent


def write_recipe(path: Path, model_dir: Path, data_path: Path, output_dir: Path, *, deepspeed: str = "zero0",
                 **sections) -> Path:
    """A recipe YAML; `sections` are extra {section: {key: value}} entries merged in."""
    recipe = {
        "model": {"path": str(model_dir), "dtype": "fp32"},
        "data": {"path": str(data_path), "max_length": 256},
        "train": {"output_dir": str(output_dir), "micro_batch_size": 2, "lr": 1e-3, "warmup_steps": 2,
                  "seed": 1},
        "deepspeed": {"config": str(REPO / "launch" / "deepspeed" / f"{deepspeed}.json")},
    }
    for section, values in sections.items():
        recipe.setdefault(section, {}).update(values)
    path.write_text(json.dumps(recipe))  # JSON is valid YAML
    return path


def run_env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    env["PATH"] = str(VENV_BIN) + os.pathsep + env["PATH"]
    return env


def train_command(recipe: Path, *overrides: str, nproc: int = 1, script: Path | None = None) -> list[str]:
    """`tuner train` in one process, or `nproc` ranks through launch/train.sh."""
    if nproc == 1 and script is None:
        return [sys.executable, "-m", "tuner.cli", "train", str(recipe), *overrides]
    if script is not None and nproc == 1:
        return [sys.executable, str(script), str(recipe), *overrides]
    if script is not None:
        from tuner.engine import free_port

        return [str(VENV_BIN / "deepspeed"), "--num_gpus", str(nproc), "--master_port", str(free_port()),
                "--no_local_rank", str(script), str(recipe), *overrides]
    return ["bash", str(REPO / "launch" / "train.sh"), str(recipe), *overrides]


def run_train(recipe: Path, *overrides: str, nproc: int = 1, script: Path | None = None,
              timeout: int = 600) -> subprocess.CompletedProcess:
    env = run_env()
    env["NPROC"] = str(nproc)
    result = subprocess.run(train_command(recipe, *overrides, nproc=nproc, script=script), env=env,
                            capture_output=True, text=True, timeout=timeout)
    if result.returncode != 0:
        raise AssertionError(f"training failed ({result.returncode}):\n{result.stdout[-4000:]}\n{result.stderr[-6000:]}")
    return result


def losses(output_dir: Path) -> list[float]:
    rows = [json.loads(line) for line in (Path(output_dir) / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == list(range(1, len(rows) + 1)), "each step logged once, in order"
    return [r["loss"] for r in rows]
