"""One JSONL reader (`tuner.jsonl`) for training data, Evol-Instruct seeds and the harness's
samples: the same error class and the same file:line messages from all three."""

from __future__ import annotations

import gzip
import json

import pytest

from tuner.jsonl import InputError, JsonlAppender, iter_json_records


def _bad_second_line(path):
    path.write_text(json.dumps({"instruction": "a", "output": "b", "task_id": "HumanEval/0", "completion": "x"})
                    + "\n{not json\n")
    return path


def test_data_evol_and_eval_read_through_the_one_reader(tmp_path):
    from tuner.data.records import read_records
    from tuner.evol.records import load_seed
    from tuner_eval.samples import read_samples
    from tuner_eval.tasks import get_task

    path = _bad_second_line(tmp_path / "bad.jsonl")
    task = get_task("humaneval")
    readers = {"data": lambda: list(read_records(path)), "evol": lambda: load_seed(path),
               "eval": lambda: read_samples(path, task, task.load(None))}
    for name, read in readers.items():
        with pytest.raises(InputError) as caught:
            read()
        assert str(caught.value).startswith(f"{path}:2: malformed JSON"), (name, caught.value)
        assert caught.value.path == str(path) and caught.value.line == 2, name


def test_arrays_gzip_and_torn_tails(tmp_path):
    array = tmp_path / "a.json"
    array.write_text('[\n  {"a": 1},\n\n  {"a": 2}\n]\n')
    assert list(iter_json_records(array)) == [(2, {"a": 1}), (4, {"a": 2})]
    array.write_text('[\n  {"a": 1},\n  [2]\n]\n')
    with pytest.raises(InputError, match=r"a\.json:3: expected a JSON object, got list"):
        list(iter_json_records(array))
    packed = tmp_path / "p.jsonl.gz"
    with gzip.open(packed, "wt") as handle:
        handle.write('{"a": 1}\n\n{"a": 2}\n')
    assert [n for n, _ in iter_json_records(packed)] == [1, 3]
    torn = tmp_path / "t.jsonl"
    with JsonlAppender(torn) as out:
        out.write({"a": 1})
    torn.write_text(torn.read_text() + '{"a": ')
    assert list(iter_json_records(torn, tolerate_torn_tail=True)) == [(1, {"a": 1})]
    with pytest.raises(InputError, match=r"t\.jsonl:2: malformed JSON"):
        list(iter_json_records(torn))
    with pytest.raises(InputError, match=r"missing\.jsonl: no such file"):
        list(iter_json_records(tmp_path / "missing.jsonl"))
