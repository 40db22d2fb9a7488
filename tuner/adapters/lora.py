"""LoRA and QLoRA through peft: the recipe's `lora:` options, adding adapters, saving them.

QLoRA is LoRA on a base model loaded with bitsandbytes 4-bit NF4 weights (`tuner.models.load_model`
does that for `train.method: qlora`); `add_lora` sees the quantised base and prepares it for
training first. The saved folder is peft's own (adapter_config.json + adapter_model.safetensors),
which `PeftModel.from_pretrained` loads and `tuner export` merges into the unquantised base.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from tuner.config import ConfigError


@dataclass
class LoraArgs:
    r: int = 16
    """LoRA rank."""
    alpha: float = 32.0
    """LoRA scaling numerator (the update is scaled by alpha / r)."""
    dropout: float = 0.05
    target_modules: list[str] | str = "all-linear"
    """Module names to adapt, or `all-linear`."""

    def __post_init__(self) -> None:
        if self.r <= 0:
            raise ConfigError(f"lora.r: must be positive, got {self.r}")
        if not 0 <= self.dropout < 1:
            raise ConfigError("lora.dropout: must be in [0, 1)")


def add_lora(model: nn.Module, options: LoraArgs, gradient_checkpointing: bool) -> nn.Module:
    """Wrap `model` with peft LoRA adapters (after preparing a 4-bit base for training)."""
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training

    if getattr(model, "is_loaded_in_4bit", False):
        model = prepare_model_for_kbit_training(
            model, use_gradient_checkpointing=gradient_checkpointing,
            gradient_checkpointing_kwargs={"use_reentrant": False},
        )
    elif gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    config = LoraConfig(r=options.r, lora_alpha=options.alpha, lora_dropout=options.dropout,
                        target_modules=options.target_modules, task_type="CAUSAL_LM", bias="none")
    return get_peft_model(model, config)


def save_lora(model: nn.Module, out_dir: str | Path) -> Path:
    """Write peft's adapter folder; call on every rank (ZeRO-3 gathers the adapter weights), rank 0 writes."""
    from tuner.engine import gathered

    with gathered([p for p in model.parameters() if p.requires_grad]):
        if not (torch.distributed.is_initialized() and torch.distributed.get_rank()):
            model.save_pretrained(out_dir, safe_serialization=True)
    return Path(out_dir)
