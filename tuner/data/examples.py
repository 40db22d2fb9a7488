"""Turning instruction records into token ids and loss labels.

Each record becomes a list of text segments, each marked trainable or not: the prompt (template
or chat scaffolding) is not, the response is. Segments are tokenised separately, so the prompt's
tokens are exactly what generation will later see, and the EOS token is appended to the last
response and labelled, so the model learns to stop. Labels are -100 wherever no loss is taken.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Iterable

from tuner.data.records import DataError, Record, Source, read_records
from tuner.data.templates import format_prompt

IGNORE_INDEX = -100
FORMATS = ("alpaca", "evol", "chat", "sharegpt")
_SHAREGPT_ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant",
                   "system": "system"}


@dataclass
class Example:
    input_ids: list[int]
    labels: list[int]
    """Same length as input_ids; the token itself where loss is taken, else -100 (not shifted)."""
    source: Source

    @property
    def num_loss_tokens(self) -> int:
        """Tokens that are predicted with loss (the first token is never predicted)."""
        return sum(label != IGNORE_INDEX for label in self.labels[1:])


@dataclass
class LoadReport:
    """What happened to each record; skips are counted by reason with their first locations."""

    loaded: int = 0
    truncated: int = 0
    skipped: Counter = field(default_factory=Counter)
    where: dict = field(default_factory=dict)

    def skip(self, reason: str, source: Source) -> None:
        self.skipped[reason] += 1
        self.where.setdefault(reason, [])
        if len(self.where[reason]) < 5:
            self.where[reason].append(str(source))

    def summary(self) -> str:
        parts = [f"{self.loaded} examples loaded"]
        if self.truncated:
            parts.append(f"{self.truncated} truncated to max_length")
        for reason, count in sorted(self.skipped.items()):
            parts.append(f"{count} skipped ({reason}; first at {', '.join(self.where[reason])})")
        return "; ".join(parts)

    def to_dict(self) -> dict:
        return {"loaded": self.loaded, "truncated": self.truncated, "skipped": dict(self.skipped),
                "first_skipped_at": self.where}


def detect_format(record: Record) -> str:
    keys = record.data.keys() if isinstance(record.data, dict) else ()
    if "messages" in keys:
        return "chat"
    if "conversations" in keys:
        return "sharegpt"
    if "instruction" in keys:
        return "alpaca"
    raise DataError(f"{record.source}: cannot tell the data format (expected `instruction`/`output`, "
                    f"`messages` or `conversations`; found keys {sorted(keys)}); set data.format")


def _field(record: Record, name: str, required: bool = True) -> str:
    data = record.data
    if name not in data or data[name] is None:
        if required:
            raise DataError(f"{record.source}: {name}: required field is missing")
        return ""
    value = data[name]
    if not isinstance(value, str):
        raise DataError(f"{record.source}: {name}: expected a string, got {type(value).__name__}")
    return value


def _messages(record: Record, fmt: str) -> list[dict]:
    key = "messages" if fmt == "chat" else "conversations"
    turns = record.data.get(key)
    if not isinstance(turns, list) or not turns:
        raise DataError(f"{record.source}: {key}: expected a non-empty list of turns")
    messages = []
    for i, turn in enumerate(turns):
        if fmt == "chat":
            role, content = (turn.get("role"), turn.get("content")) if isinstance(turn, dict) else (None, None)
            valid = role in ("system", "user", "assistant")
        else:
            raw = turn.get("from") if isinstance(turn, dict) else None
            role, content = _SHAREGPT_ROLES.get(raw), turn.get("value") if isinstance(turn, dict) else None
            valid = role is not None
        if not valid:
            raise DataError(f"{record.source}: {key}[{i}].role: unknown or missing role in {turn!r}")
        if not isinstance(content, str):
            raise DataError(f"{record.source}: {key}[{i}].content: expected a string")
        messages.append({"role": role, "content": content})
    if not any(m["role"] == "assistant" for m in messages):
        raise DataError(f"{record.source}: {key}: no assistant turn to learn from")
    return messages


def record_segments(record: Record, fmt: str, template: str, tokenizer) -> list[tuple[str, bool]]:
    """The record's text as (segment, trainable) pairs, in order."""
    if fmt in ("alpaca", "evol"):
        prompt = format_prompt(template if template != "chat" else "alpaca",
                               _field(record, "instruction"), _field(record, "input", required=False))
        return [(prompt, False), (_field(record, "output"), True)]
    messages = _messages(record, fmt)
    if getattr(tokenizer, "chat_template", None) is None:
        raise DataError(f"{record.source}: chat data needs a tokenizer with a chat template")
    segments: list[tuple[str, bool]] = []
    rendered = ""
    for i, message in enumerate(messages):
        if message["role"] == "assistant":
            prefix = tokenizer.apply_chat_template(messages[:i], tokenize=False, add_generation_prompt=True)
        else:
            prefix = tokenizer.apply_chat_template(messages[: i + 1], tokenize=False)
        full = tokenizer.apply_chat_template(messages[: i + 1], tokenize=False)
        if not prefix.startswith(rendered) or not full.startswith(prefix):
            raise DataError(f"{record.source}: the tokenizer's chat template does not render turns "
                            "incrementally, so the assistant tokens cannot be located")
        if message["role"] == "assistant":
            segments.append((prefix[len(rendered):], False))
            segments.append((full[len(prefix):], True))
        else:
            segments.append((full[len(rendered):], False))
        rendered = full
    return [(text, trainable) for text, trainable in segments if text]


