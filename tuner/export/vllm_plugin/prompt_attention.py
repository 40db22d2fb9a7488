"""LLaMA-Adapter's gated prompt attention as a vLLM module, shared by the Llama and GPTBigCode models.

For the current tokens' queries Q (as the layer's attention sees them: rotated for Llama, plain for
GPTBigCode) the module returns

    delta = gate_factor * softmax(Q @ Kp^T * scaling) @ Vp

which the attention module adds to its attention output before the output projection, exactly as
tuner's transformers implementation does (tuner/adapters/llama_adapter/layer.py; the formula is
also written into each exported config.json under `llama_adapter.computation`).

Why no change to vLLM's paged KV cache: Kp/Vp are the layer's own frozen key/value projections of
the K prompt vectors, without rotary embedding, so they depend on neither the sequence nor the
position. They are computed once, after the weights are loaded (`precompute`, called from the
model's `process_weights_after_loading`, by calling the layer's qkv projection on the prompt, which
also applies any projection bias), and kept as non-persistent buffers. Each token's term then
needs only its own query, so vLLM's flattened token batches (prefill and decode mixed) need no
sequence bookkeeping here. The operations run in the same order and precision as tuner's
implementation (scaling after the score matmul, gate after the float32 softmax): folding the
scaling and gate into the buffers is the same algebra, but its different rounding turned one of
64 greedy 128-token continuations in bench/vllm_adapter_throughput.py away from transformers'.

Tensor parallelism: the qkv projection of a rank yields that rank's query heads and KV heads, so
the prompt keys/values come out sharded exactly like the attention heads; per-head gates are
sliced to the rank's heads when loaded. The prompt itself is replicated.
"""

from __future__ import annotations

import logging
from typing import Callable

import torch
from torch import nn

from tuner.adapters.llama_adapter.config import GATE_TANH_PER_HEAD, LlamaAdapterConfig
from tuner.export.hf_model import adapter_config_of
from tuner.adapters.llama_adapter.model import ADAPTER_MODULE_NAME  # attribute holding a layer's prompt attention

logger = logging.getLogger(__name__)

ProjectKeysValues = Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]
"""prompt [K, hidden] -> this rank's keys, values [K, local_kv_heads * head_dim]."""


