"""The generation interface shared by the evaluation harness and the Evol-Instruct teacher.

Backends (vLLM offline, an OpenAI-compatible server such as `vllm serve`, transformers
`generate`) sit behind `Generator`; `make_generator` in `tuner.generation` imports the one asked
for lazily, so a machine without vLLM can still use the others.
"""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Callable, Sequence

Message = dict  # {"role": "system" | "user" | "assistant", "content": str}


@dataclass
class SamplingConfig:
    """Sampling options, identical in meaning for every backend.

    temperature 0 means greedy decoding (and then `top_p` is ignored by every backend). Greedy
    decoding with `n > 1` decodes once and repeats the text `n` times: the texts would be equal
    anyway, and transformers refuses `num_return_sequences > 1` without sampling.
    """

    n: int = 1
    """Completions per prompt."""
    temperature: float = 0.0
    top_p: float = 1.0
    max_new_tokens: int = 512
    stop: list[str] = field(default_factory=list)
    """Generation ends before the first of these strings; the string itself is not returned."""
    seed: int | None = None

    def __post_init__(self) -> None:
        if self.n < 1:
            raise ValueError(f"`n` must be >= 1, got {self.n}")
        if self.temperature < 0:
            raise ValueError(f"`temperature` must be >= 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"`top_p` must be in (0, 1], got {self.top_p}")
        if self.max_new_tokens < 1:
            raise ValueError(f"`max_new_tokens` must be >= 1, got {self.max_new_tokens}")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclass
class GenerationResult:
    """The outcome for one prompt: `n` texts, or an error message when the request failed."""

    texts: list[str]
    error: str | None = None
    finish_reasons: list[str] = field(default_factory=list)
    """Per text, why decoding ended where the backend says so: "stop" (EOS or a stop string) or
    "length" (`max_new_tokens` reached). Empty when the backend does not report it."""

    @property
    def ok(self) -> bool:
        return self.error is None


ResultCallback = Callable[[int, GenerationResult], None]


class Generator(ABC):
    """A text generation backend."""

    backend: str = "base"

    @abstractmethod
    def complete(
        self,
        prompts: Sequence[str],
        sampling: SamplingConfig,
        on_result: ResultCallback | None = None,
    ) -> list[GenerationResult]:
        """Continue each raw prompt.

        `on_result(index, result)` is called as each prompt finishes (in any order), so callers can
        write results to disk as they arrive and resume after an interruption.
        """

    @abstractmethod
    def chat(
        self,
        conversations: Sequence[Sequence[Message]],
        sampling: SamplingConfig,
        on_result: ResultCallback | None = None,
    ) -> list[GenerationResult]:
        """Answer each conversation as the assistant (the model's chat template applies)."""

    def describe(self) -> dict:
        """What produced the outputs: backend, model and any backend-specific settings."""
        return {"backend": self.backend}

    def effective_sampling(self, sampling: SamplingConfig) -> dict:
        """The sampling parameters as this backend actually applies them (its own names and
        defaults included), for recording next to the outputs."""
        return sampling.to_dict()

    def close(self) -> None:
        """Release engines, processes or connections."""

    def __enter__(self) -> "Generator":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
