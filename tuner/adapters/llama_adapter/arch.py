"""Per-architecture table: where the attention modules are and how to read queries, keys and values.

The adapter never edits the base attention code. For each supported family it needs:
- the decoder layers and, in each, the attention module;
- the module whose output holds the current tokens' queries (`q_proj`, or the fused `c_attn`);
- how to get the prompt keys/values by calling the frozen projection module(s) on the prompt;
- the output projection whose input receives the gated prompt attention;
- whether queries carry rotary embeddings (Llama/Mistral) or not (GPTBigCode: absolute positions).

Adding a family means adding one `AttentionLayout` here and a tiny model to the tests.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn


@dataclass(frozen=True)
class HeadShape:
    num_heads: int
    num_kv_heads: int
    head_dim: int
    scaling: float


@dataclass(frozen=True)
class AttentionLayout:
    """How LLaMA-Adapter reads one model family's attention.

    Attributes:
        layers_path: dotted path from the *ForCausalLM model to the list of decoder layers.
        attention_name: attribute of a decoder layer holding its self-attention module.
        query_source: attribute of the attention module whose output contains the queries.
        output_proj: attribute of the attention module projecting heads back to the hidden size.
        key_value_source: where prompt keys/values come from, in words (recorded in saved adapters).
        rotary: queries are rotated with the `position_embeddings` (cos, sin) passed to attention.
        head_shape: reads heads, kv heads, head dim and softmax scaling from an attention module.
        queries: [..., T, out] output of `query_source` -> [..., T, heads * head_dim] queries.
        prompt_keys_values: (attention, prompt [..., K, hidden]) -> keys, values [..., K, kv_heads * head_dim].
    """

    layers_path: str
    attention_name: str
    query_source: str
    output_proj: str
    key_value_source: str
    rotary: bool
    head_shape: Callable[[nn.Module], HeadShape]
    queries: Callable[[nn.Module, torch.Tensor], torch.Tensor]
    prompt_keys_values: Callable[[nn.Module, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


# --- Llama / Mistral: separate q/k/v projections, rotary queries, o_proj -------------------------

def _llama_head_shape(attn: nn.Module) -> HeadShape:
    config = attn.config
    return HeadShape(config.num_attention_heads, config.num_key_value_heads, attn.head_dim, attn.scaling)


def _llama_queries(attn: nn.Module, q_proj_output: torch.Tensor) -> torch.Tensor:
    return q_proj_output


def _llama_prompt_keys_values(attn: nn.Module, prompt: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    # Module calls (not reads of .weight) so DeepSpeed ZeRO-3 gathers the partitioned weights.
    return attn.k_proj(prompt), attn.v_proj(prompt)


_LLAMA = AttentionLayout(
    layers_path="model.layers",
    attention_name="self_attn",
    query_source="q_proj",
    output_proj="o_proj",
    key_value_source="k_proj and v_proj",
    rotary=True,
    head_shape=_llama_head_shape,
    queries=_llama_queries,
    prompt_keys_values=_llama_prompt_keys_values,
)


# --- GPTBigCode / StarCoder: fused c_attn, multi-query, absolute positions, c_proj with bias -----

def _bigcode_head_shape(attn: nn.Module) -> HeadShape:
    return HeadShape(attn.num_heads, attn.kv_heads, attn.head_dim, attn.scaling)


def _bigcode_split(attn: nn.Module, fused: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Split c_attn's output into q [.., H*hd], k and v [.., kv_heads*hd], as GPTBigCodeAttention does."""
    if attn.multi_query:
        return fused.split((attn.embed_dim, attn.kv_dim, attn.kv_dim), dim=-1)
    # Multi-head layout interleaves per head: [q_h | k_h | v_h] for each head h.
    per_head = fused.view(*fused.shape[:-1], attn.num_heads, 3 * attn.head_dim)
    q, k, v = per_head.split(attn.head_dim, dim=-1)
    return tuple(t.reshape(*fused.shape[:-1], attn.num_heads * attn.head_dim) for t in (q, k, v))


def _bigcode_queries(attn: nn.Module, c_attn_output: torch.Tensor) -> torch.Tensor:
    return _bigcode_split(attn, c_attn_output)[0]


def _bigcode_prompt_keys_values(attn: nn.Module, prompt: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    _, keys, values = _bigcode_split(attn, attn.c_attn(prompt))
    return keys, values


_GPT_BIGCODE = AttentionLayout(
    layers_path="transformer.h",
    attention_name="attn",
    query_source="c_attn",
    output_proj="c_proj",
    key_value_source="the key and value slices of c_attn",
    rotary=False,
    head_shape=_bigcode_head_shape,
    queries=_bigcode_queries,
    prompt_keys_values=_bigcode_prompt_keys_values,
)


LAYOUTS: dict[str, AttentionLayout] = {
    "llama": _LLAMA,
    "mistral": _LLAMA,
    "gpt_bigcode": _GPT_BIGCODE,
}


# Model types of exported adapter folders (tuner.export.hf_model): the base family's
# modules under their own type, so a folder can never load as the bare base model.
EXPORTED_MODEL_TYPES: dict[str, str] = {
    "llama_adapter": "llama",
    "mistral_adapter": "mistral",
    "gpt_bigcode_adapter": "gpt_bigcode",
}


class UnsupportedModelError(ValueError):
    """The model's family has no entry in the LLaMA-Adapter architecture table."""


def layout_for(config) -> AttentionLayout:
    """The layout of a model config's family.

    Raises:
        UnsupportedModelError: the model type is not in the table (the message lists those that are).
    """
    model_type = getattr(config, "model_type", None)
    model_type = EXPORTED_MODEL_TYPES.get(model_type, model_type)
    if model_type not in LAYOUTS:
        raise UnsupportedModelError(
            f"LLaMA-Adapter does not support model type {model_type!r}; supported: {', '.join(sorted(LAYOUTS))}"
        )
    return LAYOUTS[model_type]


def decoder_layers(model: nn.Module, layout: AttentionLayout) -> nn.ModuleList:
    """The decoder layers of a *ForCausalLM model, found through the layout's path."""
    module = model
    for name in layout.layers_path.split("."):
        if not hasattr(module, name):
            raise UnsupportedModelError(
                f"{type(model).__name__} has no `{layout.layers_path}`: pass the *ForCausalLM model "
                f"(e.g. from AutoModelForCausalLM.from_pretrained)"
            )
        module = getattr(module, name)
    return module


def rotate_queries(queries: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotary embedding of queries [B, H, T, hd] in transformers' Llama convention (rotate_half).

    cos/sin are the [B, T, hd] tensors the model passes to its attention as `position_embeddings`,
    so cached generation, custom position ids and packed sequences all rotate as the base does.
    """
    cos, sin = cos.unsqueeze(1), sin.unsqueeze(1)
    half = queries.shape[-1] // 2
    rotated_half = torch.cat((-queries[..., half:], queries[..., :half]), dim=-1)
    return queries * cos + rotated_half * sin
