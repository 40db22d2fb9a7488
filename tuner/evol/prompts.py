"""Every text the teacher sees during evolution, in one place.

The five evolution heuristics follow WizardCoder (Luo et al., 2023, arXiv:2306.08568, section 3),
which adapted Evol-Instruct (Xu et al., 2023, arXiv:2304.12244) to code. The wording here is our
own. Raising the time or space complexity bar is asked for "rarely" in the paper; we express that
as a lower sampling weight instead of asking the teacher to hold back.

`TEMPLATE_MARKERS` lists phrases of these prompts that a well-behaved rewrite never contains: an
evolved instruction that copies one is eliminated (`eliminate.copies_template`).
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass

from tuner.generation import Message


@dataclass(frozen=True)
class Heuristic:
    """One way of making a programming task harder."""

    name: str
    method: str
    """The sentence inserted into `EVOLVE_TEMPLATE` to tell the teacher what to change."""
    weight: float
    """Relative probability of being chosen for an item."""


HEURISTICS: tuple[Heuristic, ...] = (
    Heuristic(
        name="add_constraints",
        method=(
            "Extend the task with one or two further requirements or constraints that the "
            "solution has to satisfy, using about ten to twenty extra words."
        ),
        weight=1.0,
    ),
    Heuristic(
        name="specific_requirement",
        method=(
            "Pick a requirement that most programming exercises share and swap it for a rarer, "
            "more specific one, so that a stock solution no longer fits."
        ),
        weight=1.0,
    ),
    Heuristic(
        name="more_reasoning",
        method=(
            "If the task can be finished in only a couple of obvious steps, restate it so that "
            "solving it takes several steps of reasoning that build on each other."
        ),
        weight=1.0,
    ),
    Heuristic(
        name="erroneous_code",
        method=(
            "Add a short piece of code that looks like a plausible attempt but contains a bug, "
            "and present it as a reference, so that the solver has to spot the mistake instead "
            "of copying it."
        ),
        weight=1.0,
    ),
    Heuristic(
        name="higher_complexity",
        method=(
            "Demand a stricter bound on running time or memory use than a straightforward "
            "solution would meet."
        ),
        weight=0.25,
    ),
)

HEURISTICS_BY_NAME: dict[str, Heuristic] = {h.name: h for h in HEURISTICS}

EVOLVE_TEMPLATE = """\
Make the following programming exercise somewhat harder.

How to make it harder: {method}

The new exercise must stand on its own and still be solvable. Reply with the new exercise \
only: no heading, no introduction, no solution and no remarks about what you changed.

Exercise:
{instruction}"""

JUDGE_TEMPLATE = """\
Compare two programming exercises.

First exercise:
{parent}

Second exercise:
{child}

Does the second exercise ask for anything that the first one does not, such as an extra \
requirement, a constraint, or more steps? Answer with a single word, Yes or No."""

# Phrases from the prompts above (and the ones the original Evol-Instruct prompts used, which
# teachers trained on that data like to reproduce) that must not leak into an evolved exercise.
TEMPLATE_MARKERS: tuple[str, ...] = (
    "#rewritten",
    "#given prompt",
    "rewritten prompt",
    "given prompt",
    "#created prompt",
    "new exercise",
    "first exercise",
    "second exercise",
    "how to make it harder",
    "make the following programming exercise",
    "programming test question",
)


def choose_heuristic(seed_value: int, round_index: int, parent_id: str) -> Heuristic:
    """Pick the heuristic for one item, reproducibly.

    The choice depends only on the run's seed, the round and the parent, never on the order in
    which items are processed, so a resumed run picks exactly what the interrupted one did.
    """
    rng = random.Random(f"{seed_value}:{round_index}:{parent_id}")
    return rng.choices(HEURISTICS, weights=[h.weight for h in HEURISTICS], k=1)[0]


def evolve_messages(heuristic: Heuristic, instruction: str) -> list[Message]:
    """The chat turn asking the teacher to rewrite `instruction` with `heuristic`."""
    text = EVOLVE_TEMPLATE.format(method=heuristic.method, instruction=instruction.strip())
    return [{"role": "user", "content": text}]


def answer_messages(instruction: str) -> list[Message]:
    """The chat turn asking the teacher to solve an evolved exercise."""
    return [{"role": "user", "content": instruction.strip()}]


def judge_messages(parent: str, child: str) -> list[Message]:
    """The chat turn asking the teacher whether `child` adds anything over `parent`."""
    return [{"role": "user", "content": JUDGE_TEMPLATE.format(parent=parent.strip(), child=child.strip())}]


def judged_no_gain(answer: str) -> bool:
    """True when the teacher's reply to `judge_messages` says the rewrite adds nothing.

    Only a reply that starts with "No" counts; anything else (including nonsense) keeps the item,
    so a confused judge cannot silently empty a round.
    """
    return re.match(r"[\s*#\"']*no\b", answer, flags=re.IGNORECASE) is not None
