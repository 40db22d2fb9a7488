"""Configuration of LLaMA-Adapter (arXiv 2303.16199) and its V2 options (arXiv 2304.15010).

Field names follow the papers: K = `adapter_len` prompt vectors in each of the top L =
`adapter_layers` layers. Errors name the field as it is written in a recipe's `llama_adapter:`
section, so `llama_adapter.adapter_len must be ...` points straight at the YAML line to fix.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from tuner.config import ConfigError

GATE_TANH_PER_HEAD = "tanh_per_head"
GATE_SCALAR = "scalar"
GATE_MODES = (GATE_TANH_PER_HEAD, GATE_SCALAR)

_SECTION = "llama_adapter"


class LlamaAdapterConfigError(ConfigError):
    """A `LlamaAdapterConfig` field holds a value the method cannot use."""


def _fail(name: str, value: Any, requirement: str) -> None:
    raise LlamaAdapterConfigError(f"{_SECTION}.{name} must be {requirement} (got {value!r})")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_layer_spec(name: str, value: Any, allow_none: bool) -> int | tuple[int, ...] | None:
    """An int (a count) or a list of distinct non-negative layer indices; lists become sorted tuples."""
    if value is None and allow_none:
        return None
    if _is_int(value):
        if value < 1:
            _fail(name, value, "a layer count >= 1 or a list of layer indices")
        return value
    if isinstance(value, (list, tuple)) and value and all(_is_int(v) and v >= 0 for v in value):
        if len(set(value)) != len(value):
            _fail(name, value, "a list of distinct layer indices")
        return tuple(sorted(value))
    _fail(name, value, "a layer count >= 1 or a non-empty list of layer indices >= 0")
    return None  # unreachable


@dataclass
class LlamaAdapterConfig:
    """What to add to a model: prompts, gates, and the optional multimodal and V2 parts."""

    adapter_len: int = field(
        default=10,
        metadata={"help": "K, the number of learnable adaption prompt vectors per adapted layer."},
    )
    adapter_layers: int | tuple[int, ...] = field(
        default=30,
        metadata={
            "help": "L, the number of top layers that receive prompts (30 of 32 for LLaMA-7B), or an "
            "explicit list of layer indices (0 = the layer nearest the embeddings)."
        },
    )
    gate: str = field(
        default=GATE_TANH_PER_HEAD,
        metadata={
            "help": "Zero-init gate on the prompt attention: 'tanh_per_head' (one gate per head, "
            "through tanh; the paper's) or 'scalar' (one gate per layer, no tanh; peft's AdaptionPrompt)."
        },
    )
    prompt_init_std: float = field(
        default=1.0,
        metadata={"help": "Standard deviation of the normal initialisation of the prompt vectors."},
    )
    multimodal: bool = field(
        default=False,
        metadata={
            "help": "Add a projected global image feature from a frozen CLIP vision encoder to the "
            "prompts, per example (examples without an image get none)."
        },
    )
    vision_model: str | None = field(
        default=None,
        metadata={
            "help": "Folder of a transformers CLIPVisionModel (from_pretrained); recorded in the saved "
            "adapter so it can be rebuilt. May be None when a vision model object is passed in."
        },
    )
    vision_feature_layers: tuple[int, ...] = field(
        default=(-1,),
        metadata={
            "help": "Vision encoder layers whose class-token states (after the post layer norm) are "
            "concatenated into the global image feature; (-1,) is CLIP's pooled output. Several "
            "layers give the paper's multi-scale feature."
        },
    )
    visual_proj_hidden: int = field(
        default=512,
        metadata={
            "help": "Hidden width of the trainable projection MLP (Linear-GELU-Linear) from the image "
            "feature to the model's hidden size; 0 makes it a single Linear."
        },
    )
    early_fusion_layers: int | tuple[int, ...] | None = field(
        default=None,
        metadata={
            "help": "V2 early fusion: the first N layers (or explicit indices) get their own prompts, "
            "which alone receive the image feature; the `adapter_layers` prompts stay text-only. "
            "Must not overlap `adapter_layers`. None: V1, the image feature goes to every adapted layer."
        },
    )
    bias_tuning: bool = field(
        default=False,
        metadata={
            "help": "V2 bias and scale tuning: every linear layer of the decoder computes "
            "scale * (W x + bias) with a trainable zero-init bias and unit-init scale."
        },
    )
    unfreeze_norms: bool = field(
        default=False,
        metadata={"help": "V2: train the weights (and biases) of every normalisation layer."},
    )

    def __post_init__(self) -> None:
        if not _is_int(self.adapter_len) or self.adapter_len < 1:
            _fail("adapter_len", self.adapter_len, "an integer >= 1")
        self.adapter_layers = _check_layer_spec("adapter_layers", self.adapter_layers, allow_none=False)
        if self.gate not in GATE_MODES:
            _fail("gate", self.gate, f"one of {', '.join(GATE_MODES)}")
        if isinstance(self.prompt_init_std, bool) or not isinstance(self.prompt_init_std, (int, float)) \
                or not self.prompt_init_std > 0:
            _fail("prompt_init_std", self.prompt_init_std, "a number > 0")
        self.prompt_init_std = float(self.prompt_init_std)
        for flag in ("multimodal", "bias_tuning", "unfreeze_norms"):
            if not isinstance(getattr(self, flag), bool):
                _fail(flag, getattr(self, flag), "true or false")
        if self.vision_model is not None and not isinstance(self.vision_model, str):
            _fail("vision_model", self.vision_model, "a folder path or null")
        layers = self.vision_feature_layers
        if not isinstance(layers, (list, tuple)) or not layers or not all(_is_int(v) for v in layers):
            _fail("vision_feature_layers", layers, "a non-empty list of layer indices")
        self.vision_feature_layers = tuple(layers)
        if not _is_int(self.visual_proj_hidden) or self.visual_proj_hidden < 0:
            _fail("visual_proj_hidden", self.visual_proj_hidden, "an integer >= 0")
        self.early_fusion_layers = _check_layer_spec("early_fusion_layers", self.early_fusion_layers, True)
        if self.early_fusion_layers is not None and not self.multimodal:
            _fail("early_fusion_layers", self.early_fusion_layers, "null unless llama_adapter.multimodal is true")
        if isinstance(self.adapter_layers, tuple) and isinstance(self.early_fusion_layers, tuple):
            overlap = sorted(set(self.adapter_layers) & set(self.early_fusion_layers))
            if overlap:
                _fail("early_fusion_layers", self.early_fusion_layers, f"disjoint from adapter_layers (both hold {overlap})")

    def resolve_layers(self, num_layers: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
        """Return (text-prompt layers, image-prompt layers) of a model with `num_layers` layers.

        Without early fusion the image feature goes to every adapted layer (V1), so both tuples are
        the same; with early fusion they are disjoint (V2).

        Raises:
            LlamaAdapterConfigError: a count exceeds `num_layers`, an index is out of range, or the
                early-fusion layers overlap the adapter layers.
        """
        text = _layer_indices("adapter_layers", self.adapter_layers, num_layers, from_top=True)
        if self.early_fusion_layers is None:
            return text, (text if self.multimodal else ())
        visual = _layer_indices("early_fusion_layers", self.early_fusion_layers, num_layers, from_top=False)
        overlap = sorted(set(text) & set(visual))
        if overlap:
            _fail("early_fusion_layers", self.early_fusion_layers,
                  f"disjoint from the adapter layers {list(text)} of this {num_layers}-layer model (both hold {overlap})")
        return text, visual

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields (tuples become lists)."""
        return {f.name: (list(v) if isinstance(v := getattr(self, f.name), tuple) else v)
                for f in dataclasses.fields(self)}

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "LlamaAdapterConfig":
        """Build from a mapping (a recipe section or a saved adapter config); unknown keys are errors."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise LlamaAdapterConfigError(
                f"unknown {_SECTION} field(s) {', '.join(unknown)}; known fields: {', '.join(sorted(known))}"
            )
        return cls(**values)


def _layer_indices(name: str, spec: int | tuple[int, ...], num_layers: int, from_top: bool) -> tuple[int, ...]:
    if isinstance(spec, int):
        if spec > num_layers:
            _fail(name, spec, f"at most the model's {num_layers} layers")
        return tuple(range(num_layers - spec, num_layers)) if from_top else tuple(range(spec))
    out_of_range = [i for i in spec if i >= num_layers]
    if out_of_range:
        _fail(name, list(spec), f"indices below the model's {num_layers} layers ({out_of_range} are not)")
    return spec
