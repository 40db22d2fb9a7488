"""The prompt attention is exactly the documented formula (the one a vLLM plugin re-implements).

delta = gate_factor * softmax(rot(q) @ (P Wk^T)^T * scaling) @ (P Wv^T), added to the input of
the output projection; computed here independently from the weights with transformers' own rotary
and repeat_kv helpers, for one adapted layer whose inputs are those of the base model.
"""

from __future__ import annotations

import pytest
import torch
from transformers.models.llama.modeling_llama import apply_rotary_pos_emb, repeat_kv

from llama_adapter_helpers import adapted, load_base, open_gates, token_batch
from tuner.adapters.llama_adapter import LlamaAdapterConfig


def _capture(model, attention, projection, store: dict) -> None:
    def before_attention(module, args, kwargs):
        store["hidden"] = kwargs.get("hidden_states", args[0] if args else None)
        store["rotary"] = kwargs.get("position_embeddings")

    attention.register_forward_pre_hook(before_attention, with_kwargs=True)
    projection.register_forward_pre_hook(lambda module, args: store.__setitem__("o_input", args[0]))


@pytest.mark.parametrize("arch", ["llama", "mistral", "mistral_head_dim", "gpt_bigcode"])
def test_prompt_attention_equals_the_documented_formula(tiny_model_dirs, arch):
    folder = tiny_model_dirs[arch]
    model = adapted(folder, LlamaAdapterConfig(adapter_len=5, adapter_layers=[1]), seed=8)
    open_gates(model)
    base = load_base(folder)
    bigcode = arch == "gpt_bigcode"
    layer_of = (lambda m: m.transformer.h[1].attn) if bigcode else (lambda m: m.model.layers[1].self_attn)
    ours, reference = {}, {}
    _capture(model, layer_of(model), layer_of(model).c_proj if bigcode else layer_of(model).o_proj, ours)
    _capture(base, layer_of(base), layer_of(base).c_proj if bigcode else layer_of(base).o_proj, reference)
    ids = token_batch(model, batch=2, length=9)
    with torch.no_grad():
        model(ids)
        base(ids)
        attention = layer_of(model)
        adaption = attention.llama_adapter
        x, prompt = reference["hidden"], adaption.prompt
        batch, length = x.shape[:2]
        if bigcode:
            heads, kv_heads, head_dim = attention.num_heads, attention.kv_heads, attention.head_dim
            q, _, _ = attention.c_attn(x).split((attention.embed_dim, attention.kv_dim, attention.kv_dim), dim=-1)
            _, k, v = attention.c_attn(prompt).split((attention.embed_dim, attention.kv_dim, attention.kv_dim), dim=-1)
            q = q.view(batch, length, heads, head_dim).transpose(1, 2)
        else:
            config = model.config
            heads, kv_heads, head_dim = config.num_attention_heads, config.num_key_value_heads, attention.head_dim
            q = (x @ attention.q_proj.weight.T).view(batch, length, heads, head_dim).transpose(1, 2)
            cos, sin = reference["rotary"]
            q, _ = apply_rotary_pos_emb(q, q, cos, sin)
            k, v = prompt @ attention.k_proj.weight.T, prompt @ attention.v_proj.weight.T
        k = repeat_kv(k.view(1, -1, kv_heads, head_dim).transpose(1, 2), heads // kv_heads)
        v = repeat_kv(v.view(1, -1, kv_heads, head_dim).transpose(1, 2), heads // kv_heads)
        probs = torch.softmax(q @ k.transpose(-1, -2) * head_dim**-0.5, dim=-1)
        delta = (torch.tanh(adaption.gate).view(1, -1, 1, 1) * probs) @ v
        expected = reference["o_input"] + delta.transpose(1, 2).reshape(batch, length, heads * head_dim)
    assert not torch.allclose(ours["o_input"], reference["o_input"], atol=1e-4)
    torch.testing.assert_close(ours["o_input"], expected, atol=1e-5, rtol=1e-5)
