"""Trainable-parameter counts: K * L * hidden prompt values plus the gates, and nothing else."""

from __future__ import annotations

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from llama_adapter_helpers import ARCHS, adapted
from tuner.adapters.llama_adapter import LlamaAdapterConfig, add_llama_adapter, count_trainable_parameters

# The published LLaMA-7B shape (params.json of the original release).
LLAMA_7B = dict(
    hidden_size=4096, intermediate_size=11008, num_hidden_layers=32, num_attention_heads=32,
    num_key_value_heads=32, vocab_size=32000, max_position_embeddings=2048, rms_norm_eps=1e-6,
)


@pytest.mark.parametrize(("gate", "gate_params"), [("tanh_per_head", 30 * 32), ("scalar", 30)])
def test_llama_7b_count_on_the_meta_device(gate, gate_params):
    with torch.device("meta"):
        model = LlamaForCausalLM(LlamaConfig(**LLAMA_7B))
    assert sum(p.numel() for p in model.parameters()) == 6_738_415_616
    add_llama_adapter(model, LlamaAdapterConfig(adapter_len=10, adapter_layers=30, gate=gate))
    prompts = sum(p.numel() for n, p in model.named_parameters() if n.endswith("llama_adapter.prompt"))
    assert prompts == 1_228_800 == 10 * 30 * 4096
    assert count_trainable_parameters(model) == 1_228_800 + gate_params  # 1,229,760 or 1,228,830
    # At bf16 the adapter file holds about 2.5 MB of tensors (fp32: about 4.9 MB).
    assert count_trainable_parameters(model) * 2 < 2.5e6


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize(("adapter_len", "adapter_layers", "gate"), [(4, 2, "tanh_per_head"), (7, [0, 1, 3], "scalar")])
def test_tiny_counts_follow_the_formula(tiny_model_dirs, arch, adapter_len, adapter_layers, gate):
    model = adapted(tiny_model_dirs[arch], LlamaAdapterConfig(adapter_len=adapter_len, adapter_layers=adapter_layers, gate=gate))
    config = model.config
    num_layers = adapter_layers if isinstance(adapter_layers, int) else len(adapter_layers)
    gates_per_layer = config.num_attention_heads if gate == "tanh_per_head" else 1
    expected = num_layers * (adapter_len * config.hidden_size + gates_per_layer)
    assert count_trainable_parameters(model) == expected
