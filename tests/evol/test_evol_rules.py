"""Elimination, deduplication, decontamination and heuristic choice on hand-made cases."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from tuner.evol.benchmarks import BenchmarkText, load_benchmark_file, load_humaneval, load_mbpp
from tuner.evol.decontaminate import BenchmarkIndex, DecontamConfig, decontaminate
from tuner.evol.dedup import DUPLICATE_EXACT, DUPLICATE_NEAR, DedupConfig, deduplicate
from tuner.evol.eliminate import (
    COPIES_TEMPLATE,
    EMPTY_INSTRUCTION,
    EMPTY_OR_SHORT_ANSWER,
    NO_NEW_INFORMATION,
    REFUSAL,
    TOO_LONG,
    EliminationRules,
    approximate_token_count,
    check_answer,
    check_instruction,
)
from tuner.evol.prompts import HEURISTICS, choose_heuristic, evolve_messages, judged_no_gain
from tuner.evol.records import Item

RULES = EliminationRules()
PARENT = "Write a Python function that returns the sum of a list of numbers."


def reason_of_instruction(child: str, parent: str = PARENT, rules: EliminationRules = RULES) -> str | None:
    verdict = check_instruction(parent, child, rules, approximate_token_count)
    return verdict.reason if verdict else None


def reason_of_answer(answer: str, rules: EliminationRules = RULES) -> str | None:
    verdict = check_answer(PARENT, answer, rules, approximate_token_count)
    return verdict.reason if verdict else None


def test_a_real_rewrite_passes_the_instruction_checks():
    harder = ("Write a Python function that returns the sum of a list of numbers, ignoring any "
              "value that is not an int or float and raising ValueError on an empty list.")
    assert reason_of_instruction(harder) is None


@pytest.mark.parametrize("child, reason", [
    ("", EMPTY_INSTRUCTION),
    ("   \n", EMPTY_INSTRUCTION),
    (PARENT, NO_NEW_INFORMATION),
    ("write a python function that returns the SUM of a list of numbers", NO_NEW_INFORMATION),
    ("Write a function that returns the sum of numbers.", NO_NEW_INFORMATION),
    ("#Rewritten Prompt#: Write a Python function that sums a list of floats in one pass.", COPIES_TEMPLATE),
    ("Here is the new exercise: sum a list of floats, skipping NaN values, in one pass.", COPIES_TEMPLATE),
    ("The given prompt asks for a sum; now also skip NaN values and return a float.", COPIES_TEMPLATE),
])
def test_failed_rewrites_are_eliminated_with_their_reason(child, reason):
    assert reason_of_instruction(child) == reason


def test_template_words_already_in_the_parent_do_not_count_as_copying():
    parent = "Write a program that prints the given prompt back to the user."
    child = "Write a program that prints the given prompt back to the user in reverse word order, uppercased."
    assert reason_of_instruction(child, parent) is None


def test_instruction_too_long_in_tokens():
    child = PARENT + " Also handle " + " ".join(f"case{i}" for i in range(40))
    assert reason_of_instruction(child, rules=EliminationRules(max_tokens=30)) == TOO_LONG


def test_a_real_answer_passes_the_answer_checks():
    assert reason_of_answer("def total(xs):\n    return sum(x for x in xs if isinstance(x, (int, float)))") is None


@pytest.mark.parametrize("answer", [
    "I'm sorry, but I cannot help with that request.",
    "As an AI language model, I cannot write code that does this.",
    "I apologize, but this task is not possible.",
    "Sorry, but that is ambiguous.",
])
def test_refusals_and_apologies_are_eliminated(answer):
    assert reason_of_answer(answer) == REFUSAL


def test_a_long_answer_that_apologises_late_is_kept():
    body = "def total(xs):\n    return sum(xs)\n" + "This adds every element of the list. " * 60
    assert reason_of_answer(body + "I'm sorry, but I cannot help noticing floats round.") is None


@pytest.mark.parametrize("answer", ["", "   ", "...", "!?!", "Yes.", "It is the one."])
def test_empty_punctuation_or_stop_word_answers_are_eliminated(answer):
    assert reason_of_answer(answer) == EMPTY_OR_SHORT_ANSWER


def test_answer_too_long_in_tokens():
    answer = "def f():\n" + "    x = 1\n" * 50
    assert reason_of_answer(answer, EliminationRules(max_tokens=100)) == TOO_LONG
    assert reason_of_answer(answer, EliminationRules(max_tokens=1000)) is None


def test_judge_reply_parsing():
    assert judged_no_gain("No")
    assert judged_no_gain("**No**, it is the same task.")
    assert not judged_no_gain("Yes")
    assert not judged_no_gain("Nothing new? Actually yes.")
    assert not judged_no_gain("icsicsics~~~")


def items(*instructions: str) -> list[Item]:
    return [Item(id=f"s{i}", instruction=t, output="pass", round=0) for i, t in enumerate(instructions)]


def test_dedup_exact_after_normalisation_and_near_duplicates():
    base = "Write a function that checks whether a string is a palindrome, ignoring case and spaces."
    kept, dropped = deduplicate(items(
        base,
        "  write a FUNCTION that checks whether a string is a palindrome,\n ignoring case and spaces. ",
        base.replace("ignoring case and spaces", "ignoring case and all spaces"),
        "Write a function that merges two sorted lists into one sorted list in linear time.",
    ), DedupConfig())
    assert [i.id for i in kept] == ["s0", "s3"]
    reasons = {item.id: (verdict.reason, verdict.detail) for item, verdict in dropped}
    assert reasons["s1"] == (DUPLICATE_EXACT, "same instruction as s0")
    assert reasons["s2"][0] == DUPLICATE_NEAR and reasons["s2"][1].endswith("with s0")


def test_dedup_keeps_different_tasks_with_shared_phrasing():
    kept, dropped = deduplicate(items(
        "Write a Python function to find the maximum element of a list of integers.",
        "Write a Python function to find the minimum element of a list of integers.",
        "Write a Python function to find the second largest element of a list of integers.",
    ), DedupConfig())
    assert len(kept) == 3 and not dropped


def test_near_duplicate_detection_can_be_switched_off():
    base = "Write a function that checks whether a string is a palindrome, ignoring case and spaces."
    near = base.replace("ignoring case and spaces", "ignoring case and all spaces")
    kept, _ = deduplicate(items(base, near), DedupConfig(near_threshold=1.01))
    assert len(kept) == 2


@pytest.fixture(scope="module")
def benchmark_index(shared_data):
    humaneval, _ = load_humaneval()
    mbpp, _ = load_mbpp(shared_data / "mbpp" / "mbpp.jsonl")
    return BenchmarkIndex(humaneval + mbpp, DecontamConfig()), humaneval


def test_a_pasted_humaneval_prompt_is_caught_and_named(benchmark_index):
    index, humaneval = benchmark_index
    prompt = next(t.text for t in humaneval if t.task_id == "HumanEval/0" and t.field == "prompt")
    # Re-indented and embedded in other text: still the same tokens.
    pasted = "Complete this function:\n" + prompt.replace("    ", "\t")
    clean_text = ("Write a function that takes a list of file names and groups them by extension, "
                  "returning a dict from extension to a sorted list of names.")
    kept, dropped, matches = decontaminate(
        [Item("s0", pasted, "pass", 0), Item("s1", clean_text, "def group(names): ...", 0)], index)
    assert [i.id for i in kept] == ["s1"]
    assert dropped[0][1].detail.startswith("humaneval HumanEval/0 prompt")
    assert {(m.benchmark, m.task_id) for m in matches} == {("humaneval", "HumanEval/0")}


def test_an_mbpp_solution_in_an_answer_is_caught(benchmark_index, shared_data):
    index, _ = benchmark_index
    record = json.loads((shared_data / "mbpp" / "mbpp.jsonl").read_text().splitlines()[0])
    item = Item("s0", "Find the cheapest path through a grid.", record["code"], 0)
    found = index.matches(item)
    assert found and found[0].benchmark == "mbpp" and found[0].task_id == str(record["task_id"])
    assert found[0].field == "code"


def test_a_paraphrase_of_nothing_is_not_caught(benchmark_index):
    index, _ = benchmark_index
    unrelated = [
        Item("s0", "Write a Python function to find the maximum element of a list.",
             "def find_max(xs):\n    return max(xs)", 0),
        Item("s1", "Given an array of integers, print every element that is larger than the one before it.",
             "for i in range(1, len(arr)):\n    if arr[i] > arr[i - 1]:\n        print(arr[i])", 0),
    ]
    assert all(index.matches(item) == [] for item in unrelated)


def test_extra_benchmark_file_is_used_and_bad_records_name_their_line(tmp_path):
    good = tmp_path / "private_bench.jsonl"
    good.write_text(json.dumps({"task_id": "P/1", "prompt": "Implement a trie with insert, search and "
                                "starts_with methods where every method runs in time linear in the key"}) + "\n")
    texts, source = load_benchmark_file(good)
    index = BenchmarkIndex(texts, DecontamConfig())
    item = Item("s0", "Please implement a trie with insert, search and starts_with methods where every "
                "method runs in time linear in the key length.", "class Trie: ...", 0)
    assert [(m.benchmark, m.task_id) for m in index.matches(item)] == [("private_bench.jsonl", "P/1")]
    assert source.texts == 1

    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"prompt": "x" * 20}) + "\n" + json.dumps({"tests": "assert f()"}) + "\n")
    with pytest.raises(ValueError, match=r"bad\.jsonl:2: record has none of the text fields"):
        load_benchmark_file(bad)


def test_short_benchmark_texts_are_skipped_not_matched_everywhere():
    index = BenchmarkIndex([BenchmarkText("b", "1", "solution", "return a + b")], DecontamConfig())
    assert index.skipped_short == 1
    assert index.matches(Item("s0", "add", "def add(a, b):\n    return a + b", 0)) == []


def test_heuristic_choice_is_reproducible_and_covers_all_five():
    picks = [choose_heuristic(7, 1, f"s{i}").name for i in range(2000)]
    assert picks == [choose_heuristic(7, 1, f"s{i}").name for i in range(2000)]
    counts = Counter(picks)
    assert set(counts) == {h.name for h in HEURISTICS}
    # "rarely": the complexity heuristic is drawn a quarter as often as each of the others.
    assert counts["higher_complexity"] < 0.5 * min(c for n, c in counts.items() if n != "higher_complexity")
    assert picks != [choose_heuristic(8, 1, f"s{i}").name for i in range(2000)]


def test_evolve_prompt_carries_the_method_and_the_exercise():
    heuristic = HEURISTICS[3]
    [message] = evolve_messages(heuristic, "  Reverse a string.  ")
    assert message["role"] == "user"
    assert heuristic.method in message["content"]
    assert message["content"].endswith("Reverse a string.")
