"""ScienceQA, COCO Caption and DS-1000 on small fixtures written in their official formats."""

from __future__ import annotations

import shutil

import pytest

from tuner_eval.evaluate import evaluate
from tuner.jsonl import InputError
from tuner_eval.sandbox import SandboxConfig
from tuner_eval.tasks import get_task

from eval_helpers import write_samples


def test_scienceqa_accuracy_overall_and_by_subject_context_and_grade(fixtures, tmp_path):
    problems = fixtures / "scienceqa" / "problems.json"
    dataset = get_task("scienceqa").load(problems)
    assert list(dataset.problems) == ["1001", "1002", "1003", "1004", "1005"]  # the test split only
    assert "Context: Moles live underground. A mole digging in the dirt." in dataset.problems["1003"].prompt
    assert "Options: (A) Austin (B) Dallas (C) Houston (D) Phoenix" in dataset.problems["1004"].prompt
    assert dataset.problems["1001"].prompt.endswith("Context: N/A\nOptions: (A) bluff (B) butter\nAnswer: The answer is")
    samples = write_samples(tmp_path / "samples.jsonl", [
        {"task_id": "1001", "completion": "The answer is A."},      # right, LAN, no context, G1-6
        {"task_id": "1002", "completion": "The answer is A."},      # wrong, LAN, no context, G7-12
        {"task_id": "1003", "completion": "(A) mole"},              # right, NAT, text + image, G1-6
        {"task_id": "1004", "completion": "I am not sure."},        # unparsable = wrong, SOC, image, G1-6
        {"task_id": 1005, "completion": "The answer is B"},         # right, NAT, text, G7-12 (integer id)
    ])
    results = evaluate("scienceqa", samples, problems, ks=[1])
    accuracy = {group: entry["accuracy"] for group, entry in results["accuracy"].items()}
    assert accuracy == pytest.approx({
        "overall": 3 / 5, "subject:LAN": 1 / 2, "subject:NAT": 1.0, "subject:SOC": 0.0,
        "context:NO": 1 / 2, "context:TXT": 1.0, "context:IMG": 1 / 2, "grade:G1-6": 2 / 3, "grade:G7-12": 1 / 2})
    assert results["pass@k"] == {"pass@1": pytest.approx(3 / 5)}
    assert results["unparsed_answers"] == 1 and results["per_task"]["1004"]["answers"] == [None]


def test_scienceqa_split_names_are_checked(fixtures, tmp_path):
    with pytest.raises(InputError, match="no split `dev`"):
        from tuner_eval.data.scienceqa import load_scienceqa

        load_scienceqa(fixtures / "scienceqa" / "problems.json", split="dev")


def test_coco_captions_bleu4_and_cider(fixtures, tmp_path):
    if shutil.which("java") is None:
        pytest.skip("pycocoevalcap's PTB tokenizer needs a Java runtime")
    data = fixtures / "dataset_coco.json"
    samples = write_samples(tmp_path / "samples.jsonl", [
        {"task_id": "391895", "completion": "A man riding on the back of a motorcycle."},   # a reference itself
        {"task_id": "522418", "completion": "A woman cutting a large white sheet cake."},  # a reference itself
        {"task_id": "184613", "completion": "A restaurant has modern wooden tables."},     # unrelated
    ])
    results = evaluate("coco-caption", samples, data)
    assert results["images_scored"] == 3 and results["images_in_split"] == 3  # the train image is left out
    per_image = {i: e["CIDEr"] for i, e in results["per_task"].items()}
    assert per_image["184613"] < 0.1 < per_image["391895"] and per_image["522418"] > 0.1
    assert 0 < results["metrics"]["BLEU-4"] < 1 and results["metrics"]["CIDEr"] > 0
    perfect = write_samples(tmp_path / "perfect.jsonl", [
        {"task_id": "391895", "completion": "A man riding on the back of a motorcycle."},
        {"task_id": "522418", "completion": "A woman cutting a large white sheet cake."},
        {"task_id": "184613", "completion": "A child holding a flowered umbrella and petting a yak."}])
    assert evaluate("coco-caption", perfect, data)["metrics"]["BLEU-4"] == pytest.approx(1.0)


@pytest.mark.slow
def test_ds1000_runs_installed_libraries_and_skips_missing_ones(fixtures, tmp_path):
    data = fixtures / "ds1000.jsonl"
    samples = write_samples(tmp_path / "samples.jsonl", [
        {"task_id": "0", "completion": "result = a.shape\n</code>\nEND SOLUTION"},   # the reference answer
        {"task_id": "0", "completion": "result = a.size\n"},                        # wrong value
        {"task_id": "0", "completion": "result = None\nfor x in [1]:\n    result = a.shape\n"},  # test_string rejects loops
        {"task_id": "0", "completion": "import os\nos._exit(0)\n"},                  # exits early: not a pass
        {"task_id": "0", "completion": "import numpy.testing\nnumpy.testing.assert_array_equal = lambda *a: None\n"
                                       "result = None\n"},                       # patches the check: not a pass
        {"task_id": "1", "completion": "result = a.shape\n"},                        # pandas is not installed here
    ])
    results = evaluate("ds1000", samples, data, ks=[1], sandbox_config=SandboxConfig(workers=2),
                       show_progress=False)
    assert results["per_task"]["0"]["verdicts"] == ["pass", "fail", "fail", "fail", "fail"]
    import importlib.util

    if importlib.util.find_spec("pandas") is None:
        assert results["per_task"]["1"]["verdicts"] == ["skipped"]
        assert results["skipped_tasks"] == ["1"] and results["tasks_scored"] == 1
        assert results["pass@k"] == {"pass@1": pytest.approx(0.2)}
