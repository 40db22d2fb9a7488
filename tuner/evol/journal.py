"""The call journal: every teacher answer, appended to `DIR/calls.jsonl` the moment it arrives.

It is the only state a run keeps. Every other file in DIR is recomputed from the seed file and the
journal, so a run killed at any point (even halfway through writing a line) resumes by reading
the journal back: finished calls are reused, failed and missing ones are asked again.

Each line is `{"key", "prompt_sha", "texts", "error"}`. `prompt_sha` fingerprints the exact
messages sent, so an answer is reused only for the very same request.
"""

from __future__ import annotations

import hashlib
import json
import threading
from pathlib import Path

from tuner.generation import GenerationResult, Message
from tuner.jsonl import InputError


def prompt_sha(messages: list[Message]) -> str:
    return hashlib.sha256(json.dumps(messages, sort_keys=True, ensure_ascii=False).encode("utf-8")).hexdigest()


class CallJournal:
    """Append-only JSONL of teacher results keyed by call, safe to append to from several threads."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._entries: dict[str, dict] = {}
        self.repaired_partial_line = False
        if self.path.exists():
            self._load()
        self._lock = threading.Lock()
        self._file = self.path.open("a", encoding="utf-8")

    def _load(self) -> None:
        data = self.path.read_bytes()
        complete = data[: data.rfind(b"\n") + 1]
        if len(complete) != len(data):
            # A kill in the middle of a write leaves a partial last line: drop it, ask again.
            with self.path.open("r+b") as f:
                f.truncate(len(complete))
            self.repaired_partial_line = True
        for number, line in enumerate(complete.decode("utf-8").splitlines(), start=1):
            if not line.strip():
                continue
            try:
                entry = json.loads(line)
                key = entry["key"]
            except (json.JSONDecodeError, KeyError, TypeError):
                raise InputError("corrupt journal line (not written by tuner evolve?)", self.path, number) from None
            previous = self._entries.get(key)
            # A later success replaces anything; a later failure never hides an earlier success.
            if previous is None or entry.get("error") is None or previous.get("error") is not None:
                self._entries[key] = entry

    def finished(self, key: str, sha: str) -> GenerationResult | None:
        """The stored successful result of this exact request, or None if it must be (re)made."""
        entry = self._entries.get(key)
        if entry is None or entry.get("error") is not None or entry.get("prompt_sha") != sha:
            return None
        return GenerationResult(texts=list(entry["texts"]))

    def record(self, key: str, sha: str, result: GenerationResult) -> None:
        entry = {"key": key, "prompt_sha": sha, "texts": result.texts, "error": result.error}
        line = json.dumps(entry, ensure_ascii=False) + "\n"
        with self._lock:
            self._file.write(line)
            self._file.flush()
            previous = self._entries.get(key)
            if result.ok or previous is None or previous.get("error") is not None:
                self._entries[key] = entry

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> "CallJournal":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
