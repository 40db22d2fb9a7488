"""ScienceQA (Lu et al., 2022) for evaluation: problems.json + pid_splits.json (+ captions.json).

problems.json maps pid -> {question, choices, answer (index), hint, image, subject, grade
"gradeN", ...}; pid_splits.json maps split -> [pid]; captions.json holds {"captions": {pid: text}}
for the problems with an image (text-only models read the caption as context, as in the paper's
baselines).
"""

from __future__ import annotations

from pathlib import Path

from tuner_eval.data import Dataset, Problem
from tuner_eval.data.download import SCIENCEQA_CAPTIONS, SCIENCEQA_PROBLEMS, SCIENCEQA_SPLITS, fetch, sha256_file
from tuner.jsonl import InputError, read_json

LETTERS = "ABCDE"
_FIELDS = ("question", "choices", "answer", "hint", "image", "subject", "grade")


def _sibling_or_fetch(problems_path: Path | None, name: str, remote) -> Path:
    if problems_path is not None and (problems_path.parent / name).exists():
        return problems_path.parent / name
    return fetch(remote)


def context_text(record: dict, caption: str | None) -> str:
    parts = [record.get("hint") or "", caption or ""]
    return " ".join(p.strip() for p in parts if p and p.strip()) or "N/A"


def question_text(record: dict, caption: str | None) -> str:
    """The paper's "CQM" input: question, context and options."""
    options = " ".join(f"({LETTERS[i]}) {choice}" for i, choice in enumerate(record["choices"]))
    return (f"Question: {record['question']}\nContext: {context_text(record, caption)}\n"
            f"Options: {options}\n")


def load_scienceqa(path: Path | None = None, split: str = "test", use_captions: bool = True) -> Dataset:
    """Args:
        path: problems.json; pid_splits.json and captions.json are taken from the same folder when
            present there, otherwise fetched.
    """
    problems_path = path or fetch(SCIENCEQA_PROBLEMS)
    splits_path = _sibling_or_fetch(path, "pid_splits.json", SCIENCEQA_SPLITS)
    table = read_json(problems_path)
    splits = read_json(splits_path)
    if not isinstance(table, dict):
        raise InputError(f"{problems_path}:1: expected an object mapping pid -> problem")
    if not isinstance(splits, dict) or split not in splits:
        raise InputError(f"{splits_path}:1: no split `{split}` (have: {', '.join(sorted(splits))})")
    captions = {}
    if use_captions:
        captions_path = (path.parent / "captions.json") if path and (path.parent / "captions.json").exists() else None
        if captions_path is None and path is None:
            captions_path = fetch(SCIENCEQA_CAPTIONS)
        if captions_path is not None:
            captions = read_json(captions_path).get("captions", {})
    problems = {}
    for pid in splits[split]:
        pid = str(pid)
        if pid not in table:
            raise InputError(f"{splits_path}:1: split `{split}` lists pid {pid}, which {problems_path} lacks")
        record = table[pid]
        missing = [name for name in _FIELDS if name not in record]
        if missing:
            raise InputError(f"{problems_path}:1: problem {pid}: field `{missing[0]}` is missing")
        caption = captions.get(pid) if record.get("image") else None
        text = question_text(record, caption)
        problems[pid] = Problem(pid, text + "Answer: The answer is",
                                text + "Answer with the option's letter from the given choices directly.",
                                None, {**record, "pid": pid})
    return Dataset(problems, problems_path, sha256_file(problems_path), {"split": split,
                                                                         "captions": bool(captions)})
