"""vLLM model for exported LLaMA-Adapter GPTBigCode / StarCoder checkpoints (multi-query attention).

vLLM 0.32 has no native GPTBigCode model (it serves the family through its Transformers backend,
whose attention runs inside transformers' modeling code), so this is a native one built from vLLM's
layers: fused `c_attn` loaded into a QKVParallelLinear (queries, then one shared key and value
head, as StarCoder stores them), paged attention, `c_proj` with bias, learned absolute positions,
and vLLM's GPT-2 MLP (GPTBigCode's MLP is GPT-2's with nn.Linear weights). Adapted layers add the
gated prompt attention of the queries to the attention output before `c_proj`.

Multi-head GPTBigCode checkpoints (`multi_query: false`, per-head interleaved c_attn) are refused:
no public StarCoder model uses them. Pipeline parallelism is not supported (vLLM refuses it for a
model without SupportsPP); tensor parallelism is.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn
from vllm.config import CacheConfig, VllmConfig
from vllm.distributed import get_tensor_model_parallel_world_size
from vllm.model_executor.layers.attention import Attention
from vllm.model_executor.layers.layernorm import LayerNorm
from vllm.model_executor.layers.linear import QKVParallelLinear, RowParallelLinear
from vllm.model_executor.layers.logits_processor import LogitsProcessor
from vllm.model_executor.layers.quantization import QuantizationConfig
from vllm.model_executor.layers.vocab_parallel_embedding import ParallelLMHead, VocabParallelEmbedding
from vllm.model_executor.models.gpt2 import GPT2MLP
from vllm.model_executor.models.utils import (
    AutoWeightsLoader,
    WeightsMapper,
    maybe_prefix,
)

from tuner.export.vllm_plugin.prompt_attention import attach_prompt_attention, precompute_prompt_attention


class GPTBigCodeAdapterAttention(nn.Module):
    def __init__(self, config, cache_config: CacheConfig | None, quant_config: QuantizationConfig | None,
                 prefix: str) -> None:
        super().__init__()
        tp_size = get_tensor_model_parallel_world_size()
        self.hidden_size = config.hidden_size
        self.total_num_heads = config.num_attention_heads
        if self.total_num_heads % tp_size:
            raise ValueError(f"{self.total_num_heads} attention heads do not split over tensor_parallel_size {tp_size}")
        self.num_heads = self.total_num_heads // tp_size
        self.head_dim = self.hidden_size // self.total_num_heads
        self.num_kv_heads = 1  # multi-query: one key/value head, replicated on every rank
        self.q_size = self.num_heads * self.head_dim
        self.kv_size = self.head_dim
        self.scaling = self.head_dim**-0.5 if config.scale_attn_weights else 1.0
        self.c_attn = QKVParallelLinear(self.hidden_size, self.head_dim, self.total_num_heads, 1, bias=True,
                                        quant_config=quant_config, prefix=f"{prefix}.c_attn")
        self.c_proj = RowParallelLinear(self.hidden_size, self.hidden_size, bias=True,
                                        quant_config=quant_config, prefix=f"{prefix}.c_proj")
        self.attn = Attention(self.num_heads, self.head_dim, scale=self.scaling, num_kv_heads=self.num_kv_heads,
                              cache_config=cache_config, quant_config=quant_config, prefix=f"{prefix}.attn")
        attach_prompt_attention(self, config, prefix)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        qkv, _ = self.c_attn(hidden_states)
        q, k, v = qkv.split([self.q_size, self.kv_size, self.kv_size], dim=-1)
        attn_output = self.attn(q, k, v)
        if self.llama_adapter is not None:
            attn_output = attn_output + self.llama_adapter(q)
        output, _ = self.c_proj(attn_output)
        return output


class GPTBigCodeAdapterBlock(nn.Module):
    def __init__(self, config, cache_config: CacheConfig | None, quant_config: QuantizationConfig | None,
                 prefix: str) -> None:
        super().__init__()
        inner_dim = config.n_inner if config.n_inner is not None else 4 * config.hidden_size
        self.ln_1 = LayerNorm(config.hidden_size, eps=config.layer_norm_epsilon)
        self.attn = GPTBigCodeAdapterAttention(config, cache_config, quant_config, prefix=f"{prefix}.attn")
        self.ln_2 = LayerNorm(config.hidden_size, eps=config.layer_norm_epsilon)
        self.mlp = GPT2MLP(inner_dim, config, quant_config, prefix=f"{prefix}.mlp")

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        hidden_states = hidden_states + self.attn(self.ln_1(hidden_states))
        return hidden_states + self.mlp(self.ln_2(hidden_states))


class GPTBigCodeAdapterModel(nn.Module):
    def __init__(self, *, vllm_config: VllmConfig, prefix: str = "") -> None:
        super().__init__()
        config = vllm_config.model_config.hf_config
        if not config.multi_query:
            raise ValueError(f"{config.name_or_path}: multi-head GPTBigCode (multi_query: false) is not supported "
                             "by tuner's vLLM adapter model; only multi-query (StarCoder-style) checkpoints are")
        if config.add_cross_attention:
            raise ValueError(f"{config.name_or_path}: GPTBigCode with cross attention is not supported")
        self.wte = VocabParallelEmbedding(config.vocab_size, config.hidden_size,
                                          quant_config=vllm_config.quant_config, prefix=f"{prefix}.wte")
        self.wpe = nn.Embedding(config.max_position_embeddings, config.hidden_size)
        self.h = nn.ModuleList([
            GPTBigCodeAdapterBlock(config, vllm_config.cache_config, vllm_config.quant_config, prefix=f"{prefix}.h.{i}")
            for i in range(config.num_hidden_layers)
        ])
        self.ln_f = LayerNorm(config.hidden_size, eps=config.layer_norm_epsilon)

    def embed_input_ids(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.wte(input_ids)

    def forward(self, input_ids: torch.Tensor | None, positions: torch.Tensor,
                inputs_embeds: torch.Tensor | None = None) -> torch.Tensor:
        if inputs_embeds is None:
            inputs_embeds = self.embed_input_ids(input_ids)
        hidden_states = inputs_embeds + self.wpe(positions)
        for block in self.h:
            hidden_states = block(hidden_states)
        return self.ln_f(hidden_states)


class GPTBigCodeAdapterForCausalLM(nn.Module):
    """`GPTBigCodeAdapterForCausalLM` folders written by `tuner export`."""

    # Causal-mask buffers of old checkpoints; ".attn.bias" does not match ".attn.c_attn.bias".
    hf_to_vllm_mapper = WeightsMapper(orig_to_new_substr={".attn.bias": None, ".attn.masked_bias": None})

    def __init__(self, *, vllm_config: VllmConfig, prefix: str = "") -> None:
        super().__init__()
        config = vllm_config.model_config.hf_config
        self.config = config
        self.transformer = GPTBigCodeAdapterModel(vllm_config=vllm_config, prefix=maybe_prefix(prefix, "transformer"))
        self.lm_head = ParallelLMHead(config.vocab_size, config.hidden_size, quant_config=vllm_config.quant_config,
                                      prefix=maybe_prefix(prefix, "lm_head"))
        if config.tie_word_embeddings:
            self.lm_head = self.lm_head.tie_weights(self.transformer.wte)
        self.logits_processor = LogitsProcessor(config.vocab_size)

    def embed_input_ids(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.transformer.embed_input_ids(input_ids)

    def forward(self, input_ids: torch.Tensor | None, positions: torch.Tensor, intermediate_tensors=None,
                inputs_embeds: torch.Tensor | None = None) -> torch.Tensor:
        return self.transformer(input_ids, positions, inputs_embeds)

    def compute_logits(self, hidden_states: torch.Tensor) -> torch.Tensor | None:
        return self.logits_processor(self.lm_head, hidden_states)

    def load_weights(self, weights: Iterable[tuple[str, torch.Tensor]]) -> set[str]:
        # A tied lm_head is the embedding's parameter: the loader fills it once, under the first name.
        return AutoWeightsLoader(self).load_weights(weights, mapper=self.hf_to_vllm_mapper)

    def process_weights_after_loading(self) -> None:
        """vLLM's model-level hook after loading: compute each layer's prompt keys/values once."""
        precompute_prompt_attention(self, "c_attn")
