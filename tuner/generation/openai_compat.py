"""An OpenAI-compatible HTTP server (`vllm serve`, or any server speaking the same API).

Built for long unattended runs (the evaluation harness and the Evol-Instruct teacher):

- bounded concurrency: a thread pool of `concurrency` requests in flight;
- a per-request timeout;
- retries with exponential backoff and jitter on timeouts, connection errors, HTTP 408/429/5xx and
  malformed responses (a `Retry-After` header is honoured, capped at `backoff_max_s`); other
  4xx answers are not retried, because asking again cannot help;
- an optional budget on the total number of HTTP requests (retries included);
- the API key comes from an environment variable (`OPENAI_API_KEY` unless told otherwise) and is
  never written into `describe()`;
- a request that still fails after its retries never raises: it comes back as
  `GenerationResult(texts=[], error="...")`, and `on_result` is called for every prompt, in the
  calling thread, as results arrive.

`base_url` follows the OpenAI client's convention and includes the API prefix, e.g.
`http://127.0.0.1:8000/v1`; a bare `http://host:port` gets `/v1` appended.
"""

from __future__ import annotations

import logging
import os
import random
import threading
import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Any, Callable, Sequence
from urllib.parse import urlsplit

from tuner.generation.base import GenerationResult, Generator, Message, ResultCallback, SamplingConfig
from tuner.generation.stops import greedy_repeats

log = logging.getLogger(__name__)

RETRYABLE_STATUS = frozenset({408, 409, 425, 429, 500, 502, 503, 504})


