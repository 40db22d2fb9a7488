"""Fixtures for the LLaMA-Adapter tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from llama_adapter_helpers import ARCHS


@pytest.fixture(params=ARCHS)
def arch_dir(request, tiny_model_dirs) -> Path:
    return tiny_model_dirs[request.param]
