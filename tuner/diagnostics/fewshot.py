"""Prompt-based few-shot classification: the task both the kernel check and the placement search use.

As in LM-BFF and "A Kernel-Based View of Language Model Fine-Tuning" (Malladi et al., 2023), an
example is a text put into a template (`"{text} It was"`) and classified by the logits of C label
words (`" terrible"`, `" great"`) at the answer position, the position after the prompt (for a
causal LM, the next-token logits of the prompt's last token). Fine-tuning minimises the
cross-entropy of the softmax over the C label-word logits.

Data: JSONL records `{"text": ..., "label": <int in [0, C)>}`, or the built-in synthetic
sentiment task (`synthetic_sentiment`), whose label is decided by which of two word lists
dominates the sentence.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

import torch

from tuner.data.records import DataError, read_records

DEFAULT_TEMPLATE = "{text} It was"
SENTIMENT_LABEL_WORDS = (" terrible", " great")
_POSITIVE = ["wonderful", "brilliant", "charming", "delightful", "superb", "moving", "clever", "beautiful"]
_NEGATIVE = ["boring", "awful", "clumsy", "tedious", "dreadful", "messy", "bland", "painful"]
_NEUTRAL = ["the film", "the plot", "the cast", "the music", "the ending", "the story", "the director", "the pace"]


@dataclass
class FewShotExample:
    text: str
    label: int
    input_ids: list[int]


@dataclass
class FewShotTask:
    """Encoded examples of one split plus what turns model outputs into class scores."""

    examples: list[FewShotExample]
    label_words: tuple[str, ...]
    label_ids: tuple[int, ...]
    template: str

    @property
    def num_classes(self) -> int:
        return len(self.label_ids)

    @property
    def labels(self) -> torch.Tensor:
        return torch.tensor([e.label for e in self.examples])

    def subset(self, indices: list[int]) -> "FewShotTask":
        return FewShotTask([self.examples[i] for i in indices], self.label_words, self.label_ids, self.template)


def label_token_ids(tokenizer, label_words: tuple[str, ...] | list[str]) -> tuple[int, ...]:
    """The single token of each label word.

    Raises:
        ValueError: a label word is not exactly one token of this tokenizer, or two are the same.
    """
    ids = []
    for word in label_words:
        tokens = tokenizer.encode(word, add_special_tokens=False)
        if len(tokens) != 1:
            raise ValueError(f"label word {word!r} is {len(tokens)} tokens for this tokenizer ({tokens}); "
                             "each label word must be a single token (mind the leading space)")
        ids.append(tokens[0])
    if len(set(ids)) != len(ids):
        raise ValueError(f"label words {list(label_words)} map to repeated token ids {ids}")
    return tuple(ids)


def encode_task(tokenizer, records: list[tuple[str, int]], label_words, template: str = DEFAULT_TEMPLATE) -> FewShotTask:
    """Tokenise (text, label) pairs through `template`, with BOS when the tokenizer has one."""
    if "{text}" not in template:
        raise ValueError(f"template {template!r} has no {{text}} placeholder")
    label_ids = label_token_ids(tokenizer, label_words)
    bos = [tokenizer.bos_token_id] if tokenizer.bos_token_id is not None else []
    examples = []
    for text, label in records:
        if not 0 <= label < len(label_ids):
            raise ValueError(f"label {label} of {text!r} is outside [0, {len(label_ids)})")
        ids = bos + tokenizer.encode(template.format(text=text), add_special_tokens=False)
        examples.append(FewShotExample(text, label, ids))
    return FewShotTask(examples, tuple(label_words), label_ids, template)


def read_task_jsonl(path: str | Path, num_classes: int) -> list[tuple[str, int]]:
    """(text, label) pairs of a JSONL file; a bad record fails naming its file, line and field."""
    pairs = []
    for record in read_records(path):
        data = record.data
        if not isinstance(data, dict):
            raise DataError(f"{record.source}: expected an object with `text` and `label`")
        text, label = data.get("text"), data.get("label")
        if not isinstance(text, str) or not text.strip():
            raise DataError(f"{record.source}: text: missing or empty")
        if isinstance(label, bool) or not isinstance(label, int) or not 0 <= label < num_classes:
            raise DataError(f"{record.source}: label: must be an integer in [0, {num_classes}), got {label!r}")
        pairs.append((text, label))
    if not pairs:
        raise DataError(f"{path}: no examples")
    return pairs


def synthetic_sentiment(n: int, seed: int) -> list[tuple[str, int]]:
    """`n` balanced sentences like "the plot was clever, the cast was boring and clever": label 1
    when positive words outnumber negative ones."""
    rng = random.Random(seed)
    pairs = []
    for i in range(n):
        label = i % 2
        major, minor = (_POSITIVE, _NEGATIVE) if label else (_NEGATIVE, _POSITIVE)
        words = [rng.choice(major) for _ in range(2)] + [rng.choice(major if rng.random() < 0.5 else minor)]
        rng.shuffle(words)
        subjects = rng.sample(_NEUTRAL, 2)
        pairs.append((f"{subjects[0]} was {words[0]}, {subjects[1]} was {words[1]} and {words[2]}", label))
    rng.shuffle(pairs)
    return pairs


def sentiment_corpus() -> list[str]:
    """Text that makes the synthetic task's label words single tokens of a tiny tokenizer."""
    line = " ".join(_POSITIVE + _NEGATIVE + _NEUTRAL) + " It was" + "".join(SENTIMENT_LABEL_WORDS)
    return [line] * 200


# --- model outputs --------------------------------------------------------------------------------


def collate(task: FewShotTask, indices: list[int] | None = None, pad_id: int = 0) -> dict[str, torch.Tensor]:
    """Right-padded ids, attention mask, the answer position of each row, and labels."""
    rows = task.examples if indices is None else [task.examples[i] for i in indices]
    width = max(len(r.input_ids) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        ids[i, : len(row.input_ids)] = torch.tensor(row.input_ids)
        mask[i, : len(row.input_ids)] = 1
    return {"input_ids": ids, "attention_mask": mask, "answer_pos": mask.sum(1) - 1,
            "labels": torch.tensor([r.label for r in rows])}


def label_logits(model, batch: dict[str, torch.Tensor], label_ids: tuple[int, ...]) -> torch.Tensor:
    """[B, C] logits of the label words at each row's answer position (right padding: a causal
    model's real tokens never see the pads, so this equals running each row alone)."""
    device = next(model.parameters()).device
    out = model(input_ids=batch["input_ids"].to(device), attention_mask=batch["attention_mask"].to(device),
                use_cache=False).logits
    rows = torch.arange(out.shape[0], device=device)
    return out[rows, batch["answer_pos"].to(device)][:, list(label_ids)]


def evaluate(model, task: FewShotTask, pad_id: int = 0, batch_size: int = 32) -> dict[str, float]:
    """Accuracy and mean cross-entropy over the label words."""
    correct, loss, n = 0, 0.0, len(task.examples)
    with torch.no_grad():
        for start in range(0, n, batch_size):
            batch = collate(task, list(range(start, min(n, start + batch_size))), pad_id)
            logits = label_logits(model, batch, task.label_ids).float()
            labels = batch["labels"].to(logits.device)
            loss += float(torch.nn.functional.cross_entropy(logits, labels, reduction="sum"))
            correct += int((logits.argmax(-1) == labels).sum())
    return {"accuracy": correct / n, "loss": loss / n}
