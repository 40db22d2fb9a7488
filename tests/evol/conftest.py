"""Fixtures for the Evol-Instruct tests: one real `vllm serve` per session."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def evol_server(tiny_llama_dir, tmp_path_factory):
    """`vllm serve` on the tiny Llama, on a free port; its process group is killed at the end."""
    from tuner.generation.server import VLLMServer

    log_path = tmp_path_factory.mktemp("evol_vllm_serve") / "server.log"
    server = VLLMServer(tiny_llama_dir, max_model_len=1024, log_path=log_path)
    server.start()
    yield server
    server.stop()