class PromptAttention(nn.Module):
    """Prompt, gate and precomputed prompt keys/values of one adapted attention layer (one TP rank).

    Args:
        adapter: the exported adapter config (K and the gate mode).
        hidden_size: model hidden size (the prompt's width).
        total_num_heads: query heads of the whole layer (the per-head gate's saved length).
        num_heads, num_kv_heads: query and KV heads on this rank.
        head_dim: head size.
        scaling: softmax scaling of the base attention.
    """

    def __init__(self, adapter: LlamaAdapterConfig, hidden_size: int, total_num_heads: int, num_heads: int,
                 num_kv_heads: int, head_dim: int, scaling: float) -> None:
        super().__init__()
        from vllm.distributed import get_tensor_model_parallel_rank
        from vllm.model_executor.utils import set_weight_attrs

        self.num_heads = num_heads
        self.num_kv_heads = num_kv_heads
        self.head_dim = head_dim
        self.scaling = scaling
        self.per_head_gate = adapter.gate == GATE_TANH_PER_HEAD
        self.first_head = get_tensor_model_parallel_rank() * num_heads
        self.total_num_heads = total_num_heads
        length = adapter.adapter_len
        self.prompt = nn.Parameter(torch.empty(length, hidden_size), requires_grad=False)
        self.gate = nn.Parameter(torch.empty(num_heads if self.per_head_gate else 1), requires_grad=False)
        set_weight_attrs(self.gate, {"weight_loader": self._load_gate})
        # Derived from the weights by `precompute`: Kp^T [heads, hd, K], Vp [heads, K, hd], gate factor [heads, 1, 1].
        self.register_buffer("keys_t", torch.zeros(num_heads, head_dim, length), persistent=False)
        self.register_buffer("values", torch.zeros(num_heads, length, head_dim), persistent=False)
        self.register_buffer("gate_factor", torch.zeros(num_heads, 1, 1), persistent=False)

    def _load_gate(self, param: nn.Parameter, loaded: torch.Tensor) -> None:
        if self.per_head_gate:
            if loaded.shape != (self.total_num_heads,):
                raise ValueError(f"llama_adapter.gate has shape {tuple(loaded.shape)}, "
                                 f"expected ({self.total_num_heads},)")
            loaded = loaded.narrow(0, self.first_head, self.num_heads)
        elif loaded.numel() != 1:
            raise ValueError(f"llama_adapter.gate has shape {tuple(loaded.shape)}; the scalar gate mode expects (1,)")
        param.data.copy_(loaded.reshape(param.shape))

    @torch.no_grad()
    def precompute(self, project_keys_values: ProjectKeysValues) -> None:
        """Fill the key and value buffers from the loaded weights (call after loading)."""
        keys, values = project_keys_values(self.prompt)
        self.keys_t.copy_(self._per_query_head(keys).transpose(1, 2))
        self.values.copy_(self._per_query_head(values))
        factor = torch.tanh(self.gate) if self.per_head_gate else self.gate.expand(self.num_heads)
        self.gate_factor.copy_(factor.view(-1, 1, 1))

    def _per_query_head(self, projected: torch.Tensor) -> torch.Tensor:
        """[K, kv_heads * hd] -> [heads, K, hd]; query head h reads KV head h // (heads / kv_heads)."""
        length = projected.shape[0]
        per_kv_head = projected.view(length, self.num_kv_heads, self.head_dim).transpose(0, 1)
        return per_kv_head.repeat_interleave(self.num_heads // self.num_kv_heads, dim=0)

    def forward(self, queries: torch.Tensor) -> torch.Tensor:
        """Gated prompt attention of queries [tokens, heads * hd]; returns the same shape."""
        tokens = queries.shape[0]
        per_head = queries.view(tokens, self.num_heads, self.head_dim).transpose(0, 1)
        scores = torch.matmul(per_head, self.keys_t) * self.scaling
        probs = torch.softmax(scores, dim=-1, dtype=torch.float32).to(queries.dtype) * self.gate_factor
        delta = torch.matmul(probs, self.values)
        return delta.transpose(0, 1).reshape(tokens, self.num_heads * self.head_dim)


def attach_prompt_attention(attention: nn.Module, config, prefix: str) -> None:
    """Set `attention.llama_adapter` to its layer's PromptAttention, or None if the layer is not adapted.

    `prefix` is the attention module's vLLM prefix (it holds the layer index). The module must
    carry the shape attributes vLLM's attention modules have: hidden_size, total_num_heads,
    num_heads and num_kv_heads (on this rank), head_dim and scaling.
    """
    from vllm.model_executor.models.utils import extract_layer_index

    adapter = adapter_config_of(config)
    text_layers, _ = adapter.resolve_layers(config.num_hidden_layers)
    if extract_layer_index(prefix) not in text_layers:
        setattr(attention, ADAPTER_MODULE_NAME, None)
        return
    attention.add_module(ADAPTER_MODULE_NAME, PromptAttention(
        adapter, hidden_size=attention.hidden_size, total_num_heads=attention.total_num_heads,
        num_heads=attention.num_heads, num_kv_heads=attention.num_kv_heads, head_dim=attention.head_dim,
        scaling=attention.scaling,
    ))


def through_fused_qkv(qkv_linear: nn.Module, q_size: int, kv_size: int) -> ProjectKeysValues:
    """Prompt keys/values from a vLLM fused qkv linear: the key and value slices of its output, no rotary."""
    def keys_values(prompt: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        qkv, _ = qkv_linear(prompt)
        _, keys, values = qkv.split([q_size, kv_size, kv_size], dim=-1)
        return keys, values

    return keys_values


def precompute_prompt_attention(model: nn.Module, qkv_linear_name: str) -> None:
    """Call `precompute` on every adapted attention module of `model` (after its weights are loaded).

    Each attention module must have its fused qkv linear under `qkv_linear_name` and the sizes of
    its local query and KV slices as `q_size` and `kv_size` (as vLLM's attention modules do).
    """
    count = 0
    for module in model.modules():
        prompt_attention = getattr(module, ADAPTER_MODULE_NAME, None)
        if isinstance(prompt_attention, PromptAttention):
            project = through_fused_qkv(getattr(module, qkv_linear_name), module.q_size, module.kv_size)
            prompt_attention.precompute(project)
            count += 1
    logger.info("LLaMA-Adapter: prompt keys/values computed for %d adapted layers", count)
