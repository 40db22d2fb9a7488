"""Availability probes for optional, hardware-specific dependencies.

Each probe is cached and imports nothing heavy, so `import tuner` works on a CPU-only machine.
"""

from __future__ import annotations

import functools
import importlib.util


def _has_module(name: str) -> bool:
    return importlib.util.find_spec(name) is not None


@functools.cache
def is_cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


@functools.cache
def is_flash_attn_available() -> bool:
    """flash-attn is usable only when it is installed and a CUDA device is present."""
    return _has_module("flash_attn") and is_cuda_available()


@functools.cache
def is_deepspeed_available() -> bool:
    return _has_module("deepspeed")


@functools.cache
def is_vllm_available() -> bool:
    return _has_module("vllm")


@functools.cache
def is_bitsandbytes_available() -> bool:
    return _has_module("bitsandbytes")
