"""Loading the base model and tokenizer.

The training methods themselves (what trains beyond `full`) are in tuner.adapters.
"""

from __future__ import annotations

import torch

from tuner._imports import is_flash_attn_available
from tuner.config import ConfigError


TORCH_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}


def resolve_attn_implementation(requested: str) -> str:
    """flash_attention_2 where flash-attn is importable on a CUDA device, else SDPA."""
    if requested == "auto":
        return "flash_attention_2" if is_flash_attn_available() else "sdpa"
    if requested == "flash_attention_2" and not is_flash_attn_available():
        raise ConfigError("model.attn_implementation: flash_attention_2 needs the flash-attn package and a "
                          "CUDA device; use auto or sdpa")
    return requested


def load_tokenizer(path: str):
    """The tokenizer, with a pad token that is not EOS where the vocabulary allows it.

    Labels never depend on the pad id (collation marks padding explicitly), but a pad equal to EOS
    invites the classic bug of masking every EOS and training a model that never stops. When the
    tokenizer has no pad token, its unknown token is used if distinct from EOS; otherwise a
    `<pad>` token is added, and `needs_resize` tells the caller to grow the embeddings.
    """
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path)
    tokenizer.needs_resize = False
    if tokenizer.pad_token_id is None or tokenizer.pad_token_id == tokenizer.eos_token_id:
        if tokenizer.unk_token_id is not None and tokenizer.unk_token_id != tokenizer.eos_token_id:
            tokenizer.pad_token = tokenizer.unk_token
        else:
            tokenizer.add_special_tokens({"pad_token": "<pad>"})
            tokenizer.needs_resize = True
    return tokenizer


def load_model(path: str, *, dtype: str, attn_implementation: str, quantized: bool = False):
    """Load the causal LM in the training dtype (with 4-bit NF4 base weights when `quantized`, for QLoRA)."""
    from transformers import AutoModelForCausalLM

    kwargs = dict(dtype=TORCH_DTYPES[dtype], attn_implementation=attn_implementation)
    if quantized:
        from transformers import BitsAndBytesConfig

        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=TORCH_DTYPES[dtype],
        )
        kwargs["device_map"] = {"": torch.cuda.current_device() if torch.cuda.is_available() else "cpu"}
    try:
        return AutoModelForCausalLM.from_pretrained(path, **kwargs)
    except OSError as exc:
        raise ConfigError(f"model.path: cannot load a model from {path!r}: {exc}") from None


def count_parameters(model: torch.nn.Module) -> tuple[int, int]:
    """(trainable, total) parameter counts; ZeRO-3 partitioned parameters report their full size."""
    trainable = total = 0
    for param in model.parameters():
        n = getattr(param, "ds_numel", param.numel())
        total += n
        trainable += n if param.requires_grad else 0
    return trainable, total
