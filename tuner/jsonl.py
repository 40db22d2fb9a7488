"""One reader and writer of JSON-lines files for training data, Evol-Instruct and the evaluation
harness.

Reading keeps the line of every record, so any problem, here or later (a missing field, an
empty output), is reported as `file:line: what is wrong` (`InputError`). A file whose first
non-blank character is `[` is read as one JSON array of objects, element by element, each with the
line it starts on; `.gz` files are decompressed. Writing is atomic (a temporary file, then a
rename) or appends one flushed line at a time (`JsonlAppender`), so a crash loses at most the line
in flight and a reader never sees half a file.
"""

from __future__ import annotations

import gzip
import json
import logging
import os
from pathlib import Path
from typing import IO, Any, Iterable, Iterator

log = logging.getLogger(__name__)


class InputError(ValueError):
    """Bad user input; the message names the file and line (and field), and fits on one line.

    `InputError("field `x` is missing", path, 3)` reads "PATH:3: field `x` is missing"; without a
    path the message is used as it is.
    """

    def __init__(self, message: str, path: str | Path | None = None, line: int | None = None) -> None:
        where = "" if path is None else (f"{path}:{line}: " if line is not None else f"{path}: ")
        super().__init__(where + message)
        self.path = None if path is None else str(path)
        self.line = line


def open_text(path: str | Path) -> IO[str]:
    """The file opened for reading text; `.gz` files are decompressed."""
    path = Path(path)
    if path.suffix == ".gz":
        return gzip.open(path, "rt", encoding="utf-8")
    return open(path, encoding="utf-8")


def read_text(path: str | Path) -> str:
    path = Path(path)
    if not path.exists():
        raise InputError("no such file", path)
    with open_text(path) as handle:
        return handle.read()


def iter_json_records(path: str | Path, tolerate_torn_tail: bool = False) -> Iterator[tuple[int, dict]]:
    """Yield `(line number, record)` for every object of a JSONL file or a JSON array.

    Args:
        tolerate_torn_tail: a last JSONL line without its newline that is not valid JSON is what
            an interrupted writer leaves behind; skip it (with a warning) instead of failing. For
            resuming our own output files, never for user input.

    Raises:
        InputError: the file is missing, is not valid JSON, or holds something other than objects.
    """
    text = read_text(path)
    start = len(text) - len(text.lstrip())
    if text[start:start + 1] == "[":
        yield from _iter_array(path, text, start + 1)
    else:
        yield from _iter_lines(path, text, tolerate_torn_tail)


def _malformed(error: json.JSONDecodeError) -> str:
    return f"malformed JSON ({error.msg} at column {error.colno})"


def _object(path: str | Path, number: int, record: Any) -> dict:
    if not isinstance(record, dict):
        raise InputError(f"expected a JSON object, got {type(record).__name__}", path, number)
    return record


def _iter_lines(path: str | Path, text: str, tolerate_torn_tail: bool) -> Iterator[tuple[int, dict]]:
    lines = text.splitlines()
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as e:
            if tolerate_torn_tail and number == len(lines) and not text.endswith("\n"):
                log.warning("%s:%d: ignoring an incomplete last line (an interrupted write)", path, number)
                return
            raise InputError(_malformed(e), path, number) from None
        yield number, _object(path, number, record)


def _iter_array(path: str | Path, text: str, pos: int) -> Iterator[tuple[int, dict]]:
    decoder = json.JSONDecoder()
    line, counted_to = 1, 0

    def line_at(index: int) -> int:
        nonlocal line, counted_to
        line += text.count("\n", counted_to, index)
        counted_to = index
        return line

    def skip_blank(index: int) -> int:
        while index < len(text) and text[index] in " \t\r\n":
            index += 1
        return index

    pos = skip_blank(pos)
    if text[pos:pos + 1] == "]":
        return
    while True:
        pos = skip_blank(pos)
        try:
            record, end = decoder.raw_decode(text, pos)
        except json.JSONDecodeError as e:
            raise InputError(_malformed(e), path, e.lineno) from None
        number = line_at(pos)
        yield number, _object(path, number, record)
        pos = skip_blank(end)
        separator = text[pos:pos + 1]
        if separator == "]":
            if text[pos + 1:].strip():
                raise InputError("unexpected text after the closing ']'", path, line_at(pos))
            return
        if separator != ",":
            got = repr(separator) if separator else "end of file"
            raise InputError(f"malformed JSON (expected ',' or ']', got {got})", path, line_at(pos))
        pos += 1


def read_json(path: str | Path) -> Any:
    """One JSON document (`.gz` decompressed)."""
    try:
        return json.loads(read_text(path))
    except json.JSONDecodeError as e:
        raise InputError(_malformed(e), path, e.lineno) from None


def write_json(path: str | Path, value: Any) -> None:
    """Write atomically (temporary file, then rename), indented."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(value, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def write_jsonl(path: str | Path, records: Iterable[dict]) -> int:
    """Write `records` as JSONL atomically (temporary file, then rename); returns how many."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    count = 0
    with tmp.open("w", encoding="utf-8") as f:
        for record in records:
            f.write(json.dumps(record, ensure_ascii=False) + "\n")
            count += 1
    os.replace(tmp, path)
    return count


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
