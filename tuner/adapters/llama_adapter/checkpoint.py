"""Adapter-only checkpoints: `adapter_model.safetensors` plus `adapter_config.json`.

The safetensors file holds only what LLaMA-Adapter trains, under the adapted model's parameter
names (e.g. `model.layers.31.self_attn.llama_adapter.prompt`), a few MB for LLaMA-7B at K=10,
L=30. The JSON file holds the `LlamaAdapterConfig`, a fingerprint of the base model's shape that
`load_llama_adapter` checks, and a plain description of the computation, enough for another
runtime (a vLLM model plugin) to rebuild it without this package.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn

from tuner.adapters.llama_adapter import multimodal
from tuner.adapters.llama_adapter.arch import decoder_layers, layout_for
from tuner.adapters.llama_adapter.config import GATE_TANH_PER_HEAD, LlamaAdapterConfig
from tuner.adapters.llama_adapter.model import (
    CONFIG_ATTRIBUTE,
    PARAM_NAMES_ATTRIBUTE,
    add_llama_adapter,
    adapter_parameters,
    unwrap_adapted,
)
from tuner.engine import gathered

WEIGHTS_NAME = "adapter_model.safetensors"
CONFIG_NAME = "adapter_config.json"
METHOD = "llama_adapter"
FORMAT_VERSION = 1

_BASE_FINGERPRINT_KEYS = (
    "model_type", "hidden_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads",
    "head_dim", "multi_query", "vocab_size",
)


class AdapterMismatchError(ValueError):
    """A saved adapter does not fit the base model it is being loaded onto."""


def base_fingerprint(config) -> dict:
    """The shape of a base model that an adapter depends on."""
    return {key: getattr(config, key) for key in _BASE_FINGERPRINT_KEYS if getattr(config, key, None) is not None}


def llama_adapter_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """CPU copies of the adapter's trainable tensors, keyed by parameter name.

    Under DeepSpeed ZeRO-3 the parameters are gathered first, which is a collective: call this on
    every rank.
    """
    named = adapter_parameters(model)
    with gathered([p for _, p in named]):
        return {name: param.detach().to("cpu", copy=True).contiguous() for name, param in named}


def save_llama_adapter(model: nn.Module, out_dir: str | Path) -> Path:
    """Write the adapter (weights + config) to `out_dir`; returns the folder.

    Call on every rank under DeepSpeed ZeRO-3 (gathering is collective); only rank 0 writes.
    """
    from safetensors.torch import save_file

    inner = unwrap_adapted(model)
    state = llama_adapter_state_dict(inner)
    if torch.distributed.is_available() and torch.distributed.is_initialized() and torch.distributed.get_rank():
        return Path(out_dir)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    save_file(state, str(out_dir / WEIGHTS_NAME), metadata={"format": "pt", "method": METHOD})
    (out_dir / CONFIG_NAME).write_text(json.dumps(describe_adapter(inner), indent=2) + "\n", encoding="utf-8")
    return out_dir


def describe_adapter(model: nn.Module) -> dict:
    config: LlamaAdapterConfig = getattr(model, CONFIG_ATTRIBUTE)
    layout = layout_for(model.config)
    layers = decoder_layers(model, layout)
    text_layers, image_layers = config.resolve_layers(len(layers))
    first = getattr(layers[sorted(set(text_layers) | set(image_layers))[0]], layout.attention_name)
    heads = layout.head_shape(first)
    vision = getattr(model, multimodal.VISION_MODULE_NAME, None)
    return {
        "method": METHOD,
        "format_version": FORMAT_VERSION,
        "config": config.to_dict(),
        "base_model": {
            "fingerprint": base_fingerprint(model.config),
            "architectures": getattr(model.config, "architectures", None),
            "name_or_path": getattr(model.config, "_name_or_path", None),
        },
        "vision_model": multimodal.vision_fingerprint(vision.encoder) if vision is not None else None,
        "computation": {
            "layers_path": layout.layers_path,
            "attention": layout.attention_name,
            "text_prompt_layers": list(text_layers),
            "image_prompt_layers": list(image_layers),
            "prompt": f"{layout.layers_path}.<i>.{layout.attention_name}.llama_adapter.prompt [K, hidden]",
            "gate": f"{layout.layers_path}.<i>.{layout.attention_name}.llama_adapter.gate",
            "gate_factor": "tanh(gate[h]) for query head h" if config.gate == GATE_TANH_PER_HEAD else "gate[0]",
            "prompt_keys_values": f"the layer's frozen projections ({layout.key_value_source}) "
            "applied to the prompt (prompt + projected image feature in image layers); no rotary embedding",
            "queries": "the current tokens' queries as the base attention computes them, rotary included",
            "kv_head_of_query_head": f"h // {heads.num_heads // heads.num_kv_heads}",
            "scores": f"queries @ prompt_keys^T * {heads.scaling}, softmax over the K prompt positions only, in float32",
            "output": f"gate_factor * softmax(scores) @ prompt_values, heads concatenated, added to the input of "
            f"{layout.output_proj}",
            "v2_bias_tuning": "every decoder nn.Linear computes scale * (W x + bias)" if config.bias_tuning else None,
        },
    }


def load_llama_adapter(
    base_model: nn.Module, adapter_dir: str | Path, vision_model: nn.Module | None = None
) -> nn.Module:
    """Add a saved adapter to `base_model` (in place) and load its weights; returns the model.

    Load before wrapping with DeepSpeed. The base model is checked against the saved fingerprint
    before anything is changed.

    Raises:
        FileNotFoundError: the folder lacks the adapter files.
        AdapterMismatchError: the base (or vision) model differs in shape from the one the adapter
            was trained on, or the weights file does not hold exactly the adapter's tensors.
    """
    from safetensors.torch import load_file

    adapter_dir = Path(adapter_dir)
    for name in (CONFIG_NAME, WEIGHTS_NAME):
        if not (adapter_dir / name).is_file():
            raise FileNotFoundError(f"{adapter_dir / name} not found: not a LLaMA-Adapter folder (save_llama_adapter writes it)")
    saved = json.loads((adapter_dir / CONFIG_NAME).read_text(encoding="utf-8"))
    if saved.get("method") != METHOD:
        raise AdapterMismatchError(f"{adapter_dir / CONFIG_NAME}: method is {saved.get('method')!r}, not {METHOD!r}")
    _check_fingerprint(adapter_dir, "base model", saved["base_model"]["fingerprint"], base_fingerprint(base_model.config))
    config = LlamaAdapterConfig.from_dict(saved["config"])
    if config.multimodal:
        vision_model = multimodal.load_vision_encoder(config.vision_model, vision_model)
        _check_fingerprint(adapter_dir, "vision model", saved["vision_model"], multimodal.vision_fingerprint(vision_model))

    tensors = load_file(str(adapter_dir / WEIGHTS_NAME))
    model = add_llama_adapter(base_model, config, vision_model=vision_model)
    expected = set(getattr(model, PARAM_NAMES_ATTRIBUTE))
    missing, unexpected = sorted(expected - set(tensors)), sorted(set(tensors) - expected)
    if missing or unexpected:
        raise AdapterMismatchError(
            f"{adapter_dir / WEIGHTS_NAME} does not match its config: missing {missing[:5]}, unexpected {unexpected[:5]}"
        )
    named = dict(model.named_parameters())
    with torch.no_grad():
        for name, tensor in tensors.items():
            if named[name].shape != tensor.shape:
                raise AdapterMismatchError(
                    f"{adapter_dir / WEIGHTS_NAME}: {name} has shape {tuple(tensor.shape)}, the model expects "
                    f"{tuple(named[name].shape)}"
                )
            named[name].copy_(tensor)
    return model


def _check_fingerprint(adapter_dir: Path, what: str, saved: dict, actual: dict) -> None:
    differences = [
        f"{key} {saved.get(key)!r} != {actual.get(key)!r}"
        for key in sorted(set(saved) | set(actual))
        if saved.get(key) != actual.get(key)
    ]
    if differences:
        raise AdapterMismatchError(
            f"the adapter in {adapter_dir} was trained on a different {what} (saved vs this one: "
            f"{'; '.join(differences)})"
        )
