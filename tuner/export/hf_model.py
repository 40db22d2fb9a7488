"""transformers classes of an exported LLaMA-Adapter model: base weights and adapter in one folder.

A LLaMA-Adapter is not a weight change (its gated prompt attention is a new term in every adapted
layer), so an exported folder cannot be a plain Llama/Mistral/GPTBigCode checkpoint: loading it as
one would silently drop the adapter. `tuner export` therefore writes a folder of its own model type:

- config.json: the base config with `model_type` `<family>_adapter` (e.g. `llama_adapter`),
  `architectures` `["<Family>AdapterForCausalLM"]`, a `llama_adapter` section (the adapter config
  and the computation it performs, see export.py) and an `auto_map` naming the classes below
  through `modeling_tuner_llama_adapter.py`, a short file written beside the weights that imports
  them from tuner.
- model.safetensors: the base weights plus `...<attention>.llama_adapter.prompt` / `.gate`.

How it loads:
- `AutoModelForCausalLM.from_pretrained(DIR, trust_remote_code=True)`: transformers runs the
  small file, which needs tuner installed (its error says so).
- after `register_auto_classes()` (tuner's vLLM plugin calls it), without trust_remote_code.
- otherwise transformers does not know the model type and asks for trust_remote_code: it never
  falls back to the plain base model.

The model classes subclass transformers' own and call `add_llama_adapter` in `__init__`, so the
prompt modules (and their hooks) exist, under the names training gave them, before
`from_pretrained` fills in the weights.
"""

from __future__ import annotations

from pathlib import Path

from transformers import (
    GPTBigCodeConfig,
    GPTBigCodeForCausalLM,
    LlamaConfig,
    LlamaForCausalLM,
    MistralConfig,
    MistralForCausalLM,
)

from tuner.adapters.llama_adapter.config import LlamaAdapterConfig
from tuner.adapters.llama_adapter.model import add_llama_adapter

EXPORT_SECTION = "llama_adapter"
"""Key of config.json holding the adapter config and its computation."""

STUB_MODULE = "modeling_tuner_llama_adapter"
"""The module written into every exported folder; `auto_map` points at it."""

STUB_SOURCE = '''"""A LLaMA-Adapter model exported by tuner (base weights + gated prompt attention).

The prompt attention is defined in the `tuner` package, which must be installed to load this folder:
    AutoModelForCausalLM.from_pretrained(FOLDER, trust_remote_code=True)
vLLM serves it through tuner's plugin (`vllm serve FOLDER`, no trust_remote_code needed).
"""

try:
    from tuner.export.hf_model import (  # noqa: F401
        AdaptedGPTBigCodeConfig,
        AdaptedLlamaConfig,
        AdaptedMistralConfig,
        GPTBigCodeAdapterForCausalLM,
        LlamaAdapterForCausalLM,
        MistralAdapterForCausalLM,
    )
except ImportError as error:  # transformers checks the imports outside try blocks before running this file
    raise ImportError(
        "this folder holds a LLaMA-Adapter model exported by tuner; loading it needs the `tuner` package "
        f"installed (pip install tuner), which defines its gated prompt attention ({error})"
    ) from error
'''


class ExportedAdapterConfigError(ValueError):
    """The `llama_adapter` section of an exported config.json is missing or unusable."""


def adapter_config_of(config) -> LlamaAdapterConfig:
    """The LlamaAdapterConfig recorded in an exported model's config (its `llama_adapter.config`).

    Raises:
        ExportedAdapterConfigError: the section is missing, or describes an adapter that an exported
            model cannot run (image prompts, or V2 options that export should have folded).
    """
    section = getattr(config, EXPORT_SECTION, None)
    where = f"{config.name_or_path or 'the model'}/config.json"
    if not isinstance(section, dict) or not isinstance(section.get("config"), dict):
        raise ExportedAdapterConfigError(
            f"{where}: no `{EXPORT_SECTION}.config` section; write the folder with `tuner export`"
        )
    adapter = LlamaAdapterConfig.from_dict(section["config"])
    if adapter.multimodal:
        raise ExportedAdapterConfigError(f"{where}: {EXPORT_SECTION}.config.multimodal is true; image prompts "
                                         "cannot be served, export a text-only adapter")
    if adapter.bias_tuning:
        raise ExportedAdapterConfigError(f"{where}: {EXPORT_SECTION}.config.bias_tuning is true; `tuner export` "
                                         "folds V2 bias/scale tuning into the weights and records false")
    return adapter


