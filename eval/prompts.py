"""Prompt styles: a base model continues the task's own prompt; an instruction model gets the
WizardCoder/Alpaca template, or the tokenizer's chat template through the backend's chat API."""

from __future__ import annotations

from tuner.data.templates import WIZARDCODER_PROMPT
from tuner.generation import Message

STYLES = ("base", "instruct")

ALPACA_TEMPLATE = WIZARDCODER_PROMPT
"""The template WizardCoder was trained and evaluated with (Alpaca's, without an input field), the
same text `tuner train` uses for `template: wizardcoder` and `alpaca` records without input."""

INSTRUCT_STOPS = ["\n### Instruction", "\n### Response"]


def instruct_prompt(instruction: str) -> str:
    return ALPACA_TEMPLATE.format(instruction=instruction)


def chat_messages(instruction: str, system: str | None = None) -> list[Message]:
    messages: list[Message] = [{"role": "system", "content": system}] if system else []
    return messages + [{"role": "user", "content": instruction}]
