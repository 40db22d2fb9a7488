"""Reading JSON and JSONL records with line numbers, and writing JSONL files atomically."""

from __future__ import annotations

import gzip
import json
import os
from pathlib import Path
from typing import Iterable, Iterator


class InputError(ValueError):
    """Bad user input; the message names the file and line, and fits on one line."""

    def __init__(self, path: str | Path, line: int | None, message: str) -> None:
        where = f"{path}:{line}" if line is not None else f"{path}"
        super().__init__(f"{where}: {message}")
        self.path = str(path)
        self.line = line


def read_text(path: str | Path) -> str:
    """The file's text; `.gz` files are decompressed."""
    path = Path(path)
    if not path.exists():
        raise InputError(path, None, "no such file")
    if path.suffix == ".gz":
        with gzip.open(path, "rt", encoding="utf-8") as f:
            return f.read()
    return path.read_text(encoding="utf-8")


def iter_json_records(path: str | Path) -> Iterator[tuple[int, dict]]:
    """Yield `(line_number, record)` from a JSON array of objects or from JSONL.

    The format is taken from the first non-blank character (`[` means an array). Line numbers are
    1-based and point at the start of each object, so errors about a record can name its line.

    Raises:
        InputError: the file is missing, is not valid JSON, or holds something other than objects.
    """
    text = read_text(path)
    start = len(text) - len(text.lstrip())
    if text[start:start + 1] == "[":
        yield from _iter_array(path, text, start + 1)
    else:
        yield from _iter_lines(path, text)


def _iter_lines(path: str | Path, text: str) -> Iterator[tuple[int, dict]]:
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as e:
            raise InputError(path, number, f"malformed JSON ({e.msg} at column {e.colno})") from None
        if not isinstance(record, dict):
            raise InputError(path, number, f"expected a JSON object, got {type(record).__name__}")
        yield number, record


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
            raise InputError(path, e.lineno, f"malformed JSON ({e.msg} at column {e.colno})") from None
        number = line_at(pos)
        if not isinstance(record, dict):
            raise InputError(path, number, f"expected a JSON object, got {type(record).__name__}")
        yield number, record
        pos = skip_blank(end)
        separator = text[pos:pos + 1]
        if separator == "]":
            if text[pos + 1:].strip():
                raise InputError(path, line_at(pos), "unexpected text after the closing ']'")
            return
        if separator != ",":
            got = repr(separator) if separator else "end of file"
            raise InputError(path, line_at(pos), f"malformed JSON (expected ',' or ']', got {got})")
        pos += 1


def write_jsonl_atomic(path: str | Path, records: Iterable[dict]) -> int:
    """Write `records` as JSONL to `path` through a temporary file, so a reader never sees half.

    Returns the number of records written.
    """
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    count = 0
    with tmp.open("w", encoding="utf-8") as f:
        for record in records:
            f.write(json.dumps(record, ensure_ascii=False) + "\n")
            count += 1
    os.replace(tmp, path)
    return count


def write_json_atomic(path: str | Path, value: object) -> None:
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(value, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    os.replace(tmp, path)
