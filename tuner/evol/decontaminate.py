"""Decontamination: drop items that contain a benchmark's prompt or solution.

Texts are compared as sequences of words and punctuation marks (case and whitespace ignored, so
re-indented code still matches). An item is contaminated by a benchmark text when it contains at
least `threshold` of that text's `n`-token windows: a pasted prompt or solution scores near 1, an
instruction that merely shares stock phrases ("write a function that returns") scores near 0.
Benchmark texts shorter than `n` tokens are too short to tell apart from common code and are
skipped; the report counts them.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from tuner.evol.benchmarks import BenchmarkText
from tuner.evol.eliminate import Verdict
from tuner.evol.records import Item
from tuner.evol.text import code_tokens, ngrams

CONTAMINATED = "contaminated"


@dataclass
class DecontamConfig:
    ngram: int = 10
    threshold: float = 0.5

    def __post_init__(self) -> None:
        if self.ngram < 1:
            raise ValueError(f"`ngram` must be >= 1, got {self.ngram}")
        if not 0 < self.threshold <= 1:
            raise ValueError(f"`threshold` must be in (0, 1], got {self.threshold}")


@dataclass(frozen=True)
class Match:
    item: str
    benchmark: str
    task_id: str
    field: str
    overlap: float
    """Fraction of the benchmark text's n-grams found in the item."""

    def to_dict(self) -> dict:
        return {"item": self.item, "benchmark": self.benchmark, "task_id": self.task_id,
                "field": self.field, "overlap": round(self.overlap, 4)}


class BenchmarkIndex:
    """An inverted index from n-gram to the benchmark texts containing it."""

    def __init__(self, texts: list[BenchmarkText], config: DecontamConfig) -> None:
        self.config = config
        self.texts: list[BenchmarkText] = []
        self.sizes: list[int] = []
        self.skipped_short = 0
        self._postings: dict[int, list[int]] = {}
        for text in texts:
            tokens = code_tokens(text.text)
            if len(tokens) < config.ngram:
                self.skipped_short += 1
                continue
            grams = {hash(g) for g in ngrams(tokens, config.ngram)}
            index = len(self.texts)
            self.texts.append(text)
            self.sizes.append(len(grams))
            for g in grams:
                self._postings.setdefault(g, []).append(index)

    def matches(self, item: Item) -> list[Match]:
        """Benchmark texts that `item` (instruction and answer together) contains, best first."""
        tokens = code_tokens(item.instruction + "\n" + item.output)
        hits: Counter[int] = Counter()
        for g in {hash(g) for g in ngrams(tokens, self.config.ngram)}:
            hits.update(self._postings.get(g, ()))
        found = []
        for index, count in hits.items():
            overlap = count / self.sizes[index]
            if overlap >= self.config.threshold:
                text = self.texts[index]
                found.append(Match(item.id, text.benchmark, text.task_id, text.field, overlap))
        return sorted(found, key=lambda m: (-m.overlap, m.benchmark, m.task_id, m.field))


def decontaminate(
    items: list[Item], index: BenchmarkIndex
) -> tuple[list[Item], list[tuple[Item, Verdict]], list[Match]]:
    """Split `items` into clean ones and contaminated ones; also return every match found."""
    kept, dropped, all_matches = [], [], []
    for item in items:
        found = index.matches(item)
        if not found:
            kept.append(item)
            continue
        all_matches.extend(found)
        best = found[0]
        detail = f"{best.benchmark} {best.task_id} {best.field} ({best.overlap:.0%} of its {index.config.ngram}-grams)"
        dropped.append((item, Verdict(CONTAMINATED, detail)))
    return kept, dropped, all_matches
