"""Elimination rules for evolved items (WizardLM, arXiv:2304.12244, section 3.3, adapted to code).

Instruction checks run before the teacher is asked for an answer, so a failed rewrite costs no
answer call; answer checks run after. Each failing check returns a `Verdict` whose `reason` is one
of the constants below, which the report counts.
"""

from __future__ import annotations

import re
import string
from dataclasses import dataclass
from typing import Callable

from tuner.evol.prompts import TEMPLATE_MARKERS
from tuner.evol.text import code_tokens, normalize, words

TEACHER_ERROR = "teacher_error"
EMPTY_INSTRUCTION = "empty_instruction"
COPIES_TEMPLATE = "copies_template"
NO_NEW_INFORMATION = "no_new_information"
JUDGED_NO_GAIN = "judged_no_gain"
REFUSAL = "refusal"
EMPTY_OR_SHORT_ANSWER = "empty_or_short_answer"
TOO_LONG = "too_long"

TokenCounter = Callable[[str], int]

# Function words that carry no content: an answer made only of these (and punctuation) is empty.
STOP_WORDS = frozenset(
    "a an the and or but if then else of to in on at by for with from as is are was were be been "
    "being it its this that these those there here i you he she we they me him her us them my your "
    "our their so not no yes do does did done can could will would shall should may might must "
    "ok okay sure well also just very".split()
)

_REFUSAL = re.compile(
    r"\b(i'?m sorry|i am sorry|sorry, but|i apologi[sz]e|my apologies|as an ai\b|as a language model"
    r"|i (?:cannot|can'?t|am unable to|am not able to|'m unable to|'m not able to) "
    r"(?:help|assist|provide|complete|fulfil|do|write|answer|comply))",
    re.IGNORECASE,
)


@dataclass
class Verdict:
    reason: str
    detail: str


@dataclass
class EliminationRules:
    """Thresholds of the elimination checks."""

    min_new_words: int = 3
    """An evolved instruction must contain at least this many words its parent lacks."""
    min_answer_words: int = 2
    """An answer needs at least this many words besides stop words and punctuation."""
    refusal_window_chars: int = 300
    """An apology or refusal this close to the start eliminates the answer whatever its length."""
    refusal_max_words: int = 80
    """Further in, it eliminates only answers shorter than this (the WizardLM rule)."""
    max_tokens: int = 2048
    """Instruction plus answer must fit the training length."""

    def __post_init__(self) -> None:
        for name in ("min_new_words", "min_answer_words", "refusal_window_chars", "refusal_max_words"):
            if getattr(self, name) < 0:
                raise ValueError(f"`{name}` must be >= 0, got {getattr(self, name)}")
        if self.max_tokens < 1:
            raise ValueError(f"`max_tokens` must be >= 1, got {self.max_tokens}")


def check_instruction(
    parent: str, instruction: str, rules: EliminationRules, count_tokens: TokenCounter
) -> Verdict | None:
    """Why an evolved instruction should be dropped before it is answered, or None to keep it."""
    if not instruction.strip():
        return Verdict(EMPTY_INSTRUCTION, "the teacher returned no text")
    parent_lower, lower = normalize(parent), normalize(instruction)
    copied = [m for m in TEMPLATE_MARKERS if m in lower and m not in parent_lower]
    if copied:
        return Verdict(COPIES_TEMPLATE, f"contains {copied[0]!r}")
    if lower == parent_lower:
        return Verdict(NO_NEW_INFORMATION, "identical to its parent")
    new_words = set(words(instruction)) - set(words(parent))
    if len(new_words) < rules.min_new_words:
        return Verdict(NO_NEW_INFORMATION, f"adds {len(new_words)} new words (< {rules.min_new_words})")
    tokens = count_tokens(instruction)
    if tokens > rules.max_tokens:
        return Verdict(TOO_LONG, f"instruction has {tokens} tokens (> {rules.max_tokens})")
    return None


def check_answer(
    instruction: str, answer: str, rules: EliminationRules, count_tokens: TokenCounter
) -> Verdict | None:
    """Why an answered item should be dropped, or None to keep it."""
    answer_words = words(answer)
    content = [w for w in answer_words if w not in STOP_WORDS]
    if len(content) < rules.min_answer_words:
        stripped = answer.strip()
        if not stripped:
            detail = "empty"
        elif all(c in string.punctuation or c.isspace() for c in stripped):
            detail = "only punctuation"
        else:
            detail = f"{len(content)} content words (< {rules.min_answer_words})"
        return Verdict(EMPTY_OR_SHORT_ANSWER, detail)
    refusal = _REFUSAL.search(answer.replace("\u2019", "'"))
    if refusal and (refusal.start() < rules.refusal_window_chars or len(answer_words) < rules.refusal_max_words):
        return Verdict(REFUSAL, f"says {refusal.group(0)!r}")
    tokens = count_tokens(instruction) + count_tokens(answer)
    if tokens > rules.max_tokens:
        return Verdict(TOO_LONG, f"instruction and answer have {tokens} tokens (> {rules.max_tokens})")
    return None


def approximate_token_count(text: str) -> int:
    """Words and punctuation marks: a stand-in when no tokenizer is given (BPE counts run higher)."""
    return len(code_tokens(text))


def make_token_counter(tokenizer_path: str | None) -> tuple[TokenCounter, str]:
    """A token counter and a name for the report: the model's tokenizer when a path is given."""
    if tokenizer_path is None:
        return approximate_token_count, "approximate (words and punctuation)"
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_path)

    def count(text: str) -> int:
        return len(tokenizer(text, add_special_tokens=False)["input_ids"])

    return count, f"tokenizer of {tokenizer_path}"
