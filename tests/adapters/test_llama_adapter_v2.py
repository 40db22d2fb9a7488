"""LLaMA-Adapter V2 options: bias/scale tuning of every decoder linear layer and unfrozen norms."""

from __future__ import annotations

import torch
from torch import nn

from llama_adapter_helpers import adapted, load_base, token_batch
from tuner.adapters.llama_adapter import (
    LlamaAdapterConfig,
    adapter_parameters,
    count_trainable_parameters,
    load_llama_adapter,
    save_llama_adapter,
)

V2 = LlamaAdapterConfig(adapter_len=4, adapter_layers=2, bias_tuning=True, unfreeze_norms=True)


def _decoder_linears(model) -> list[nn.Linear]:
    layers = model.model.layers if hasattr(model, "model") else model.transformer.h
    return [m for m in layers.modules() if isinstance(m, nn.Linear)]


def test_v2_starts_as_the_base_and_counts_its_extra_parameters(arch_dir):
    base = load_base(arch_dir)
    model = adapted(arch_dir, V2)
    ids = token_batch(model)
    with torch.no_grad():
        assert torch.equal(model(ids).logits, base(ids).logits)
    config = model.config
    prompts_and_gates = 2 * (4 * config.hidden_size + config.num_attention_heads)
    bias_and_scale = 2 * sum(linear.out_features for linear in _decoder_linears(base))
    norms = sum(
        p.numel() for m in base.modules() if type(m).__name__.endswith(("RMSNorm", "LayerNorm")) for p in m.parameters()
    )
    assert norms > 0
    assert count_trainable_parameters(model) == prompts_and_gates + bias_and_scale + norms


def test_v2_parameters_train_and_round_trip(arch_dir, tmp_path):
    model = adapted(arch_dir, V2)
    ids = token_batch(model)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=2e-2)
    losses = []
    for _ in range(6):
        loss = model(ids, labels=ids).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss.item())
    assert losses[-1] < losses[0] - 0.05, losses
    named = dict(adapter_parameters(model))
    bias = [p for n, p in named.items() if n.endswith("llama_adapter_bias_scale.bias")]
    scale = [p for n, p in named.items() if n.endswith("llama_adapter_bias_scale.scale")]
    assert len(bias) == len(_decoder_linears(model)) and all(b.abs().sum() > 0 for b in bias)
    assert all((s - 1).abs().sum() > 0 for s in scale)
    # Norm weights keep their base names and are saved with the adapter.
    norm_names = [n for n in named if "norm" in n or ".ln_" in n]
    assert norm_names

    out = save_llama_adapter(model, tmp_path / "adapter")
    reloaded = load_llama_adapter(load_base(arch_dir), out)
    with torch.no_grad():
        assert torch.equal(reloaded(ids).logits, model(ids).logits)

