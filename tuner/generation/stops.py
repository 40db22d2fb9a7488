"""Stop-string handling shared by the backends that do not do it server-side."""

from __future__ import annotations

from typing import Sequence


def truncate_at_stop(text: str, stop: Sequence[str]) -> tuple[str, bool]:
    """Cut `text` before the earliest occurrence of any stop string.

    This is vLLM's rule (`include_stop_str_in_output=False`): the stop string itself is dropped and
    only the generated text is searched, never the prompt.

    Returns:
        The kept text and whether a stop string was found.
    """
    cut = min((i for i in (text.find(s) for s in stop if s) if i >= 0), default=-1)
    if cut < 0:
        return text, False
    return text[:cut], True


def greedy_repeats(n: int, temperature: float) -> tuple[int, int]:
    """How many sequences to decode and how many times to repeat each.

    Greedy decoding gives the same text every time, so `n` greedy samples are one decode repeated.
    """
    if temperature == 0 and n > 1:
        return 1, n
    return n, 1
