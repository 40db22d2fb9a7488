"""Reading instruction data from JSON and JSONL files, remembering where each record came from.

Every record carries its `Source` (file and line) so any later problem (a missing field, an empty
output, an over-long example) is reported as `file:line: field: what is wrong`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from tuner.jsonl import InputError, iter_json_records

DataError = InputError
"""Bad input data, reported as `file:line: field: problem` (the project's one input error)."""


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


def read_records(path: str | Path) -> Iterator[Record]:
    """Yield the records of a JSONL file (one object per line) or a JSON file holding an array.

    Raises:
        DataError: the file is missing, a line is not valid JSON or not an object; the message
            names file and line.
    """
    path = Path(path)
    if not path.exists():
        raise DataError("data file not found", path)
    for number, data in iter_json_records(path):
        yield Record(data, Source(str(path), number))
