"""vLLM model for exported LLaMA-Adapter Llama (and sliding-window-free Mistral) checkpoints.

Subclasses vLLM's own Llama classes: only the attention module changes. Its forward is vLLM's
LlamaAttention.forward (qkv_proj -> split -> rotary -> paged attention -> o_proj) with the gated
prompt attention of the rotated queries added to the attention output before o_proj.
"""

from __future__ import annotations

import torch
from vllm.config import VllmConfig
from vllm.model_executor.models.llama import LlamaAttention, LlamaDecoderLayer, LlamaForCausalLM

from tuner.export.vllm_plugin.prompt_attention import attach_prompt_attention, precompute_prompt_attention


class LlamaAdapterAttention(LlamaAttention):
    """vLLM's LlamaAttention plus, in adapted layers, the gated prompt attention."""

    def __init__(self, *, config, prefix: str = "", **kwargs) -> None:
        super().__init__(config=config, prefix=prefix, **kwargs)
        attach_prompt_attention(self, config, prefix)

    def forward(self, positions: torch.Tensor, hidden_states: torch.Tensor) -> torch.Tensor:
        qkv, _ = self.qkv_proj(hidden_states)
        q, k, v = qkv.split([self.q_size, self.kv_size, self.kv_size], dim=-1)
        q, k = self.rotary_emb(positions, q, k)
        attn_output = self.attn(q, k, v)
        if self.llama_adapter is not None:
            attn_output = attn_output + self.llama_adapter(q)
        output, _ = self.o_proj(attn_output)
        return output


class LlamaAdapterDecoderLayer(LlamaDecoderLayer):
    def __init__(self, vllm_config: VllmConfig, prefix: str = "", config=None,
                 attn_layer_type: type = LlamaAdapterAttention) -> None:
        super().__init__(vllm_config, prefix=prefix, config=config, attn_layer_type=attn_layer_type)


class LlamaAdapterForCausalLM(LlamaForCausalLM):
    """`LlamaAdapterForCausalLM` / `MistralAdapterForCausalLM` folders written by `tuner export`."""

    def __init__(self, *, vllm_config: VllmConfig, prefix: str = "",
                 layer_type: type = LlamaAdapterDecoderLayer) -> None:
        config = vllm_config.model_config.hf_config
        if getattr(config, "sliding_window", None) is not None:
            raise ValueError(f"{config.name_or_path}: sliding_window {config.sliding_window} is set; tuner's vLLM "
                             "adapter model has no sliding-window attention (`tuner export` refuses such models)")
        super().__init__(vllm_config=vllm_config, prefix=prefix, layer_type=layer_type)

    def process_weights_after_loading(self) -> None:
        """vLLM's model-level hook after loading: compute each layer's prompt keys/values once."""
        precompute_prompt_attention(self, "qkv_proj")  # prompt keys get no rotary embedding
