"""Helpers shared by the LLaMA-Adapter tests (tiny real models from the `tiny_model_dirs` fixture)."""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import AutoModelForCausalLM

from tuner.adapters.llama_adapter import LlamaAdapterConfig, add_llama_adapter, adapter_parameters

ARCHS = ("llama", "mistral", "mistral_head_dim", "gpt_bigcode")


def load_base(folder: Path, attn_implementation: str = "sdpa"):
    return AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32, attn_implementation=attn_implementation)


def adapted(folder: Path, config: LlamaAdapterConfig | None = None, seed: int = 0, **kwargs):
    """A tiny model (from its folder) with a LLaMA-Adapter added; gates start at zero."""
    model = load_base(folder, kwargs.pop("attn_implementation", "sdpa"))
    torch.manual_seed(seed)
    add_llama_adapter(model, config or LlamaAdapterConfig(adapter_len=4, adapter_layers=2), **kwargs)
    return model


def open_gates(model, seed: int = 1) -> None:
    """Give every gate a non-zero value so outputs depend on the prompts (as after training)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in adapter_parameters(model):
            if name.endswith("llama_adapter.gate"):
                param.copy_(0.5 + torch.rand(param.shape, generator=generator))


def token_batch(model, batch: int = 2, length: int = 12, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(10, model.config.vocab_size, (batch, length), generator=generator)



def build_tiny_clip(out_dir: Path, image_size: int = 32, seed: int = 0) -> Path:
    """A random-initialised CLIPVisionModel saved with save_pretrained (no hub, no torchvision)."""
    from transformers import CLIPVisionConfig, CLIPVisionModel

    torch.manual_seed(seed)
    config = CLIPVisionConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=2,
                              image_size=image_size, patch_size=8)
    CLIPVisionModel(config).save_pretrained(out_dir)
    return out_dir
