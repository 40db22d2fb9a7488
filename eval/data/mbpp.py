"""MBPP (Austin et al., 2021): the full `mbpp.jsonl` or `sanitized-mbpp.json`; the test split is
task ids 11-510. MBPP+ (evalplus's release format) lives here too."""

from __future__ import annotations

from pathlib import Path

from tuner_eval.data import Dataset, Problem
from tuner_eval.data.download import MBPP, MBPP_PLUS, fetch, sha256_file
from tuner.jsonl import InputError, iter_json_records

TEST_IDS = range(11, 511)
FEW_SHOT_IDS = (2, 3, 4)
"""The prompt-split examples the MBPP paper's 3-shot prompt uses."""

_SHOT = "You are an expert Python programmer, and here is your task: {text} Your code should pass these tests:\n\n{tests}\n"


def _text(record: dict) -> str:
    return record.get("text") or record.get("prompt") or ""


def _shot(record: dict) -> str:
    return _SHOT.format(text=_text(record), tests="\n".join(record["test_list"]))


def _records(path: Path) -> list[tuple[int, dict]]:
    """mbpp.jsonl, or sanitized-mbpp.json (one pretty-printed JSON list), with each record's line."""
    return list(iter_json_records(path))


def load_mbpp(path: Path | None = None, task_ids: range | None = TEST_IDS) -> Dataset:
    """Problems whose base prompt is the paper's 3-shot prompt ending in "[BEGIN]"."""
    path = path or fetch(MBPP)
    records = {}
    for number, record in _records(path):
        for name in ("task_id", "code", "test_list"):
            if name not in record:
                raise InputError(f"{path}:{number}: field `{name}` is missing")
        if not _text(record):
            raise InputError(f"{path}:{number}: field `text` (or `prompt`) is missing")
        records[int(record["task_id"])] = record
    shots = "".join(_shot(records[i]) + f"[BEGIN]\n{records[i]['code']}\n[DONE]\n" for i in FEW_SHOT_IDS
                    if i in records)
    problems = {}
    for task_id, record in records.items():
        if task_ids is not None and task_id not in task_ids:
            continue
        instruction = f"{_text(record)}\nYour code should pass these tests:\n\n" + "\n".join(record["test_list"])
        problems[str(task_id)] = Problem(str(task_id), shots + _shot(record) + "[BEGIN]\n", instruction, None, record)
    return Dataset(problems, path, sha256_file(path), {"task_ids": f"{task_ids.start}-{task_ids.stop - 1}"}
                   if task_ids is not None else {})


# evalplus stores tuples, sets and complex numbers of some MBPP+ inputs as JSON lists and strings;
# these task ids get them back (the table follows evalplus's `mbpp_deserialize_inputs`).
_TUPLE_ARGS = {2, 116, 132, 143, 222, 261, 273, 394, 399, 421, 424, 429, 470, 560, 579, 596, 616, 630, 726,
               740, 744, 809}
_TUPLES_IN_LISTS = {63, 64, 70, 94, 120, 237, 272, 299, 400, 409, 417, 438, 473, 614, 780}
_FIRST_ARG_TUPLES_IN_LIST = {75, 413, 444, 753}
_FIRST_ARG_TUPLE = {250, 405, 446, 617, 720, 763, 808}
_NESTED_TUPLES = {259, 401, 445}
_ALL_TUPLES = {580, 615, 791}


def _deep_tuple(value):
    return tuple(_deep_tuple(v) for v in value) if isinstance(value, list) else value


def deserialize_mbpp_plus_inputs(task_id: str, inputs: list) -> list:
    number = int(str(task_id).split("/")[-1])
    if number in _TUPLE_ARGS:
        return [[tuple(arg) for arg in inp] for inp in inputs]
    if number in _TUPLES_IN_LISTS:
        return [[[tuple(x) for x in arg] for arg in inp] for inp in inputs]
    if number in _FIRST_ARG_TUPLES_IN_LIST:
        return [[[tuple(x) for x in inp[0]]] + [inp[1]] for inp in inputs]
    if number in (106, 750):
        return [[inp[0]] + [tuple(inp[1])] for inp in inputs]
    if number == 115:
        return [[[set(x) if isinstance(x, list) and x else {} for x in inp[0]]] for inp in inputs]
    if number == 124:
        return [(float(inp[0]), complex(inp[1])) for inp in inputs]
    if number in _FIRST_ARG_TUPLE:
        return [[tuple(inp[0])] + [inp[1]] for inp in inputs]
    if number in _NESTED_TUPLES:
        return [[tuple(tuple(x) for x in arg) for arg in inp] for inp in inputs]
    if number == 278:
        return [[tuple(tuple(x) if isinstance(x, list) else x for x in inp[0])] for inp in inputs]
    if number == 307:
        return [[tuple(inp[0])] + [inp[1], inp[2]] for inp in inputs]
    if number == 722:
        return [[{k: tuple(v) for k, v in inp[0].items()}] + inp[1:] for inp in inputs]
    if number == 252:
        return [[complex(inp[0])] for inp in inputs]
    if number in _ALL_TUPLES:
        return [_deep_tuple(inp) for inp in inputs]
    return inputs


def load_mbpp_plus(path: Path | None = None) -> Dataset:
    """MbppPlus.jsonl(.gz): task_id "Mbpp/N", prompt, entry_point, canonical_solution, base_input,
    plus_input, atol."""
    path = path or fetch(MBPP_PLUS)
    problems = {}
    for number, record in iter_json_records(path):
        for name in ("task_id", "prompt", "entry_point", "canonical_solution", "base_input", "plus_input", "atol"):
            if name not in record:
                raise InputError(f"{path}:{number}: field `{name}` is missing")
        record = dict(record)
        for group in ("base_input", "plus_input"):
            record[group] = deserialize_mbpp_plus_inputs(record["task_id"], record[group])
        prompt = record["prompt"]
        instruction = prompt.strip().strip("'\"").strip()
        problems[record["task_id"]] = Problem(record["task_id"], prompt, instruction, record["entry_point"], record)
    return Dataset(problems, path, sha256_file(path))