def response_is_empty(segments: list[tuple[str, bool]]) -> bool:
    return not any(text.strip() for text, trainable in segments if trainable)


def tokenize_segments(segments: list[tuple[str, bool]], tokenizer, chat: bool) -> tuple[list[int], list[int]]:
    """Token ids and labels for the segments, with EOS appended (and labelled) if not present."""
    input_ids: list[int] = []
    labels: list[int] = []
    for i, (text, trainable) in enumerate(segments):
        ids = tokenizer(text, add_special_tokens=(i == 0 and not chat))["input_ids"]
        input_ids += ids
        labels += ids if trainable else [IGNORE_INDEX] * len(ids)
    eos = tokenizer.eos_token_id
    if eos not in labels:  # chat templates usually close assistant turns with EOS themselves
        input_ids.append(eos)
        labels.append(eos)
    return input_ids, labels


def build_example(record: Record, fmt: str, template: str, tokenizer, max_length: int,
                  on_overlong: str, report: LoadReport) -> Example | None:
    """Tokenise one record, or count it as skipped (and return None)."""
    segments = record_segments(record, fmt, template, tokenizer)
    if response_is_empty(segments):
        report.skip("empty output", record.source)
        return None
    input_ids, labels = tokenize_segments(segments, tokenizer, chat=fmt in ("chat", "sharegpt"))
    if len(input_ids) > max_length:
        if on_overlong == "error":
            raise DataError(f"{record.source}: example is {len(input_ids)} tokens, longer than "
                            f"data.max_length={max_length} (set data.on_overlong: skip or truncate)")
        first_label = next(i for i, label in enumerate(labels) if label != IGNORE_INDEX)
        if on_overlong == "skip" or first_label >= max_length - 1:
            report.skip(f"longer than max_length={max_length}", record.source)
            return None
        input_ids, labels = input_ids[:max_length], labels[:max_length]
        report.truncated += 1
    report.loaded += 1
    return Example(input_ids, labels, record.source)


def load_examples(paths: Iterable[str], tokenizer, fmt: str = "auto", template: str = "alpaca",
                  max_length: int = 512, on_overlong: str = "skip",
                  max_examples: int | None = None) -> tuple[list[Example], LoadReport]:
    """Read and tokenise every record of `paths`.

    Raises:
        DataError: invalid JSON, a missing or mistyped field, or (with on_overlong="error") an
            over-long example; the message names the file and line.
    """
    report = LoadReport()
    examples: list[Example] = []
    for path in paths:
        for record in read_records(path):
            if not isinstance(record.data, dict):
                raise DataError(f"{record.source}: expected a JSON object, got {type(record.data).__name__}")
            record_format = detect_format(record) if fmt == "auto" else fmt
            example = build_example(record, record_format, template, tokenizer, max_length, on_overlong, report)
            if example is not None:
                examples.append(example)
                if max_examples is not None and len(examples) >= max_examples:
                    return examples, report
    if not examples:
        raise DataError(f"{', '.join(map(str, paths))}: no usable examples ({report.summary()})")
    return examples, report
