"""From generated text to the code (or answer) that gets evaluated.

Base-model completions are cut at the task's stop sequences (backends already stop there; this
repeats the rule for samples made elsewhere). Instruction-model responses usually wrap code in
markdown fences, with prose around it, sometimes several blocks, sometimes an unterminated fence
when the token budget ran out.
"""

from __future__ import annotations

import re
from typing import Sequence

from tuner.generation.stops import truncate_at_stop

_FENCE = re.compile(r"```[ \t]*([A-Za-z0-9_+-]*)[^\n]*\n(.*?)(?:```|\Z)", re.DOTALL)
_CODE_START = re.compile(r"^(def |class |import |from |@|async def |[A-Za-z_][A-Za-z0-9_]* *=)", re.MULTILINE)
_NON_PYTHON = {"bash", "sh", "shell", "console", "text", "json", "output", "javascript", "js", "cpp", "java"}


def truncate(text: str, stops: Sequence[str]) -> str:
    return truncate_at_stop(text, stops)[0]


def code_blocks(text: str) -> list[str]:
    """Fenced code blocks in order (an unterminated last fence runs to the end of the text),
    leaving out blocks labelled as another language."""
    return [body for lang, body in _FENCE.findall(text) if lang.lower() not in _NON_PYTHON]


def extract_code(text: str, entry_point: str | None = None) -> str:
    """The code an instruction-following model meant.

    The first fenced block that defines `entry_point`; else the first fenced block; else, for
    unfenced text, everything from the first line that looks like code.
    """
    blocks = code_blocks(text)
    if entry_point:
        pattern = re.compile(rf"^\s*(async\s+)?def\s+{re.escape(entry_point)}\s*\(", re.MULTILINE)
        for block in blocks:
            if pattern.search(block):
                return block.rstrip() + "\n"
    if blocks:
        return blocks[0].rstrip() + "\n"
    start = _CODE_START.search(text)
    return (text[start.start():] if start else text).rstrip() + "\n"


def defines(code: str, name: str) -> bool:
    return re.search(rf"^\s*(async\s+)?def\s+{re.escape(name)}\s*\(", code, re.MULTILINE) is not None


def header_imports(prompt: str) -> str:
    """The import lines of a HumanEval-style prompt (`from typing import List`, ...), which a
    model's stand-alone answer often leaves out."""
    return "".join(line + "\n" for line in prompt.splitlines() if re.match(r"^(import|from)\s+\S", line))


_ANSWER = re.compile(r"[Tt]he answer is:?\s*\(?([A-E])\b")
_LEADING_LETTER = re.compile(r"^\s*\(?([A-E])\)?(?:[.:)\s]|$)")


def extract_choice(text: str) -> str | None:
    """The option letter in a multiple-choice answer ("The answer is B." or a bare "(B)")."""
    match = _ANSWER.search(text) or _LEADING_LETTER.search(text)
    return match.group(1) if match else None


def clean_caption(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[0] if lines else ""
