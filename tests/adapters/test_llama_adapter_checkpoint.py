"""Adapter-only save and load: identical logits after a round trip; clear errors on a wrong base."""

from __future__ import annotations

import json

import pytest
import torch

from llama_adapter_helpers import adapted, load_base, open_gates, token_batch
from tuner.adapters.llama_adapter import (
    AdapterMismatchError,
    LlamaAdapterConfig,
    count_trainable_parameters,
    load_llama_adapter,
    save_llama_adapter,
)
from tuner.tiny import build_tiny_model


def test_save_then_load_gives_identical_logits(arch_dir, tmp_path):
    model = adapted(arch_dir, LlamaAdapterConfig(adapter_len=6, adapter_layers=[1, 3]), seed=3)
    open_gates(model)
    out = save_llama_adapter(model, tmp_path / "adapter")

    weights = out / "adapter_model.safetensors"
    assert sorted(p.name for p in out.iterdir()) == ["adapter_config.json", "adapter_model.safetensors"]
    assert weights.stat().st_size < count_trainable_parameters(model) * 4 + 4096  # adapter only, no base weights
    saved = json.loads((out / "adapter_config.json").read_text())
    assert saved["config"]["adapter_layers"] == [1, 3]
    assert saved["base_model"]["fingerprint"]["hidden_size"] == model.config.hidden_size
    assert saved["computation"]["text_prompt_layers"] == [1, 3]

    reloaded = load_llama_adapter(load_base(arch_dir), out)
    ids = token_batch(model)
    with torch.no_grad():
        assert torch.equal(reloaded(ids).logits, model(ids).logits)


def test_loading_onto_a_different_family_fails_clearly(tiny_model_dirs, tmp_path):
    out = save_llama_adapter(adapted(tiny_model_dirs["llama"]), tmp_path / "adapter")
    with pytest.raises(AdapterMismatchError, match=r"different base model .*model_type 'llama' != 'mistral'"):
        load_llama_adapter(load_base(tiny_model_dirs["mistral"]), out)


def test_loading_onto_a_different_shape_fails_before_changing_the_model(tiny_model_dirs, tiny_tokenizer, tmp_path):
    out = save_llama_adapter(adapted(tiny_model_dirs["llama"]), tmp_path / "adapter")
    wider = load_base(build_tiny_model("llama", tmp_path / "wider", tiny_tokenizer, hidden_size=256, num_attention_heads=4))
    with pytest.raises(AdapterMismatchError, match=r"hidden_size 128 != 256"):
        load_llama_adapter(wider, out)
    assert not hasattr(wider, "llama_adapter_config")
    assert all(p.requires_grad for p in wider.parameters())


def test_loading_from_a_folder_without_an_adapter_names_the_missing_file(tiny_llama_dir, tmp_path):
    with pytest.raises(FileNotFoundError, match="adapter_config.json not found"):
        load_llama_adapter(load_base(tiny_llama_dir), tmp_path)
