"""Prompt styles: a base model continues the task's own prompt; an instruction model gets the
WizardCoder/Alpaca template, or the tokenizer's chat template through the backend's chat API."""

from __future__ import annotations

from tuner.generation import Message

STYLES = ("base", "instruct")

ALPACA_TEMPLATE = (
    "Below is an instruction that describes a task. Write a response that appropriately completes the request."
    "\n\n### Instruction:\n{instruction}\n\n### Response:"
)
"""The template WizardCoder was trained and evaluated with (Alpaca's, without an input field)."""

INSTRUCT_STOPS = ["\n### Instruction", "\n### Response"]


def instruct_prompt(instruction: str) -> str:
    return ALPACA_TEMPLATE.format(instruction=instruction)


def chat_messages(instruction: str, system: str | None = None) -> list[Message]:
    messages: list[Message] = [{"role": "system", "content": system}] if system else []
    return messages + [{"role": "user", "content": instruction}]