class _Retryable(Exception):
    """A failure worth another attempt (timeout, connection, 5xx, malformed answer)."""

    def __init__(self, message: str, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class _Fatal(Exception):
    """A failure that another attempt cannot fix (4xx other than 408/409/425/429)."""


class BudgetExhausted(Exception):
    """The generator's total request budget is spent."""


@dataclass
class RequestStats:
    """Counters over the generator's lifetime (thread-safe through the generator's lock)."""

    requests: int = 0
    """HTTP requests sent, retries included."""
    retries: int = 0
    failures: int = 0
    """Prompts that came back with an error after their retries."""
    succeeded: int = 0


def normalise_base_url(base_url: str) -> str:
    base_url = base_url.rstrip("/")
    if urlsplit(base_url).path in ("", "/"):
        base_url += "/v1"
    return base_url


class OpenAIGenerator(Generator):
    """Generate through an OpenAI-compatible `/completions` and `/chat/completions` API.

    Args:
        model: the model name the server knows (`vllm serve DIR` calls it DIR unless
            `--served-model-name` says otherwise).
        base_url: server root including the API prefix (see the module docstring).
        api_key_env: environment variable holding the API key. With the default name a missing
            variable means "no key" (a local `vllm serve` needs none); a name you chose must exist.
        api_key: the key itself, overriding the environment.
        concurrency: requests in flight at once.
        timeout_s: per-request read timeout (connecting gets at most 10 s of it).
        max_retries: further attempts after the first one fails with a retryable error.
        backoff_s / backoff_max_s: the first retry waits about `backoff_s`, doubling each time up
            to `backoff_max_s` (each wait is jittered to between half and all of that).
        max_requests: total HTTP requests this generator may send, retries included; prompts that
            find the budget spent come back with an error. None means unlimited.
        extra_body: extra JSON fields merged into every request (e.g. vLLM's `top_k`).
    """

    backend = "openai"

    def __init__(
        self,
        model: str,
        base_url: str = "http://127.0.0.1:8000/v1",
        api_key_env: str = "OPENAI_API_KEY",
        api_key: str | None = None,
        concurrency: int = 8,
        timeout_s: float = 120.0,
        max_retries: int = 5,
        backoff_s: float = 1.0,
        backoff_max_s: float = 30.0,
        max_requests: int | None = None,
        extra_body: dict[str, Any] | None = None,
    ) -> None:
        if concurrency < 1:
            raise ValueError(f"`concurrency` must be >= 1, got {concurrency}")
        if timeout_s <= 0:
            raise ValueError(f"`timeout_s` must be > 0, got {timeout_s}")
        if max_retries < 0:
            raise ValueError(f"`max_retries` must be >= 0, got {max_retries}")
        if max_requests is not None and max_requests < 0:
            raise ValueError(f"`max_requests` must be >= 0 or None, got {max_requests}")
        if api_key is None:
            api_key = os.environ.get(api_key_env)
            if api_key is None and api_key_env != "OPENAI_API_KEY":
                raise ValueError(f"`api_key_env`: environment variable {api_key_env} is not set")
        self.model = str(model)
        self.base_url = normalise_base_url(base_url)
        self.api_key_env = api_key_env
        self._api_key = api_key
        self.concurrency = concurrency
        self.timeout_s = timeout_s
        self.max_retries = max_retries
        self.backoff_s = backoff_s
        self.backoff_max_s = backoff_max_s
        self.max_requests = max_requests
        self.extra_body = dict(extra_body or {})
        self.stats = RequestStats()
        self._lock = threading.Lock()
        self._local = threading.local()

    # -- request plumbing ------------------------------------------------------------------

    def _session(self):
        import requests

        session = getattr(self._local, "session", None)
        if session is None:
            session = requests.Session()
            if self._api_key:
                session.headers["Authorization"] = f"Bearer {self._api_key}"
            self._local.session = session
        return session

    def _take_budget(self) -> None:
        with self._lock:
            if self.max_requests is not None and self.stats.requests >= self.max_requests:
                raise BudgetExhausted(f"request budget of {self.max_requests} requests exhausted")
            self.stats.requests += 1

    def _post_once(self, path: str, body: dict) -> dict:
        import requests

        self._take_budget()
        try:
            response = self._session().post(
                self.base_url + path, json=body, timeout=(min(10.0, self.timeout_s), self.timeout_s)
            )
        except requests.Timeout as exc:
            raise _Retryable(f"timeout after {self.timeout_s:g} s ({type(exc).__name__})") from exc
        except requests.ConnectionError as exc:
            raise _Retryable(f"connection error: {_short(exc)}") from exc
        except requests.RequestException as exc:
            raise _Retryable(f"request failed: {_short(exc)}") from exc
        if response.status_code != 200:
            detail = f"HTTP {response.status_code} from {path}: {_short(response.text)}"
            if response.status_code in RETRYABLE_STATUS:
                raise _Retryable(detail, _retry_after(response.headers.get("Retry-After")))
            raise _Fatal(detail)
        try:
            return response.json()
        except ValueError as exc:
            raise _Retryable(f"malformed response from {path}: not JSON: {_short(response.text)}") from exc

    def _with_retries(self, attempt: Callable[[], list[tuple[str, str]]]) -> GenerationResult:
        failures: list[str] = []
        for tries in range(self.max_retries + 1):
            try:
                choices = attempt()
                return GenerationResult(texts=[t for t, _ in choices], finish_reasons=[f for _, f in choices])
            except _Retryable as exc:
                failures.append(str(exc))
                if tries == self.max_retries:
                    break
                delay = min(self.backoff_max_s, self.backoff_s * 2 ** tries) * random.uniform(0.5, 1.0)
                if exc.retry_after_s is not None:
                    delay = min(self.backoff_max_s, max(delay, exc.retry_after_s))
                with self._lock:
                    self.stats.retries += 1
                log.debug("retrying in %.2f s after: %s", delay, exc)
                time.sleep(delay)
            except (_Fatal, BudgetExhausted) as exc:
                failures.append(str(exc))
                break
            except Exception as exc:  # never crash the caller on one request
                log.exception("unexpected error in an OpenAI request")
                failures.append(f"unexpected {type(exc).__name__}: {exc}")
                break
        attempts = len(failures)
        error = f"failed after {attempts} attempt{'s' if attempts != 1 else ''}: {failures[-1]}"
        return GenerationResult(texts=[], error=error)

    # -- request bodies and answers ---------------------------------------------------------

    def _body(self, sampling: SamplingConfig) -> dict[str, Any]:
        decode_n, _ = greedy_repeats(sampling.n, sampling.temperature)
        body: dict[str, Any] = {
            "model": self.model,
            "n": decode_n,
            "temperature": sampling.temperature,
            "top_p": 1.0 if sampling.temperature == 0 else sampling.top_p,
            "max_tokens": sampling.max_new_tokens,
        }
        if sampling.stop:
            body["stop"] = list(sampling.stop)
        if sampling.seed is not None:
            body["seed"] = sampling.seed
        body.update(self.extra_body)
        return body

    def effective_sampling(self, sampling: SamplingConfig) -> dict:
        body = self._body(sampling)
        body.pop("model")
        body["repeat_each"] = greedy_repeats(sampling.n, sampling.temperature)[1]
        return body

    @staticmethod
    def _choices(payload: Any, expected: int, text_of: Callable[[dict], Any], repeat: int) -> list[tuple[str, str]]:
        if not isinstance(payload, dict) or not isinstance(payload.get("choices"), list):
            raise _Retryable(f"malformed response: no `choices` list in {_short(repr(payload))}")
        choices = payload["choices"]
        if len(choices) != expected:
            raise _Retryable(f"malformed response: {len(choices)} choices, expected {expected}")
        try:
            ordered = sorted(choices, key=lambda c: c.get("index", 0))
            texts = [text_of(c) for c in ordered]
            reasons = ["length" if c.get("finish_reason") == "length" else "stop" for c in ordered]
        except (AttributeError, KeyError, TypeError) as exc:
            raise _Retryable(f"malformed response: {type(exc).__name__}: {exc}") from exc
        if not all(isinstance(t, str) for t in texts):
            raise _Retryable("malformed response: a choice has no text")
        return [(t, r) for t, r in zip(texts, reasons) for _ in range(repeat)]

    def _complete_one(self, prompt: str, sampling: SamplingConfig) -> GenerationResult:
        body = {**self._body(sampling), "prompt": prompt}
        _, repeat = greedy_repeats(sampling.n, sampling.temperature)
        return self._with_retries(lambda: self._choices(
            self._post_once("/completions", body), body["n"], lambda c: c["text"], repeat))

    def _chat_one(self, messages: Sequence[Message], sampling: SamplingConfig) -> GenerationResult:
        body = {**self._body(sampling), "messages": list(messages)}
        _, repeat = greedy_repeats(sampling.n, sampling.temperature)
        return self._with_retries(lambda: self._choices(
            self._post_once("/chat/completions", body), body["n"], lambda c: c["message"]["content"], repeat))

    # -- the Generator interface -------------------------------------------------------------

    def _map(self, work: Callable[[Any], GenerationResult], items: Sequence[Any],
             on_result: ResultCallback | None) -> list[GenerationResult]:
        results: list[GenerationResult | None] = [None] * len(items)
        pool = ThreadPoolExecutor(max_workers=self.concurrency, thread_name_prefix="openai")
        try:
            pending: dict[Future, int] = {pool.submit(work, item): i for i, item in enumerate(items)}
            while pending:
                done, _ = wait(pending, return_when=FIRST_COMPLETED)
                for future in done:
                    index = pending.pop(future)
                    result = future.result()
                    with self._lock:
                        if result.ok:
                            self.stats.succeeded += 1
                        else:
                            self.stats.failures += 1
                    results[index] = result
                    if on_result is not None:
                        on_result(index, result)
        finally:
            # On an interrupt (or an exception from on_result) drop the queued prompts at once.
            pool.shutdown(wait=True, cancel_futures=True)
        return results  # type: ignore[return-value]

    def complete(self, prompts: Sequence[str], sampling: SamplingConfig,
                 on_result: ResultCallback | None = None) -> list[GenerationResult]:
        return self._map(lambda p: self._complete_one(p, sampling), prompts, on_result)

    def chat(self, conversations: Sequence[Sequence[Message]], sampling: SamplingConfig,
             on_result: ResultCallback | None = None) -> list[GenerationResult]:
        return self._map(lambda c: self._chat_one(c, sampling), conversations, on_result)

    def describe(self) -> dict:
        return {"backend": self.backend, "model": self.model, "base_url": self.base_url,
                "concurrency": self.concurrency, "timeout_s": self.timeout_s,
                "max_retries": self.max_retries, "max_requests": self.max_requests}

    def close(self) -> None:
        session = getattr(self._local, "session", None)
        if session is not None:
            session.close()


def _short(text: Any, limit: int = 300) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[:limit] + "..."


def _retry_after(value: str | None) -> float | None:
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None
