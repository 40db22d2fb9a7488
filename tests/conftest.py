"""Shared fixtures: tiny real models saved with `save_pretrained`, and the shared data folder."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

# DeepSpeed JIT-compiles its CPU ops on first use; keep the build cache inside this checkout so a
# CI run owns it (and clears its stale locks, see tuner.engine).
os.environ.setdefault("TORCH_EXTENSIONS_DIR", str(REPO / ".cache" / "torch_extensions"))
os.environ.setdefault("DS_ACCELERATOR", "cpu")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
# The venv's ninja first, in this process and every launcher subprocess alike: DeepSpeed's JIT
# build records the ninja it used, and a different one makes it rebuild the op (minutes) each time.
_VENV_BIN = str(Path(sys.executable).parent)
if os.environ.get("PATH", "").split(os.pathsep)[0] != _VENV_BIN:
    os.environ["PATH"] = _VENV_BIN + os.pathsep + os.environ.get("PATH", "")

SHARED_DATA = Path(os.environ.get("TUNER_SHARED_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The benchmark copies described in shared/data/MANIFEST.md."""
    if not (SHARED_DATA / "MANIFEST.md").exists():
        pytest.skip(f"shared benchmark data not found at {SHARED_DATA} (set TUNER_SHARED_DATA)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def tiny_tokenizer():
    from tuner.tiny import train_tokenizer

    return train_tokenizer()


@pytest.fixture(scope="session")
def tiny_model_dirs(tmp_path_factory, tiny_tokenizer) -> dict[str, Path]:
    """Folders holding one tiny model of each architecture, built once per test session."""
    from tuner.tiny import TINY_ARCHITECTURES, build_tiny_model

    root = tmp_path_factory.mktemp("tiny_models")
    return {arch: build_tiny_model(arch, root / arch, tiny_tokenizer) for arch in TINY_ARCHITECTURES}


@pytest.fixture(scope="session")
def tiny_llama_dir(tiny_model_dirs) -> Path:
    return tiny_model_dirs["llama"]


@pytest.fixture(scope="session")
def instruction_data(tmp_path_factory) -> Path:
    """64 Alpaca-format records of mixed lengths (synthetic function-writing tasks)."""
    from tuner.synthetic import generate_tasks, write_alpaca

    return write_alpaca(generate_tasks(64, seed=0), tmp_path_factory.mktemp("data") / "train.jsonl")
