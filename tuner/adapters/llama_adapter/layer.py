"""The adaption prompt of one attention layer: K learnable vectors and a zero-init gate.

For the current tokens' queries Q (rotated like the base attention's), the layer adds

    delta = gate * softmax(Q @ Kp^T * scaling) @ Vp,    Kp = k_proj(P), Vp = v_proj(P)

to the input of the attention's output projection, where P is the [K, hidden] prompt (plus the
projected image feature in multimodal layers), k_proj/v_proj are the layer's frozen projections,
no rotary embedding is applied to Kp, `scaling` is the base attention's, and the softmax runs
over the K prompt positions alone (arXiv 2303.16199, eq. 7-8: a separate softmax for the prompt
scores, scaled by a gate initialised at zero). Adding before the output projection equals
adding o_proj(delta) after it, without an extra matmul and with the projection bias applied once.
With a zero gate `delta` is exactly zero, so the adapted model starts as the base model.
"""

from __future__ import annotations

import torch
from torch import nn

from tuner.adapters.llama_adapter.arch import AttentionLayout, HeadShape
from tuner.adapters.llama_adapter.config import GATE_TANH_PER_HEAD


class AdaptionPrompt(nn.Module):
    """Prompt vectors [K, hidden] and gate of one adapted attention module.

    Attached as `<attention>.llama_adapter`, so the base model's weight names do not change and
    DeepSpeed ZeRO-3 sees an ordinary submodule whose parameters it gathers when it is called.
    """

    def __init__(
        self,
        adapter_len: int,
        hidden_size: int,
        heads: HeadShape,
        gate_mode: str,
        receives_image: bool,
        init_std: float,
        dtype: torch.dtype,
        device: torch.device,
    ) -> None:
        super().__init__()
        self.heads = heads
        self.gate_mode = gate_mode
        self.receives_image = receives_image
        self.prompt = nn.Parameter(torch.empty(adapter_len, hidden_size, dtype=dtype, device=device))
        nn.init.normal_(self.prompt, std=init_std)
        gate_size = heads.num_heads if gate_mode == GATE_TANH_PER_HEAD else 1
        self.gate = nn.Parameter(torch.zeros(gate_size, dtype=dtype, device=device))
        # Per-forward values captured by hooks (see model.py); never saved, never trained.
        self.pending: dict[str, object] = {}

    def extra_repr(self) -> str:
        k, hidden = self.prompt.shape
        return f"adapter_len={k}, hidden={hidden}, gate={self.gate_mode}, image={self.receives_image}"

    def gate_factor(self) -> torch.Tensor:
        """The multiplier of the prompt attention probabilities, shaped to broadcast over [B, H, T, K]."""
        if self.gate_mode == GATE_TANH_PER_HEAD:
            return torch.tanh(self.gate).view(1, -1, 1, 1)
        return self.gate

    def forward(
        self,
        attention: nn.Module,
        layout: AttentionLayout,
        queries: torch.Tensor,
        image_feature: torch.Tensor | None,
    ) -> torch.Tensor:
        """Gated attention of `queries` [B, H, T, hd] over the prompt; returns [B, T, H * hd].

        `image_feature` [B_img, hidden] (zero rows for examples without an image) is added to every
        prompt vector of this layer when the layer receives images.
        """
        batch, num_heads, length, head_dim = queries.shape
        prompt = self.prompt
        if image_feature is not None and self.receives_image:
            prompt = prompt.unsqueeze(0) + _match_batch(image_feature, batch).to(prompt.dtype).unsqueeze(1)
        keys, values = layout.prompt_keys_values(attention, prompt)
        keys = _split_heads(keys, self.heads)
        values = _split_heads(values, self.heads)
        scores = torch.matmul(queries, keys.transpose(-1, -2).to(queries.dtype)) * self.heads.scaling
        probs = torch.softmax(scores, dim=-1, dtype=torch.float32).to(queries.dtype)
        probs = probs * self.gate_factor().to(queries.dtype)
        delta = torch.matmul(probs, values.to(queries.dtype))
        return delta.transpose(1, 2).reshape(batch, length, num_heads * head_dim)


def _split_heads(projected: torch.Tensor, heads: HeadShape) -> torch.Tensor:
    """[b, K, kv_heads * hd] (b may be absent) -> [b, heads, K, hd], repeating kv heads for GQA/MQA."""
    if projected.dim() == 2:
        projected = projected.unsqueeze(0)
    b, k, _ = projected.shape
    per_head = projected.view(b, k, heads.num_kv_heads, heads.head_dim).transpose(1, 2)
    groups = heads.num_heads // heads.num_kv_heads
    # Query head h reads kv head h // groups, as transformers' repeat_kv lays them out.
    return per_head.repeat_interleave(groups, dim=1) if groups > 1 else per_head


def _match_batch(image_feature: torch.Tensor, batch: int) -> torch.Tensor:
    """Repeat per-example image features when generate() expanded the batch (beams, num_return_sequences)."""
    if image_feature.shape[0] == batch:
        return image_feature
    if batch % image_feature.shape[0]:
        raise ValueError(
            f"LLaMA-Adapter got image features for {image_feature.shape[0]} examples but a batch of {batch}"
        )
    return image_feature.repeat_interleave(batch // image_feature.shape[0], dim=0)
