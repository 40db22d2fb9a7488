"""DS-1000 (Lai et al., 2022) in its `ds1000.jsonl` format: prompt, reference_code, code_context
(test harness with `test_execution` and sometimes `test_string`), metadata.

The libraries its problems use are an optional extra (`pip install tuner[ds1000]`); a problem
whose library is not installed is reported as skipped, never as failed.
"""

from __future__ import annotations

import ast
import importlib.util
from pathlib import Path

from tuner_eval.data import Dataset, Problem
from tuner_eval.data.download import DS1000, fetch, sha256_file
from tuner.jsonl import InputError, iter_json_records

STOP = ["</code>", "# SOLUTION END"]


def load_ds1000(path: Path | None = None) -> Dataset:
    path = path or fetch(DS1000)
    problems = {}
    for number, record in iter_json_records(path):
        for name in ("prompt", "reference_code", "code_context", "metadata"):
            if name not in record:
                raise InputError(f"{path}:{number}: field `{name}` is missing")
        metadata = record["metadata"]
        if not isinstance(metadata, dict) or "problem_id" not in metadata or "library" not in metadata:
            raise InputError(f"{path}:{number}: field `metadata` needs `problem_id` and `library`")
        task_id = str(metadata["problem_id"])
        problems[task_id] = Problem(task_id, record["prompt"], record["prompt"], None, record)
    return Dataset(problems, path, sha256_file(path))


def missing_modules(code_context: str) -> list[str]:
    """Top-level modules the test harness imports that are not installed here."""
    try:
        tree = ast.parse(code_context)
    except SyntaxError:
        return []
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return sorted(name for name in names if importlib.util.find_spec(name) is None)


def postprocess(text: str) -> str:
    """DS-1000's own clean-up of a model's answer (code between the tags, before END SOLUTION)."""
    text = text.split("</code>")[0]
    text = text.replace("```python", "")
    text = text.split("```")[0]
    text = text.split("\nEND SOLUTION")[0]
    return text.replace("<code>", "")


def test_functions(code_context: str) -> list[str]:
    """The official checks a test program defines, called with the solution's text in this order."""
    return ["test_execution"] + (["test_string"] if "def test_string(" in code_context else [])


_PROGRAM_STATE = ("plt.gca(", "plt.gcf(", "Image.open(\"output.png\")", "Image.open('output.png')")


def checks_program_state(record: dict) -> bool:
    """Whether the checks read what the program left in its interpreter besides its variables
    (the current matplotlib figure, the image it saved): the Matplotlib problems."""
    context = record["code_context"]
    return record["metadata"].get("library") == "Matplotlib" or any(marker in context for marker in _PROGRAM_STATE)
