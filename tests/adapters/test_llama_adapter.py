"""LLaMA-Adapter on Llama, Mistral (GQA; explicit head_dim) and GPTBigCode: the core behaviour."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoModelForCausalLM, GPT2Config

from llama_adapter_helpers import adapted, load_base, open_gates, token_batch
from tuner._imports import is_flash_attn_available
from tuner.adapters.llama_adapter import (
    LlamaAdapterConfig,
    UnsupportedModelError,
    adapter_parameters,
    add_llama_adapter,
    enable_gradient_checkpointing,
)


def test_adapted_model_starts_exactly_as_the_base_model(arch_dir):
    base = load_base(arch_dir)
    model = adapted(arch_dir)
    ids = token_batch(model)
    with torch.no_grad():
        assert torch.equal(model(ids).logits, base(ids).logits)
    # The prompts are not zero: equality comes from the zero gate, not from an inert adapter.
    prompts = [p for n, p in adapter_parameters(model) if n.endswith("prompt")]
    assert len(prompts) == 2 and all(p.abs().sum() > 0 for p in prompts)


def _train(model, ids, steps: int, lr: float = 5e-2) -> list[float]:
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr)
    losses = []
    for _ in range(steps):
        loss = model(ids, labels=ids).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss.item())
    return losses


def test_training_moves_only_the_adapter_and_lowers_the_loss(arch_dir):
    base = load_base(arch_dir)
    model = adapted(arch_dir)
    ids = token_batch(model)
    frozen_before = {n: p.clone() for n, p in model.named_parameters() if not p.requires_grad}
    losses = _train(model, ids, steps=10, lr=0.1)
    assert losses[-1] < losses[0] - 0.05, losses
    with torch.no_grad():
        assert not torch.allclose(model(ids).logits, base(ids).logits, atol=1e-3)
    for name, param in model.named_parameters():
        if not param.requires_grad:
            assert torch.equal(param, frozen_before[name]), f"frozen {name} changed"
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == {n for n, _ in adapter_parameters(model)}
    assert all("llama_adapter" in n for n in trainable)


def test_cached_greedy_generation_equals_repeated_full_forwards(arch_dir):
    model = adapted(arch_dir).eval()
    open_gates(model)
    prompt = token_batch(model, batch=1, length=6, seed=3)
    with torch.no_grad():
        cached = model.generate(prompt, max_new_tokens=10, do_sample=False, use_cache=True)
        sequence = prompt
        for _ in range(10):
            next_token = model(sequence, use_cache=False).logits[:, -1].argmax(-1, keepdim=True)
            sequence = torch.cat([sequence, next_token], dim=1)
        base_logits = load_base(arch_dir)(sequence).logits
        adapted_logits = model(sequence).logits
    assert torch.equal(cached, sequence)
    assert not torch.allclose(adapted_logits, base_logits, atol=1e-4), "open gates should matter"


def test_sdpa_and_eager_attention_give_the_same_result(arch_dir):
    outputs = {}
    for implementation in ("eager", "sdpa"):
        model = adapted(arch_dir, seed=5, attn_implementation=implementation)
        open_gates(model)
        ids = token_batch(model)
        loss = model(ids, labels=ids).loss
        loss.backward()
        gate_grad = [p.grad.clone() for n, p in adapter_parameters(model) if n.endswith("gate")]
        outputs[implementation] = (model(ids).logits.detach(), gate_grad)
    torch.testing.assert_close(outputs["eager"][0], outputs["sdpa"][0], atol=1e-5, rtol=1e-5)
    for eager, sdpa in zip(outputs["eager"][1], outputs["sdpa"][1]):
        torch.testing.assert_close(eager, sdpa, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("arch", ["llama", "gpt_bigcode"])
def test_gradient_checkpointing_gives_the_same_gradients(tiny_model_dirs, arch):
    grads = []
    for checkpointing in (False, True):
        model = adapted(tiny_model_dirs[arch], seed=2).train()
        open_gates(model)
        if checkpointing:
            enable_gradient_checkpointing(model)
        ids = token_batch(model)
        model(ids, labels=ids).loss.backward()
        grads.append({n: p.grad.clone() for n, p in adapter_parameters(model)})
    assert grads[0].keys() == grads[1].keys()
    for name in grads[0]:
        assert grads[0][name].abs().sum() > 0, name
        torch.testing.assert_close(grads[1][name], grads[0][name], atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("checkpointing", [False, True])
def test_layers_below_the_adapter_build_no_autograd_graph(tiny_llama_dir, checkpointing):
    model = adapted(tiny_llama_dir, LlamaAdapterConfig(adapter_len=4, adapter_layers=[2, 3]))
    if checkpointing:
        enable_gradient_checkpointing(model)
    model.train()
    requires_grad = {}
    for index, layer in enumerate(model.model.layers):
        layer.register_forward_hook(lambda m, a, out, i=index: requires_grad.__setitem__(i, out.requires_grad))
    ids = token_batch(model)
    model(ids, labels=ids).loss.backward()
    assert requires_grad == {0: False, 1: False, 2: True, 3: True}


def test_explicit_layer_list_adapts_exactly_those_layers(tiny_llama_dir):
    model = adapted(tiny_llama_dir, LlamaAdapterConfig(adapter_len=3, adapter_layers=[0, 2]))
    names = [n for n, _ in adapter_parameters(model)]
    assert names == [
        "model.layers.0.self_attn.llama_adapter.prompt", "model.layers.0.self_attn.llama_adapter.gate",
        "model.layers.2.self_attn.llama_adapter.prompt", "model.layers.2.self_attn.llama_adapter.gate",
    ]


def test_base_weight_names_are_unchanged(arch_dir):
    base_names = set(load_base(arch_dir).state_dict())
    model_names = set(adapted(arch_dir).state_dict())
    assert base_names <= model_names
    assert all(".llama_adapter." in n for n in model_names - base_names)


def test_unknown_model_type_is_rejected_with_the_supported_list():
    model = AutoModelForCausalLM.from_config(GPT2Config(n_embd=64, n_layer=2, n_head=2, vocab_size=100))
    with pytest.raises(UnsupportedModelError, match="'gpt2'.*gpt_bigcode, llama, mistral"):
        add_llama_adapter(model, LlamaAdapterConfig(adapter_layers=1))


def test_adapters_do_not_stack_and_oversized_layer_counts_fail(tiny_llama_dir):
    model = adapted(tiny_llama_dir)
    with pytest.raises(ValueError, match="already has a LLaMA-Adapter"):
        add_llama_adapter(model, LlamaAdapterConfig(adapter_layers=1))
    with pytest.raises(ValueError, match=r"llama_adapter.adapter_layers must be at most the model's 4 layers"):
        add_llama_adapter(load_base(tiny_llama_dir), LlamaAdapterConfig(adapter_layers=30))


@pytest.mark.gpu
@pytest.mark.skipif(not is_flash_attn_available(), reason="flash-attn and a CUDA device are needed")
def test_flash_attention_base_gives_the_sdpa_result(tiny_model_dirs):
    outputs = {}
    for implementation in ("sdpa", "flash_attention_2"):
        model = adapted(tiny_model_dirs["mistral"], seed=5, attn_implementation=implementation)
        model.to(device="cuda", dtype=torch.bfloat16)
        open_gates(model)
        ids = token_batch(model).cuda()
        with torch.no_grad():
            outputs[implementation] = model(ids).logits.float()
    torch.testing.assert_close(outputs["flash_attention_2"], outputs["sdpa"], atol=3e-2, rtol=3e-2)
