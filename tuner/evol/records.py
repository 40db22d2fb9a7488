"""Instruction items, and reading the seed set (Code Alpaca format) into them."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

from tuner.jsonl import InputError, iter_json_records


@dataclass
class Item:
    """One instruction/answer pair and where it came from."""

    id: str
    """Seeds are `s<index>`; the item evolved from it in round k is `s<index>-r<k>`."""
    instruction: str
    output: str
    round: int
    """0 for seed items."""
    parent: str | None = None
    heuristic: str | None = None

    def to_record(self, **provenance: object) -> dict:
        """The output line: Evol-Instruct fields first (`input` is always empty), then provenance."""
        record = {"instruction": self.instruction, "input": "", "output": self.output}
        record.update(asdict(self))
        record.update(provenance)
        return record


def child_id(parent_id: str, round_index: int) -> str:
    """Each item has at most one child per round, so its id follows from the parent's."""
    root = parent_id.split("-r", 1)[0]
    return f"{root}-r{round_index}"


def seed_instruction(instruction: str, input_text: str) -> str:
    """Fold Code Alpaca's optional `input` into the instruction, as Evol-Instruct data has none."""
    instruction, input_text = instruction.strip(), input_text.strip()
    return f"{instruction}\n{input_text}" if input_text else instruction


def load_seed(path: str | Path) -> list[Item]:
    """Read a seed set: a JSON array or JSONL of `{instruction, input?, output}` objects.

    Raises:
        InputError: malformed JSON, or a record whose `instruction` is missing or empty, whose
            `output` is missing, or whose fields are not strings; the message names file and line.
    """
    items = []
    for number, record in iter_json_records(path):
        for field in ("instruction", "output"):
            if field not in record:
                raise InputError(f'record has no "{field}" field', path, number)
        for field in ("instruction", "input", "output"):
            if field in record and not isinstance(record[field], str):
                kind = type(record[field]).__name__
                raise InputError(f'field "{field}" must be a string, got {kind}', path, number)
        if not record["instruction"].strip():
            raise InputError('field "instruction" is empty', path, number)
        instruction = seed_instruction(record["instruction"], record.get("input", ""))
        items.append(Item(id=f"s{len(items)}", instruction=instruction, output=record["output"], round=0))
    if not items:
        raise InputError("the seed file holds no records", path, None)
    return items
