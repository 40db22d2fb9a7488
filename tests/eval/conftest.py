"""Fixtures for the harness tests: a private data cache and small helpers for samples files."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture(scope="session", autouse=True)
def eval_cache(tmp_path_factory) -> Path:
    """Reference outputs and downloads go to a per-session folder, never the user's cache."""
    folder = tmp_path_factory.mktemp("eval_cache")
    previous = os.environ.get("TUNER_EVAL_CACHE")
    os.environ["TUNER_EVAL_CACHE"] = str(folder)
    yield folder
    if previous is None:
        os.environ.pop("TUNER_EVAL_CACHE", None)
    else:
        os.environ["TUNER_EVAL_CACHE"] = previous


@pytest.fixture(scope="session")
def fixtures() -> Path:
    return FIXTURES
