"""Parameter-efficient adapter methods, one package per method, in one explicit registry.

A recipe's `train.method` names an entry of `ADAPTER_METHODS`; its section of the same name
(e.g. `llama_adapter:`) is read into the entry's config class.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from tuner.adapters import llama_adapter


@dataclass(frozen=True)
class AdapterMethod:
    """The functions an engine needs to train, save and reload one adapter method."""

    config_class: type
    add: Callable[..., Any]
    save: Callable[..., Any]
    enable_gradient_checkpointing: Callable[..., Any]


ADAPTER_METHODS: dict[str, AdapterMethod] = {
    "llama_adapter": AdapterMethod(
        config_class=llama_adapter.LlamaAdapterConfig,
        add=llama_adapter.add_llama_adapter,
        save=llama_adapter.save_llama_adapter,
        enable_gradient_checkpointing=llama_adapter.enable_gradient_checkpointing,
    ),
}


def adapter_method(name: str) -> AdapterMethod:
    """The registry entry for `train.method`; the error lists the known methods."""
    if name not in ADAPTER_METHODS:
        raise ValueError(f"train.method {name!r} is not an adapter method; known: {', '.join(ADAPTER_METHODS)}")
    return ADAPTER_METHODS[name]
