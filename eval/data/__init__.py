"""Benchmark data: one module per data set, each turning the publisher's file into `Problem`s.

Every loader takes an explicit path (`--dataset`) or fetches the published file into the cache
(`tuner_eval.data.download`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class Problem:
    """One benchmark item, in the data set's own terms plus what prompting needs."""

    task_id: str
    prompt: str
    """The text a base model continues (code tasks: the code to complete)."""
    instruction: str
    """The same request in words, for instruction-tuned models."""
    entry_point: str | None = None
    record: dict[str, Any] = field(default_factory=dict)
    """The data set's fields, unchanged."""


@dataclass
class Dataset:
    """The problems of one task, and where they came from."""

    problems: dict[str, Problem]
    source: Path
    sha256: str
    extra: dict[str, Any] = field(default_factory=dict)

    def describe(self) -> dict:
        return {"path": str(self.source), "sha256": self.sha256, "problems": len(self.problems), **self.extra}
