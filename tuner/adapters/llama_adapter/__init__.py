"""LLaMA-Adapter: zero-init gated adaption prompts (arXiv 2303.16199) with V2 options (arXiv 2304.15010).

Public API:
    config = LlamaAdapterConfig(adapter_len=10, adapter_layers=30)
    model = add_llama_adapter(model, config)          # freezes the base, adds prompts and gates
    save_llama_adapter(model, "out/adapter")          # adapter-only safetensors + JSON config
    model = load_llama_adapter(base_model, "out/adapter")

Multimodal batches pass `adapter_pixel_values` / `adapter_image_mask` to `model(...)`;
generation with images runs inside `llama_adapter_images(model, pixel_values)`.
"""

from tuner.adapters.llama_adapter.arch import LAYOUTS, UnsupportedModelError
from tuner.adapters.llama_adapter.checkpoint import (
    AdapterMismatchError,
    llama_adapter_state_dict,
    load_llama_adapter,
    save_llama_adapter,
)
from tuner.adapters.llama_adapter.config import LlamaAdapterConfig, LlamaAdapterConfigError
from tuner.adapters.llama_adapter.model import (
    add_llama_adapter,
    adapter_parameters,
    count_trainable_parameters,
    enable_gradient_checkpointing,
)
from tuner.adapters.llama_adapter.multimodal import (
    IMAGE_MASK_KWARG,
    PIXEL_VALUES_KWARG,
    llama_adapter_images,
)

SUPPORTED_MODEL_TYPES = tuple(sorted(LAYOUTS))

__all__ = [
    "AdapterMismatchError",
    "IMAGE_MASK_KWARG",
    "LlamaAdapterConfig",
    "LlamaAdapterConfigError",
    "PIXEL_VALUES_KWARG",
    "SUPPORTED_MODEL_TYPES",
    "UnsupportedModelError",
    "adapter_parameters",
    "add_llama_adapter",
    "count_trainable_parameters",
    "enable_gradient_checkpointing",
    "llama_adapter_images",
    "llama_adapter_state_dict",
    "load_llama_adapter",
    "save_llama_adapter",
]
