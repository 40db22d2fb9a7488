"""Prompt templates for instruction data.

The texts are the published ones: Stanford Alpaca's two prompts, and WizardCoder's, which is
Alpaca's no-input prompt (an `input`, when present, is appended to the instruction). The response
follows "### Response:" directly, as in both projects' training code; generation at evaluation
time uses the same prompt, so training and inference see identical token boundaries.
"""

from __future__ import annotations

ALPACA_PROMPT_WITH_INPUT = (
    "Below is an instruction that describes a task, paired with an input that provides further "
    "context. Write a response that appropriately completes the request.\n\n"
    "### Instruction:\n{instruction}\n\n### Input:\n{input}\n\n### Response:"
)
ALPACA_PROMPT_NO_INPUT = (
    "Below is an instruction that describes a task. Write a response that appropriately "
    "completes the request.\n\n### Instruction:\n{instruction}\n\n### Response:"
)
WIZARDCODER_PROMPT = ALPACA_PROMPT_NO_INPUT

TEMPLATES = ("alpaca", "wizardcoder")


def format_prompt(template: str, instruction: str, input: str = "") -> str:
    """The prompt text that precedes the response for `template` ("alpaca" or "wizardcoder")."""
    if template == "alpaca":
        if input.strip():
            return ALPACA_PROMPT_WITH_INPUT.format(instruction=instruction, input=input)
        return ALPACA_PROMPT_NO_INPUT.format(instruction=instruction)
    if template == "wizardcoder":
        text = f"{instruction}\n{input}" if input.strip() else instruction
        return WIZARDCODER_PROMPT.format(instruction=text)
    raise ValueError(f"unknown prompt template {template!r}; choose one of {TEMPLATES}")