class _AdaptedConfigMixin:
    """The base family's config plus the `llama_adapter` section and an `auto_map` to the stub."""

    llama_adapter = None  # the config.json section; set from the file (or by export) like any extra field
    model_class_name = ""  # the matching *AdapterForCausalLM, named in auto_map

    def __post_init__(self, **kwargs) -> None:
        super().__post_init__(**kwargs)
        self.auto_map = {
            "AutoConfig": f"{STUB_MODULE}.{type(self).__name__}",
            "AutoModelForCausalLM": f"{STUB_MODULE}.{self.model_class_name}",
        }

    @classmethod
    def register_for_auto_class(cls, auto_class: str = "AutoConfig") -> None:
        """Do nothing: `auto_map` must keep pointing at the stub, not at a copy of this module."""



class _AdaptedModelMixin:
    """A transformers causal LM with LLaMA-Adapter added at construction."""

    base_model_type = ""  # the family whose transformers class this one extends

    def __init__(self, config) -> None:
        super().__init__(config)
        add_llama_adapter(self, adapter_config_of(config))

    @classmethod
    def register_for_auto_class(cls, auto_class: str = "AutoModel") -> None:
        """Do nothing (transformers would copy this module into saved folders; the stub is written instead)."""

    def save_pretrained(self, save_directory, *args, **kwargs) -> None:
        """transformers' save, plus the stub module that `auto_map` names."""
        super().save_pretrained(save_directory, *args, **kwargs)
        if kwargs.get("is_main_process", True):
            (Path(save_directory) / f"{STUB_MODULE}.py").write_text(STUB_SOURCE, encoding="utf-8")


class AdaptedLlamaConfig(_AdaptedConfigMixin, LlamaConfig):
    model_type = "llama_adapter"
    model_class_name = "LlamaAdapterForCausalLM"


class AdaptedMistralConfig(_AdaptedConfigMixin, MistralConfig):
    model_type = "mistral_adapter"
    model_class_name = "MistralAdapterForCausalLM"


class AdaptedGPTBigCodeConfig(_AdaptedConfigMixin, GPTBigCodeConfig):
    model_type = "gpt_bigcode_adapter"
    model_class_name = "GPTBigCodeAdapterForCausalLM"


class LlamaAdapterForCausalLM(_AdaptedModelMixin, LlamaForCausalLM):
    config_class = AdaptedLlamaConfig
    base_model_type = "llama"


class MistralAdapterForCausalLM(_AdaptedModelMixin, MistralForCausalLM):
    config_class = AdaptedMistralConfig
    base_model_type = "mistral"


class GPTBigCodeAdapterForCausalLM(_AdaptedModelMixin, GPTBigCodeForCausalLM):
    config_class = AdaptedGPTBigCodeConfig
    base_model_type = "gpt_bigcode"


EXPORT_CLASSES: dict[str, tuple[type, type]] = {
    model_class.base_model_type: (model_class.config_class, model_class)
    for model_class in (LlamaAdapterForCausalLM, MistralAdapterForCausalLM, GPTBigCodeAdapterForCausalLM)
}
"""Base model type -> (config class, model class) of its exported form."""


def register_auto_classes() -> None:
    """Make AutoConfig / AutoModelForCausalLM load exported folders without trust_remote_code."""
    from transformers import AutoConfig, AutoModelForCausalLM

    for config_class, model_class in EXPORT_CLASSES.values():
        AutoConfig.register(config_class.model_type, config_class, exist_ok=True)
        AutoModelForCausalLM.register(config_class, model_class, exist_ok=True)
