"""Generation backends without an engine: the OpenAI client's failure handling against a real
HTTP server on localhost that misbehaves on purpose, the HF backend on a tiny model, the factory."""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tuner.generation import GenerationResult, SamplingConfig, make_generator
from tuner.generation.server import free_port
from tuner.generation.stops import truncate_at_stop


class FaultyServer:
    """An OpenAI-style server whose behaviour is chosen by the prompt text.

    "ok ..."          -> answers at once
    "flaky ..."       -> HTTP 500 twice, then answers
    "slow ..."        -> first attempt sleeps past the client timeout, then answers
    "garbled ..."     -> non-JSON once, then a body without `choices` once, then answers
    "broken ..."      -> HTTP 503 always
    "rejected ..."    -> HTTP 400 (not retryable)
    """

    def __init__(self) -> None:
        self.attempts: Counter[str] = Counter()
        self.in_flight = 0
        self.max_in_flight = 0
        self.auth_headers: list[str | None] = []
        self.lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                key = body.get("prompt") or body["messages"][-1]["content"]
                with server.lock:
                    server.attempts[key] += 1
                    attempt = server.attempts[key]
                    server.in_flight += 1
                    server.max_in_flight = max(server.max_in_flight, server.in_flight)
                    server.auth_headers.append(self.headers.get("Authorization"))
                try:
                    time.sleep(0.05)  # long enough for requests to overlap
                    self.respond(key, attempt, body)
                finally:
                    with server.lock:
                        server.in_flight -= 1

            def respond(self, key, attempt, body):
                kind = key.split()[0]
                if kind == "flaky" and attempt <= 2:
                    return self.send(500, b"overloaded")
                if kind == "slow" and attempt == 1:
                    time.sleep(1.5)
                if kind == "garbled" and attempt == 1:
                    return self.send(200, b"<html>not json")
                if kind == "garbled" and attempt == 2:
                    return self.send(200, b'{"object": "error"}')
                if kind == "broken":
                    return self.send(503, b"down")
                if kind == "rejected":
                    return self.send(400, b'{"error": "bad request"}')
                chat = "messages" in body
                choices = []
                for i in range(body["n"]):
                    text = f"{key}|{i}|t={body['temperature']}"
                    choice = {"message": {"role": "assistant", "content": text}} if chat else {"text": text}
                    choices.append({"index": i, "finish_reason": "stop", **choice})
                self.send(200, json.dumps({"choices": choices[::-1]}).encode())

            def send(self, status, payload):
                self.send_response(status)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


def fast_client(base_url: str, **options):
    defaults = dict(concurrency=4, timeout_s=0.5, max_retries=3, backoff_s=0.01, backoff_max_s=0.05)
    return make_generator("openai", "served-model", base_url=base_url, **{**defaults, **options})


def test_openai_client_retries_transient_failures_and_reports_permanent_ones():
    prompts = ["ok a", "flaky b", "slow c", "garbled d", "broken e", "rejected f", "ok g", "ok h"]
    arrived: list[int] = []
    with FaultyServer() as server:
        client = fast_client(server.base_url)
        results = client.complete(prompts, SamplingConfig(n=2, temperature=0.7, max_new_tokens=8),
                                  on_result=lambda i, r: arrived.append(i))
    by_prompt = dict(zip(prompts, results))
    for prompt in ("ok a", "flaky b", "slow c", "garbled d", "ok g", "ok h"):
        assert by_prompt[prompt].ok, by_prompt[prompt].error
        assert by_prompt[prompt].texts == [f"{prompt}|0|t=0.7", f"{prompt}|1|t=0.7"]  # sorted by index
    assert server.attempts["flaky b"] == 3 and server.attempts["garbled d"] == 3
    assert server.attempts["slow c"] >= 2
    broken, rejected = by_prompt["broken e"], by_prompt["rejected f"]
    assert broken.texts == [] and "HTTP 503" in broken.error and "4 attempts" in broken.error
    assert server.attempts["broken e"] == 4  # the first try and three retries
    assert rejected.texts == [] and "HTTP 400" in rejected.error and server.attempts["rejected f"] == 1
    assert sorted(arrived) == list(range(len(prompts)))
    assert server.max_in_flight <= 4
    assert client.stats.failures == 2 and client.stats.succeeded == 6


def test_openai_client_survives_a_server_that_is_not_there():
    client = fast_client(f"http://127.0.0.1:{free_port()}", max_retries=1)
    results = client.chat([[{"role": "user", "content": "hi"}]] * 3, SamplingConfig(max_new_tokens=4))
    assert all(not r.ok and "connection error" in r.error for r in results)
    assert client.stats.requests == 6


def test_openai_client_request_budget_and_greedy_repeat(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-123")
    with FaultyServer() as server:
        client = fast_client(server.base_url, max_requests=3, concurrency=1)
        results = client.chat([[{"role": "user", "content": f"ok {i}"}] for i in range(5)],
                              SamplingConfig(n=3, temperature=0.0, max_new_tokens=4))
    assert [r.ok for r in results] == [True, True, True, False, False]
    assert results[0].texts == ["ok 0|0|t=0.0"] * 3  # greedy: decoded once, repeated n times
    assert "budget of 3 requests exhausted" in results[4].error
    assert set(server.auth_headers) == {"Bearer sk-test-123"}
    assert "sk-test" not in json.dumps(client.describe())
    assert client.effective_sampling(SamplingConfig(n=3, temperature=0.0))["n"] == 1


def test_openai_client_requires_a_named_key_variable_to_exist(monkeypatch):
    monkeypatch.delenv("TEACHER_KEY", raising=False)
    with pytest.raises(ValueError, match="TEACHER_KEY"):
        make_generator("openai", "m", api_key_env="TEACHER_KEY")


def test_factory_rejects_unknown_backends_and_options():
    with pytest.raises(ValueError, match="unknown generation backend 'tgi'"):
        make_generator("tgi", "m")
    with pytest.raises(ValueError, match="concurrenci"):
        make_generator("openai", "m", concurrenci=3)


def test_truncate_at_stop_cuts_at_the_earliest_stop_string():
    assert truncate_at_stop("a\ndef f\nclass", ["\nclass", "\ndef"]) == ("a", True)
    assert truncate_at_stop("abc", ["x", ""]) == ("abc", False)


def test_hf_backend_stops_at_stop_strings_and_repeats_greedy(tiny_llama_dir):
    generator = make_generator("hf", str(tiny_llama_dir), batch_size=2)
    free = generator.complete(["def add(a, b):", "x = 1"], SamplingConfig(max_new_tokens=24))
    assert all(r.finish_reasons == ["length"] for r in free)
    # Stop on a piece of the free-running text: the output must be exactly the text before it.
    text = free[0].texts[0]
    cut = next(i for i in range(4, len(text) - 4) if text.find(text[i:i + 4]) == i)
    stopped = generator.complete(["def add(a, b):"],
                                 SamplingConfig(n=2, max_new_tokens=24, stop=[text[cut:cut + 4]]))
    assert stopped[0].texts == [text[:cut], text[:cut]] and stopped[0].finish_reasons == ["stop", "stop"]
    sampled = generator.chat([[{"role": "user", "content": "hi"}]],
                             SamplingConfig(n=3, temperature=1.0, max_new_tokens=12, seed=0))
    assert len(sampled[0].texts) == 3 and len(set(sampled[0].texts)) > 1
    assert generator.effective_sampling(SamplingConfig(temperature=0.5))["top_k"] == 0
    assert isinstance(sampled[0], GenerationResult)
