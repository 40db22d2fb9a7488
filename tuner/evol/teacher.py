"""The teacher: building the generation backend, and running keyed calls through the journal.

Both backends come from `tuner.generation.make_generator`: an OpenAI-compatible server (what
`vllm serve` exposes) or offline vLLM on a local model folder. Retries, backoff, timeouts, the
request budget and the API key are the server backend's business; this module only decides
which calls still need making, records each answer as it arrives and shows progress.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from typing import Callable

from tqdm import tqdm

from tuner.evol.journal import CallJournal, prompt_sha
from tuner.generation import GenerationResult, Generator, Message, SamplingConfig
from tuner.generation.vllm_offline import VLLMEngineOptions

log = logging.getLogger(__name__)


@dataclass
class TeacherConfig:
    """Which teacher to ask and how; exactly one of `url` (with `model`) and `path` is set."""

    url: str | None = None
    """Base URL of an OpenAI-compatible server, e.g. http://127.0.0.1:8000/v1."""
    model: str | None = None
    """Model name the server serves."""
    path: str | None = None
    """Local model folder for offline vLLM."""
    api_key_env: str = "OPENAI_API_KEY"
    concurrency: int = 8
    timeout_s: float = 120.0
    max_retries: int = 5
    backoff_s: float = 1.0
    max_requests: int | None = None
    """Total HTTP requests this run may send, retries included (server teacher only)."""
    engine: VLLMEngineOptions = field(default_factory=VLLMEngineOptions)
    """The offline vLLM engine's settings (parallelism, memory, context length; teacher path only)."""

    def __post_init__(self) -> None:
        if (self.url is None) == (self.path is None):
            raise ValueError("give either --teacher-url with --teacher-model, or --teacher-path")
        if self.url is not None and not self.model:
            raise ValueError("--teacher-url needs --teacher-model (the name the server serves)")
        if self.concurrency < 1:
            raise ValueError(f"--concurrency must be >= 1, got {self.concurrency}")
        if self.path is None and self.engine.engine_kwargs():
            flags = ", ".join("--" + name.replace("_", "-") for name in self.engine.engine_kwargs())
            raise ValueError(f"{flags}: offline vLLM options, which need --teacher-path")

    @property
    def identity(self) -> dict:
        """What must stay the same for stored answers to be reusable: backend and model."""
        if self.path is not None:
            return {"backend": "vllm", "model": self.path}
        return {"backend": "openai", "model": self.model}


def make_teacher(config: TeacherConfig) -> Generator:
    from tuner.generation import make_generator

    if config.path is not None:
        return make_generator("vllm", config.path, **config.engine.engine_kwargs())
    return make_generator(
        "openai",
        config.model,
        base_url=config.url,
        api_key_env=config.api_key_env,
        concurrency=config.concurrency,
        timeout_s=config.timeout_s,
        max_retries=config.max_retries,
        backoff_s=config.backoff_s,
        max_requests=config.max_requests,
    )


@dataclass
class Call:
    key: str
    messages: list[Message]


@dataclass
class CallStats:
    reused: int = 0
    made: int = 0
    failed: int = 0
    first_errors: list[str] = field(default_factory=list)

    def add(self, other: "CallStats") -> None:
        self.reused += other.reused
        self.made += other.made
        self.failed += other.failed
        self.first_errors.extend(other.first_errors[: max(0, 5 - len(self.first_errors))])


def run_calls(
    get_teacher: Callable[[], Generator],
    calls: list[Call],
    sampling: SamplingConfig,
    journal: CallJournal,
    desc: str,
) -> tuple[dict[str, GenerationResult], CallStats]:
    """Answer every call, reusing finished ones from the journal and recording new ones in it.

    `get_teacher` is called only when some call is not in the journal yet, so re-deriving a
    finished run starts no engine. Failures come back as results with `error` set; nothing here
    raises because of one request.
    """
    results: dict[str, GenerationResult] = {}
    shas = {call.key: prompt_sha(call.messages) for call in calls}
    pending: list[Call] = []
    for call in calls:
        stored = journal.finished(call.key, shas[call.key])
        if stored is not None:
            results[call.key] = stored
        else:
            pending.append(call)
    stats = CallStats(reused=len(results))
    if not pending:
        return results, stats
    teacher = get_teacher()

    lock = threading.Lock()
    bar = tqdm(total=len(calls), initial=stats.reused, desc=desc, unit="call", dynamic_ncols=True)
    bar.set_postfix(failed=0)

    def on_result(index: int, result: GenerationResult) -> None:
        call = pending[index]
        journal.record(call.key, shas[call.key], result)
        with lock:
            if call.key in results:
                return
            results[call.key] = result
            stats.made += 1
            if not result.ok:
                stats.failed += 1
                log.debug("teacher call %s failed: %s", call.key, result.error)
                if len(stats.first_errors) < 5:
                    stats.first_errors.append(f"{call.key}: {result.error}")
            bar.update(1)
            bar.set_postfix(failed=stats.failed)

    try:
        try:
            returned = teacher.chat([call.messages for call in pending], sampling, on_result=on_result)
        except Exception as e:  # the interface promises errors as results; hold the run together anyway
            log.exception("the teacher backend raised instead of returning an error result")
            returned = [GenerationResult(texts=[], error=f"backend raised {type(e).__name__}: {e}")] * len(pending)
        for index, result in enumerate(returned):
            if pending[index].key not in results:  # a backend that skipped on_result for this one
                on_result(index, result)
    finally:
        bar.close()
    return results, stats
