"""The OpenAI-compatible backend against a real `vllm serve` process on localhost."""

from __future__ import annotations

import pytest

from tuner.generation import SamplingConfig, make_generator
from tuner.generation.server import VLLMServer

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def vllm_server(tiny_llama_dir, tmp_path_factory):
    log_path = tmp_path_factory.mktemp("vllm_serve") / "server.log"
    server = VLLMServer(tiny_llama_dir, max_model_len=1024, log_path=log_path)
    server.start()
    yield server
    server.stop()
    assert server.process is None


def test_openai_backend_completes_and_chats_through_vllm_serve(vllm_server, tiny_llama_dir):
    client = make_generator("openai", vllm_server.model, base_url=vllm_server.base_url, concurrency=4)
    prompts = ["def add(a, b):\n", "x = [1, 2, 3]\n", "import os"]
    arrived = []
    greedy = client.complete(prompts, SamplingConfig(max_new_tokens=16), on_result=lambda i, r: arrived.append(i))
    assert sorted(arrived) == [0, 1, 2] and all(r.ok and len(r.texts) == 1 for r in greedy)
    # The server runs the same weights: greedy text equals the transformers reference.
    reference = make_generator("hf", str(tiny_llama_dir)).complete(prompts, SamplingConfig(max_new_tokens=16))
    assert [r.texts for r in greedy] == [r.texts for r in reference]
    sampled = client.chat([[{"role": "user", "content": "hi"}]] * 2,
                          SamplingConfig(n=3, temperature=1.0, max_new_tokens=12, seed=7))
    assert all(r.ok and len(r.texts) == 3 for r in sampled)
    assert client.stats.failures == 0 and client.stats.requests == 5


def test_tuner_eval_run_through_the_openai_backend(vllm_server, shared_data, tmp_path):
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    repo = Path(__file__).resolve().parents[1]
    out = tmp_path / "run"
    result = subprocess.run(
        [sys.executable, "-m", "tuner_eval.cli", "run", "--task", "mbpp", "--dataset", str(shared_data / "mbpp" / "mbpp.jsonl"),
         "--backend", "openai", "--model", vllm_server.model,
         "--base-url", vllm_server.base_url, "--limit", "4", "--n", "2", "--temperature", "0.8",
         "--max-new-tokens", "24", "--prompt-style", "instruct", "--k", "1,2", "--out", str(out)],
        capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(repo)}, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    results = json.loads((out / "results.json").read_text())
    assert len(results["per_task"]) == 4 and set(results["pass@k"]) == {"pass@1", "pass@2"}
    effective = results["generation"]["sampling_effective"]
    assert effective["n"] == 2 and effective["temperature"] == 0.8 and effective["stop"] == ["\n### Instruction", "\n### Response"]
    assert results["generation"]["generator"]["base_url"] == vllm_server.base_url
