"""Reading instruction data from JSON and JSONL files, remembering where each record came from.

Every record carries its `Source` (file and line) so any later problem (a missing field, an empty
output, an over-long example) is reported as `file:line: field: what is wrong`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator


class DataError(ValueError):
    """Bad input data, reported as `file:line: field: problem`."""


@dataclass(frozen=True)
class Source:
    path: str
    line: int

    def __str__(self) -> str:
        return f"{self.path}:{self.line}"


@dataclass
class Record:
    data: dict
    source: Source


def _line_of(text: str, offset: int) -> int:
    return text.count("\n", 0, offset) + 1


def _read_json_array(path: Path, text: str) -> Iterator[Record]:
    """Decode a top-level JSON array element by element, so each record knows its line."""
    decoder = json.JSONDecoder()
    pos = text.index("[") + 1
    while True:
        while pos < len(text) and text[pos] in " \t\r\n,":
            pos += 1
        if pos >= len(text):
            raise DataError(f"{path}:{_line_of(text, pos)}: invalid JSON: the array is not closed")
        if text[pos] == "]":
            return
        try:
            obj, end = decoder.raw_decode(text, pos)
        except json.JSONDecodeError as exc:
            raise DataError(f"{path}:{exc.lineno}: invalid JSON: {exc.msg}") from None
        yield Record(obj, Source(str(path), _line_of(text, pos)))
        pos = end


def read_records(path: str | Path) -> Iterator[Record]:
    """Yield the records of a JSONL file (one object per line) or a JSON file holding an array.

    Raises:
        DataError: the file is missing or a line is not valid JSON; the message names file and line.
    """
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: data file not found")
    text = path.read_text(encoding="utf-8")
    stripped = text.lstrip()
    if path.suffix == ".json" and stripped.startswith("["):
        yield from _read_json_array(path, text)
        return
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(f"{path}:{number}: invalid JSON: {exc.msg} (column {exc.colno})") from None
        yield Record(obj, Source(str(path), number))

