"""Adding LLaMA-Adapter to a transformers causal LM, in place, without touching its attention code.

For each adapted layer three hooks work together (the base attention itself is unchanged, so it
runs with eager, SDPA or flash-attention kernels and with the KV cache as before):

1. a forward pre-hook on the attention module records the rotary `position_embeddings` (cos, sin)
   of the current tokens and takes the image feature out of the keyword arguments;
2. a forward hook on the query projection (`q_proj`, or GPTBigCode's fused `c_attn`) keeps its
   output, the current tokens' queries before rotation;
3. a forward pre-hook on the output projection (`o_proj` / `c_proj`) rotates those queries,
   calls the layer's `AdaptionPrompt` and adds the gated prompt attention to the projection input.

With a KV cache only the new tokens pass through the projections, and their queries are exactly
what the prompt attention needs (prompt keys do not depend on the cache), so cached generation
needs nothing special. Under gradient checkpointing the recomputed forward fires the same hooks.

Only the adapter's parameters train. Layers below the lowest adapted layer receive inputs that
do not require grad, so autograd records nothing there (unless V2 bias tuning or unfrozen norms
put trainable parameters in them).
"""

from __future__ import annotations

import torch
from torch import nn

from tuner.adapters.llama_adapter import bias_scale_norms, multimodal
from tuner.adapters.llama_adapter.arch import (
    AttentionLayout,
    decoder_layers,
    layout_for,
    rotate_queries,
)
from tuner.adapters.llama_adapter.config import LlamaAdapterConfig
from tuner.adapters.llama_adapter.layer import AdaptionPrompt
from tuner.models import count_parameters

ADAPTER_MODULE_NAME = "llama_adapter"
CONFIG_ATTRIBUTE = "llama_adapter_config"
PARAM_NAMES_ATTRIBUTE = "llama_adapter_param_names"


def add_llama_adapter(
    model: nn.Module, config: LlamaAdapterConfig, vision_model: nn.Module | None = None
) -> nn.Module:
    """Freeze `model` and add LLaMA-Adapter prompts, gates and the optional multimodal/V2 parts.

    Call it before wrapping the model with DeepSpeed (or any other engine). New parameters (and
    the vision encoder) take the dtype and device of the base model's weights; a later
    `model.to(...)` moves them with the rest. With gradient checkpointing, use
    `enable_gradient_checkpointing(model)` rather than transformers' default.

    Args:
        model: a Llama, Mistral or GPTBigCode *ForCausalLM (transformers), changed in place.
        config: what to add.
        vision_model: a transformers CLIPVisionModel for `config.multimodal`; if None it is loaded
            from `config.vision_model`.

    Returns:
        The same model, with `model.llama_adapter_config` set.

    Raises:
        UnsupportedModelError: the model family is not supported (the message lists those that are).
        LlamaAdapterConfigError: the layers asked for do not exist in this model.
        ValueError: the model already has a LLaMA-Adapter.
    """
    layout = layout_for(model.config)
    layers = decoder_layers(model, layout)
    if CONFIG_ATTRIBUTE in vars(model):
        raise ValueError("this model already has a LLaMA-Adapter; adapters do not stack")
    text_layers, image_layers = config.resolve_layers(len(layers))
    for param in model.parameters():
        param.requires_grad_(False)

    if config.bias_tuning:  # first, so the query capture below sees the tuned q projection
        bias_scale_norms.add_bias_scale(layers)
    if config.multimodal:
        _add_vision(model, config, vision_model)

    for index, layer in enumerate(layers):
        attention = getattr(layer, layout.attention_name)
        if index in text_layers or index in image_layers:
            reference = getattr(attention, layout.query_source).weight
            adaption = AdaptionPrompt(
                adapter_len=config.adapter_len,
                hidden_size=model.config.hidden_size,
                heads=layout.head_shape(attention),
                gate_mode=config.gate,
                receives_image=index in image_layers,
                init_std=config.prompt_init_std,
                dtype=reference.dtype,
                device=reference.device,
            )
            attention.add_module(ADAPTER_MODULE_NAME, adaption)
            _hook_attention(attention, adaption, layout)
        elif config.multimodal:
            attention.register_forward_pre_hook(multimodal.drop_image_feature_hook, with_kwargs=True)

    if config.unfreeze_norms:
        bias_scale_norms.unfreeze_norms(model, skip=getattr(model, multimodal.VISION_MODULE_NAME, None))

    setattr(model, CONFIG_ATTRIBUTE, config)
    setattr(model, PARAM_NAMES_ATTRIBUTE, tuple(n for n, p in model.named_parameters() if p.requires_grad))
    return model


