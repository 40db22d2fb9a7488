"""Helpers shared by the harness tests."""

from __future__ import annotations

import json
from pathlib import Path


def write_samples(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path
