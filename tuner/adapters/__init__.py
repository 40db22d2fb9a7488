"""Training methods beyond full fine-tuning, one entry each in one explicit registry.

A recipe's `train.method` names `full` or an entry of `ADAPTER_METHODS`. An entry says which
recipe section holds the method's options, whether the base model loads with 4-bit weights, how
to make a loaded model trainable (adding the method's parameters and freezing the rest), and how
to save what it trained. Adding a method is adding one entry.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from torch import nn

from tuner.adapters import llama_adapter
from tuner.adapters.lora import add_lora, save_lora


@dataclass(frozen=True)
class AdapterMethod:
    """What an engine needs to train, save and rebuild one adapter method."""

    section: str
    """The recipe section holding the options (read into the RecipeConfig field of that name)."""
    quantized_base: bool
    """Load the base model with 4-bit NF4 weights (bitsandbytes)."""
    add: Callable[[nn.Module, Any, bool], nn.Module]
    """(model, options, gradient_checkpointing) -> the model with only the method's parameters trainable."""
    save: Callable[[nn.Module, Path], Any]
    """(model, folder) -> writes the trained parameters; called on every rank (ZeRO-3 gathers)."""


def _add_llama_adapter(model: nn.Module, options: llama_adapter.LlamaAdapterConfig,
                       gradient_checkpointing: bool) -> nn.Module:
    model = llama_adapter.add_llama_adapter(model, options)
    if gradient_checkpointing:
        llama_adapter.enable_gradient_checkpointing(model)
    return model


ADAPTER_METHODS: dict[str, AdapterMethod] = {
    "lora": AdapterMethod(section="lora", quantized_base=False, add=add_lora, save=save_lora),
    "qlora": AdapterMethod(section="lora", quantized_base=True, add=add_lora, save=save_lora),
    "llama_adapter": AdapterMethod(section="llama_adapter", quantized_base=False, add=_add_llama_adapter,
                                   save=llama_adapter.save_llama_adapter),
}


def adapter_method(name: str) -> AdapterMethod:
    """The registry entry for `train.method`; the error lists the known methods."""
    if name not in ADAPTER_METHODS:
        raise ValueError(f"train.method {name!r} is not an adapter method; known: {', '.join(ADAPTER_METHODS)}")
    return ADAPTER_METHODS[name]
