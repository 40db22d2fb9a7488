"""Text generation backends shared by the evaluation harness and the Evol-Instruct teacher.

`make_generator("vllm" | "hf" | "openai", model, **options)` imports only the backend asked for,
so a machine without vLLM can still use the others.
"""

from __future__ import annotations

from typing import Any

from tuner.generation.base import GenerationResult, Generator, Message, ResultCallback, SamplingConfig

BACKENDS = ("vllm", "hf", "openai")


def make_generator(backend: str, model: str, **options: Any) -> Generator:
    """Build a generator.

    Args:
        backend: "vllm" (offline `vllm.LLM`), "hf" (transformers `generate`) or "openai" (an
            OpenAI-compatible server such as `vllm serve`; pass `base_url=`).
        model: a local folder or model name (for "openai", the name the server serves).
        **options: the backend class's keyword arguments (`VLLMGenerator`, `HFGenerator`,
            `OpenAIGenerator`); for vLLM, unknown ones go to `vllm.LLM`.

    Raises:
        ValueError: an unknown backend, or an option the backend does not take.
    """
    if backend == "vllm":
        from tuner.generation.vllm_offline import VLLMGenerator as cls
    elif backend in ("hf", "transformers"):
        from tuner.generation.hf import HFGenerator as cls
    elif backend == "openai":
        from tuner.generation.openai_compat import OpenAIGenerator as cls
    else:
        raise ValueError(f"unknown generation backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    try:
        return cls(model, **options)
    except TypeError as exc:
        if "unexpected keyword argument" in str(exc):
            raise ValueError(f"backend {backend!r}: {exc}") from exc
        raise


__all__ = ["BACKENDS", "GenerationResult", "Generator", "Message", "ResultCallback", "SamplingConfig",
           "make_generator"]
