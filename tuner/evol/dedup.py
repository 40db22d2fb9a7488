"""Deduplication of instructions: exact after normalisation, then near-duplicates by MinHash.

Items are visited in order and the first of a group is kept, so seed items win over evolved ones
and earlier rounds over later ones. Near-duplicate candidates come from MinHash signatures over
word shingles, bucketed by locality-sensitive hashing (Broder, 1997; Leskovec et al., "Mining of
Massive Datasets", chapter 3); every candidate pair is then confirmed with the exact Jaccard
similarity, so the threshold means what it says.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import numpy as np

from tuner.evol.eliminate import Verdict
from tuner.evol.records import Item
from tuner.evol.text import ngrams, normalize, words

DUPLICATE_EXACT = "duplicate_exact"
DUPLICATE_NEAR = "duplicate_near"

_MERSENNE_61 = np.uint64((1 << 61) - 1)


@dataclass
class DedupConfig:
    near_threshold: float = 0.8
    """Jaccard similarity of word shingles at or above which two instructions are duplicates;
    above 1 turns near-duplicate detection off."""
    shingle_words: int = 3
    num_perm: int = 128
    bands: int = 32
    """`num_perm / bands` rows per band; 32 bands of 4 find pairs at Jaccard 0.8 with
    probability above 0.9999."""
    seed: int = 0

    def __post_init__(self) -> None:
        if self.near_threshold <= 0:
            raise ValueError(f"`near_threshold` must be > 0, got {self.near_threshold}")
        if self.num_perm % self.bands:
            raise ValueError(f"`num_perm` ({self.num_perm}) must be a multiple of `bands` ({self.bands})")


def shingles(text: str, size: int) -> set[tuple[str, ...]]:
    return ngrams(words(text), size)


def jaccard(a: set, b: set) -> float:
    return len(a & b) / len(a | b) if a or b else 1.0


class MinHasher:
    """MinHash signatures from universal hashing `(a * x + b) mod (2**61 - 1)` of 32-bit shingle
    hashes; with `a, b, x < 2**32` the arithmetic stays inside uint64."""

    def __init__(self, num_perm: int, seed: int) -> None:
        rng = np.random.default_rng(seed)
        self.a = rng.integers(1, 1 << 32, size=(num_perm, 1), dtype=np.uint64)
        self.b = rng.integers(0, 1 << 32, size=(num_perm, 1), dtype=np.uint64)

    def signature(self, shingle_set: set[tuple[str, ...]]) -> np.ndarray:
        if not shingle_set:
            return np.full(self.a.shape[0], _MERSENNE_61, dtype=np.uint64)
        hashes = np.fromiter(
            (zlib.crc32("\x1f".join(s).encode("utf-8")) for s in shingle_set),
            dtype=np.uint64,
            count=len(shingle_set),
        )
        return ((self.a * hashes[None, :] + self.b) % _MERSENNE_61).min(axis=1)


def deduplicate(items: list[Item], config: DedupConfig) -> tuple[list[Item], list[tuple[Item, Verdict]]]:
    """Split `items` into the kept ones and `(duplicate, verdict)` pairs naming what each repeats."""
    kept: list[Item] = []
    dropped: list[tuple[Item, Verdict]] = []
    first_by_text: dict[str, str] = {}
    near_on = config.near_threshold <= 1
    hasher = MinHasher(config.num_perm, config.seed)
    rows = config.num_perm // config.bands
    buckets: dict[tuple[int, bytes], list[int]] = {}
    kept_shingles: list[set] = []

    for item in items:
        key = normalize(item.instruction)
        if key in first_by_text:
            dropped.append((item, Verdict(DUPLICATE_EXACT, f"same instruction as {first_by_text[key]}")))
            continue
        if near_on:
            item_shingles = shingles(item.instruction, config.shingle_words)
            signature = hasher.signature(item_shingles)
            band_keys = [(band, signature[band * rows:(band + 1) * rows].tobytes()) for band in range(config.bands)]
            candidates = {j for band_key in band_keys for j in buckets.get(band_key, ())}
            best, best_sim = None, 0.0
            for j in sorted(candidates):
                sim = jaccard(item_shingles, kept_shingles[j])
                if sim > best_sim:
                    best, best_sim = j, sim
            if best is not None and best_sim >= config.near_threshold:
                detail = f"Jaccard {best_sim:.2f} with {kept[best].id}"
                dropped.append((item, Verdict(DUPLICATE_NEAR, detail)))
                continue
            for band_key in band_keys:
                buckets.setdefault(band_key, []).append(len(kept))
            kept_shingles.append(item_shingles)
        first_by_text[key] = item.id
        kept.append(item)
    return kept, dropped
