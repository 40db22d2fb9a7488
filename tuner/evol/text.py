"""Text normalisation and tokenisation shared by elimination, deduplication and decontamination."""

from __future__ import annotations

import re
import unicodedata

_WORD = re.compile(r"\w+")
_CODE_TOKEN = re.compile(r"\w+|[^\w\s]")
_SPACE = re.compile(r"\s+")


def normalize(text: str) -> str:
    """Unicode-compatible, case-folded, with every run of whitespace made one space."""
    return _SPACE.sub(" ", unicodedata.normalize("NFKC", text).casefold()).strip()


def words(text: str) -> list[str]:
    """The alphanumeric words of `text`, case-folded."""
    return _WORD.findall(normalize(text))


def code_tokens(text: str) -> list[str]:
    """Words and single punctuation marks, case-folded: whitespace and indentation do not count."""
    return _CODE_TOKEN.findall(normalize(text))


def ngrams(tokens: list[str], n: int) -> set[tuple[str, ...]]:
    """The set of contiguous `n`-token windows; a text shorter than `n` gives itself as one."""
    if len(tokens) < n:
        return {tuple(tokens)} if tokens else set()
    return {tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1)}