def _add_vision(model: nn.Module, config: LlamaAdapterConfig, vision_model: nn.Module | None) -> None:
    reference = model.get_input_embeddings().weight
    encoder = multimodal.load_vision_encoder(config.vision_model, vision_model)
    encoder.to(device=reference.device, dtype=reference.dtype)
    vision = multimodal.VisualPromptEncoder(
        encoder,
        hidden_size=model.config.hidden_size,
        feature_layers=config.vision_feature_layers,
        proj_hidden=config.visual_proj_hidden,
        dtype=reference.dtype,
        device=reference.device,
    )
    model.add_module(multimodal.VISION_MODULE_NAME, vision)
    model.register_forward_pre_hook(multimodal.encode_images_hook, with_kwargs=True)


def _hook_attention(attention: nn.Module, adaption: AdaptionPrompt, layout: AttentionLayout) -> None:
    """Register the three hooks described in the module docstring."""
    pending = adaption.pending
    heads = adaption.heads

    def before_attention(module: nn.Module, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
        pending.clear()
        pending["capture"] = True
        pending["image"] = kwargs.pop(multimodal.IMAGE_FEATURE_KWARG, None)
        if layout.rotary:
            position_embeddings = kwargs.get("position_embeddings")
            if position_embeddings is None and len(args) > 1:
                position_embeddings = args[1]
            if position_embeddings is None:
                raise RuntimeError(
                    f"{type(module).__name__} was called without `position_embeddings`; LLaMA-Adapter needs "
                    "the rotary cos/sin the model passes to attention"
                )
            pending["rotary"] = position_embeddings
        return args, kwargs

    def capture_queries(module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
        # Only the first call per attention forward holds the tokens' queries; later calls of the
        # same projection (GPTBigCode's c_attn on the prompt) must not overwrite them.
        if pending.get("capture"):
            pending["capture"] = False
            pending["queries"] = output

    def add_prompt_attention(module: nn.Module, inputs: tuple) -> tuple:
        projected = pending.pop("queries", None)
        if projected is None:
            raise RuntimeError(f"LLaMA-Adapter: {layout.output_proj} ran before {layout.query_source} in this layer")
        hidden = inputs[0]
        batch, length = hidden.shape[:2]
        queries = layout.queries(attention, projected).reshape(batch, length, heads.num_heads, heads.head_dim)
        queries = queries.transpose(1, 2)
        if layout.rotary:
            cos, sin = pending["rotary"]
            queries = rotate_queries(queries, cos, sin)
        image = pending.get("image")
        pending.clear()
        delta = adaption(attention, layout, queries, image)
        return (hidden + delta.to(hidden.dtype),) + tuple(inputs[1:])

    attention.register_forward_pre_hook(before_attention, with_kwargs=True)
    getattr(attention, layout.query_source).register_forward_hook(capture_queries)
    getattr(attention, layout.output_proj).register_forward_pre_hook(add_prompt_attention)


def unwrap_adapted(model: nn.Module) -> nn.Module:
    """The adapted transformers model inside `model` (itself, or `.module` of a DeepSpeed/DDP wrapper).

    Raises:
        ValueError: no LLaMA-Adapter was added to the model.
    """
    # Look in __dict__, not hasattr: DeepSpeedEngine forwards unknown attributes to its module.
    inner = model
    while CONFIG_ATTRIBUTE not in vars(inner) and isinstance(getattr(inner, "module", None), nn.Module):
        inner = inner.module
    if CONFIG_ATTRIBUTE not in vars(inner):
        raise ValueError(f"{type(model).__name__} has no LLaMA-Adapter (call add_llama_adapter first)")
    return inner


def adapter_parameters(model: nn.Module) -> list[tuple[str, nn.Parameter]]:
    """(name, parameter) of everything LLaMA-Adapter trains, in model order."""
    inner = unwrap_adapted(model)
    named = dict(inner.named_parameters())
    return [(name, named[name]) for name in getattr(inner, PARAM_NAMES_ATTRIBUTE)]


def count_trainable_parameters(model: nn.Module) -> int:
    """Number of elements in parameters that require grad (full sizes under DeepSpeed ZeRO-3)."""
    return count_parameters(model)[0]


def enable_gradient_checkpointing(model: nn.Module) -> None:
    """Turn on transformers' gradient checkpointing in the way the adapter needs.

    Non-reentrant checkpointing lets gradients reach the prompts inside checkpointed layers even
    though the layer inputs do not require grad; transformers' extra hook that makes the input
    embeddings require grad is then removed, so frozen layers below the adapter stay graph-free.
    """
    inner = unwrap_adapted(model)
    inner.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    inner.disable_input_require_grads()
