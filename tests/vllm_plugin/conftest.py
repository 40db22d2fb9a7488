"""Fixtures: tiny adapted models, their exported folders, and plugin discovery for vLLM processes."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from tuner.adapters.llama_adapter import LlamaAdapterConfig, save_llama_adapter
from tuner.export.llama_adapter import export_adapted_model
from tuner.tiny import build_tiny_model
from vllm_adapter_helpers import installed_entry_point, trained_like_adapter, tuner_source_root, write_entry_point_dist


@dataclass
class AdaptedCase:
    """A tiny base model, the same model with a trained-like adapter (fp32, in memory), and its export."""

    base_dir: Path
    model: torch.nn.Module
    exported: Path


@pytest.fixture(scope="session")
def vllm_plugin_discoverable(tmp_path_factory):
    """Let every process vLLM starts find tuner's plugin through the `vllm.general_plugins` entry point.

    An installed tuner declares the entry point itself (pyproject.toml). If the installed dist
    predates it (a checkout tested before reinstalling), a dist-info folder declaring the same entry
    point goes on sys.path and PYTHONPATH, so vLLM's own discovery still does the loading. The folder
    holding the imported `tuner` goes on PYTHONPATH so child processes import the same code.
    """
    with pytest.MonkeyPatch.context() as patch:
        paths = [str(tuner_source_root())]
        if installed_entry_point() is None:
            declared = write_entry_point_dist(tmp_path_factory.mktemp("entry_point"))
            paths.insert(0, str(declared))
            patch.syspath_prepend(str(declared))
        if os.environ.get("PYTHONPATH"):
            paths.append(os.environ["PYTHONPATH"])
        patch.setenv("PYTHONPATH", os.pathsep.join(paths))
        yield


@pytest.fixture(scope="session")
def llama_gqa_dir(tmp_path_factory, tiny_tokenizer) -> Path:
    """Tiny Llama with grouped-query attention and heads * head_dim != hidden (4 query, 2 KV heads of 64)."""
    return build_tiny_model("llama", tmp_path_factory.mktemp("llama_gqa"), tiny_tokenizer,
                            num_attention_heads=4, num_key_value_heads=2, head_dim=64)


def _adapted(base_dir: Path, config: LlamaAdapterConfig, seed: int):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32)
    return trained_like_adapter(model, config, seed=seed).eval()


@pytest.fixture(scope="session")
def llama_case(llama_gqa_dir, tiny_tokenizer, tmp_path_factory) -> AdaptedCase:
    """GQA Llama, prompts in layers 1 and 3, per-head tanh gates; exported from memory in fp32."""
    model = _adapted(llama_gqa_dir, LlamaAdapterConfig(adapter_len=5, adapter_layers=[1, 3]), seed=1)
    out = export_adapted_model(model, tiny_tokenizer, tmp_path_factory.mktemp("llama_export"), torch.float32)
    return AdaptedCase(llama_gqa_dir, model, out)


@pytest.fixture(scope="session")
def gpt_bigcode_case(tiny_model_dirs, tiny_tokenizer, tmp_path_factory) -> AdaptedCase:
    """Multi-query GPTBigCode, top 2 layers, scalar gate; saved as training does, exported by `tuner export`."""
    from tuner.export import export

    base_dir = tiny_model_dirs["gpt_bigcode"]
    model = _adapted(base_dir, LlamaAdapterConfig(adapter_len=5, adapter_layers=2, gate="scalar"), seed=2)
    final = save_llama_adapter(model, tmp_path_factory.mktemp("run") / "final")
    tiny_tokenizer.save_pretrained(final)
    out = export(final, tmp_path_factory.mktemp("gpt_bigcode_export") / "model", dtype="fp32")
    return AdaptedCase(base_dir, model, out)


@pytest.fixture(scope="session")
def llama_v2_case(llama_gqa_dir, tiny_tokenizer, tmp_path_factory) -> AdaptedCase:
    """GQA Llama with V2 bias/scale tuning and unfrozen norms (folded into the exported weights)."""
    config = LlamaAdapterConfig(adapter_len=4, adapter_layers=3, bias_tuning=True, unfreeze_norms=True)
    model = _adapted(llama_gqa_dir, config, seed=3)
    out = export_adapted_model(model, tiny_tokenizer, tmp_path_factory.mktemp("llama_v2_export"), torch.float32)
    return AdaptedCase(llama_gqa_dir, model, out)
