"""JSONL files keyed by task_id: strict reading with line numbers, appending that survives crashes."""

from __future__ import annotations

import gzip
import json
import logging
import os
from pathlib import Path
from typing import IO, Any, Iterator

log = logging.getLogger(__name__)


class InputError(ValueError):
    """Bad user input; the message names the file, the line and the field."""


def open_text(path: str | Path) -> IO[str]:
    path = Path(path)
    if path.suffix == ".gz":
        return gzip.open(path, "rt", encoding="utf-8")
    return open(path, encoding="utf-8")


def read_jsonl(path: str | Path, tolerate_torn_tail: bool = False) -> Iterator[tuple[int, dict]]:
    """Yield (line number, record) for every non-blank line.

    Args:
        tolerate_torn_tail: a last line without its newline that is not valid JSON is what an
            interrupted writer leaves behind; skip it (with a warning) instead of failing. Used
            when resuming our own output files, never for user input.

    Raises:
        InputError: a line is not a JSON object.
    """
    path = Path(path)
    with open_text(path) as handle:
        lines = handle.readlines()
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            if tolerate_torn_tail and number == len(lines) and not line.endswith("\n"):
                log.warning("%s:%d: ignoring an incomplete last line (an interrupted write)", path, number)
                return
            raise InputError(f"{path}:{number}: malformed JSON ({exc.msg} at column {exc.colno})") from None
        if not isinstance(record, dict):
            raise InputError(f"{path}:{number}: expected a JSON object, got {type(record).__name__}")
        yield number, record


def read_json(path: str | Path) -> Any:
    try:
        with open_text(path) as handle:
            return json.load(handle)
    except json.JSONDecodeError as exc:
        raise InputError(f"{path}:{exc.lineno}: malformed JSON ({exc.msg} at column {exc.colno})") from None


class JsonlAppender:
    """Appends one record per line and flushes each, so a crash loses at most the line in flight.

    A torn last line left by an earlier crash is cut off before appending.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        _drop_torn_tail(self.path)
        self.handle = open(self.path, "a", encoding="utf-8")

    def write(self, record: dict) -> None:
        self.handle.write(json.dumps(record, ensure_ascii=False) + "\n")
        self.handle.flush()

    def close(self) -> None:
        self.handle.flush()
        os.fsync(self.handle.fileno())
        self.handle.close()

    def __enter__(self) -> "JsonlAppender":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _drop_torn_tail(path: Path) -> None:
    if not path.exists() or path.stat().st_size == 0:
        return
    with open(path, "rb+") as handle:
        data = handle.read()
        if data.endswith(b"\n"):
            return
        handle.truncate(data.rfind(b"\n") + 1)


def write_json(path: str | Path, value: Any) -> None:
    """Write atomically (temporary file, then rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(value, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    os.replace(tmp, path)
