"""HumanEval+, MBPP and MBPP+ through the harness, on the shared benchmark copies."""

from __future__ import annotations

import gzip
import json

import pytest

from tuner_eval.evaluate import evaluate
from tuner_eval.sandbox import SandboxConfig

from eval_helpers import write_samples

pytestmark = pytest.mark.slow

# evalplus's reduced test-suite release: all 164 tasks, base inputs plus the plus inputs that keep
# the full suite's power to tell right from wrong. The full file takes minutes on two cores
# (measured in the report); set TUNER_EVAL_FULL_EVALPLUS=1 to run it here instead.
HUMANEVAL_PLUS_FILE = "HumanEvalPlus-Mini.jsonl.gz"

# Plausible bugs that pass HumanEval's own tests but not HumanEval+'s.
KNOWN_WRONG = {
    # `<=` where the task says "closer than": only the plus inputs hit the boundary.
    "HumanEval/0": ("    for i, a in enumerate(numbers):\n        for j, b in enumerate(numbers):\n"
                    "            if i != j and abs(a - b) <= threshold:\n                return True\n"
                    "    return False\n"),
    # Bytes instead of characters: only the plus inputs have non-ASCII text.
    "HumanEval/23": "    return len(string.encode())\n",
}


@pytest.fixture(scope="module")
def humaneval_plus_path(shared_data):
    import os

    name = "HumanEvalPlus.jsonl.gz" if os.environ.get("TUNER_EVAL_FULL_EVALPLUS") else HUMANEVAL_PLUS_FILE
    return shared_data / "humanevalplus_v0.1.10" / name


def test_humaneval_plus_canonical_solutions_pass_base_and_plus_and_known_wrong_fail_plus(humaneval_plus_path,
                                                                                         tmp_path):
    rows = [json.loads(line) for line in gzip.open(humaneval_plus_path, "rt")]
    records = [{"task_id": r["task_id"], "sample_index": 0, "solution": r["prompt"] + r["canonical_solution"]}
               for r in rows]
    records += [{"task_id": t, "sample_index": 1, "completion": c} for t, c in KNOWN_WRONG.items()]
    samples = write_samples(tmp_path / "samples.jsonl", records)
    results = evaluate("humaneval+", samples, humaneval_plus_path, ks=[1], sandbox_config=SandboxConfig(workers=2),
                       show_progress=False)
    assert len(results["per_task"]) == 164
    for task_id, entry in results["per_task"].items():
        assert entry["verdicts"][0] == "pass" and entry["base_verdicts"][0] == "pass", (task_id, entry)
    for task_id in KNOWN_WRONG:
        entry = results["per_task"][task_id]
        assert entry["base_verdicts"][1] == "pass" and entry["verdicts"][1] == "fail", (task_id, entry)
    assert results["pass@k (base tests only)"]["pass@1"] == 1.0


def test_mbpp_reference_code_passes_for_the_500_test_tasks(shared_data, tmp_path):
    rows = [json.loads(line) for line in open(shared_data / "mbpp" / "mbpp.jsonl")]
    records = [{"task_id": r["task_id"], "solution": r["code"]} for r in rows if 11 <= r["task_id"] <= 510]
    # The same tasks with an answer that is wrong for each: the tests must be able to fail.
    records += [{"task_id": r["task_id"], "sample_index": 1, "solution": "def unrelated():\n    return 0\n"}
                for r in rows if 11 <= r["task_id"] <= 60]
    samples = write_samples(tmp_path / "samples.jsonl", records)
    results = evaluate("mbpp", samples, shared_data / "mbpp" / "mbpp.jsonl", ks=[1],
                       sandbox_config=SandboxConfig(workers=2), show_progress=False)
    assert len(results["per_task"]) == 500
    assert results["dataset"]["task_ids"] == "11-510"
    for task_id, entry in results["per_task"].items():
        assert entry["verdicts"][0] == "pass", (task_id, entry)
        assert entry["verdicts"][1:] in ([], ["fail"]), (task_id, entry)


def test_mbpp_sanitized_file_loads_the_test_split_and_its_code_passes(shared_data, tmp_path):
    path = shared_data / "mbpp" / "sanitized-mbpp.json"
    rows = json.loads(path.read_text())
    records = [{"task_id": r["task_id"], "solution": r["code"]} for r in rows if 11 <= r["task_id"] <= 510]
    samples = write_samples(tmp_path / "samples.jsonl", records[::6])
    results = evaluate("mbpp", samples, path, ks=[1], sandbox_config=SandboxConfig(workers=2), show_progress=False)
    assert len(results["per_task"]) == len(records[::6]) > 30
    assert results["dataset"]["problems"] == len(records)
    assert all(entry["verdicts"] == ["pass"] for entry in results["per_task"].values()), results["verdict_counts"]


# Tasks with special oracles (set equality, always-true, zero, pyramid area, digit distance) and
# with inputs evalplus stores as lists but passes as tuples, sets or complex numbers.
MBPP_PLUS_TASKS = [2, 7, 63, 115, 124, 164, 252, 259, 278, 295, 558, 580, 581, 722]


def test_mbpp_plus_canonical_solutions_pass_including_special_oracles(shared_data, tmp_path):
    path = shared_data / "mbppplus_pre_v0.2.0" / "MbppPlus.jsonl"
    rows = {json.loads(line)["task_id"]: json.loads(line) for line in open(path)}
    records = [{"task_id": f"Mbpp/{n}", "solution": rows[f"Mbpp/{n}"]["canonical_solution"]} for n in MBPP_PLUS_TASKS]
    # Mbpp/2 compares as sets: the same elements in another order still pass; a missing one fails.
    records.append({"task_id": "Mbpp/2", "sample_index": 1,
                    "solution": "def similar_elements(a, b):\n    return tuple(sorted(set(a) & set(b), reverse=True))\n"})
    records.append({"task_id": "Mbpp/2", "sample_index": 2,
                    "solution": "def similar_elements(a, b):\n    return tuple(sorted(set(a) & set(b))[1:])\n"})
    samples = write_samples(tmp_path / "samples.jsonl", records)
    results = evaluate("mbpp+", samples, path, ks=[1], sandbox_config=SandboxConfig(workers=2), show_progress=False)
    for task_id, entry in results["per_task"].items():
        assert entry["verdicts"][0] == "pass", (task_id, entry)
    assert results["per_task"]["Mbpp/2"]["verdicts"] == ["pass", "pass", "fail"]
