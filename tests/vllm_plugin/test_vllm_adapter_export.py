"""Exported LLaMA-Adapter folders in plain transformers: same logits, never the bare base model."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
from safetensors import safe_open
from transformers import AutoModelForCausalLM

from tuner.adapters.llama_adapter import LlamaAdapterConfig, save_llama_adapter
from tuner.export.llama_adapter import check_servable, export_adapted_model, export_adapter_folder
from tuner.export.hf_model import STUB_MODULE, LlamaAdapterForCausalLM, register_auto_classes
from tuner.export import ExportError
from vllm_adapter_helpers import trained_like_adapter


def token_batch(vocab_size: int) -> torch.Tensor:
    return torch.randint(10, vocab_size, (2, 12), generator=torch.Generator().manual_seed(0))


def same_logits(actual: torch.Tensor, expected: torch.Tensor) -> None:
    """Equal up to fp32 rounding: with 2 threads, oneDNN may split a matmul differently for weights
    loaded from a file than for the same values built in memory (bit-equal with 1 thread)."""
    torch.testing.assert_close(actual, expected, rtol=0, atol=1e-5)


def load_exported(folder):
    return AutoModelForCausalLM.from_pretrained(folder, trust_remote_code=True, dtype=torch.float32)


@pytest.mark.parametrize("case_name", ["llama_case", "gpt_bigcode_case"])
def test_exported_folder_loads_as_the_adapted_model_with_identical_logits(case_name, request):
    case = request.getfixturevalue(case_name)
    exported = load_exported(case.exported)
    base = AutoModelForCausalLM.from_pretrained(case.base_dir, dtype=torch.float32)
    ids = token_batch(base.config.vocab_size)
    with torch.no_grad():
        logits = exported(ids).logits
        same_logits(logits, case.model(ids).logits)
        assert (logits - base(ids).logits).abs().max() > 0.05  # the adapter is really there


def test_mistral_exports_too(tiny_model_dirs, tiny_tokenizer, tmp_path):
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dirs["mistral_head_dim"], dtype=torch.float32)
    model = trained_like_adapter(base, LlamaAdapterConfig(adapter_len=3, adapter_layers=2), seed=4)
    out = export_adapted_model(model, tiny_tokenizer, tmp_path / "out", torch.float32)
    ids = token_batch(model.config.vocab_size)
    with torch.no_grad():
        same_logits(load_exported(out)(ids).logits, model(ids).logits)
    assert json.loads((out / "config.json").read_text())["architectures"] == ["MistralAdapterForCausalLM"]


def test_exported_folder_describes_itself(llama_case):
    config = json.loads((llama_case.exported / "config.json").read_text())
    assert config["model_type"] == "llama_adapter" and config["architectures"] == ["LlamaAdapterForCausalLM"]
    assert config["auto_map"]["AutoModelForCausalLM"] == f"{STUB_MODULE}.LlamaAdapterForCausalLM"
    assert (llama_case.exported / f"{STUB_MODULE}.py").is_file()
    section = config["llama_adapter"]
    assert section["config"]["adapter_layers"] == [1, 3] and section["config"]["adapter_len"] == 5
    assert section["computation"]["text_prompt_layers"] == [1, 3]
    assert "softmax over the K prompt positions only" in section["computation"]["scores"]
    assert config["num_key_value_heads"] == 2 and config["head_dim"] == 64  # the base config is kept
    with safe_open(str(llama_case.exported / "model.safetensors"), "pt") as weights:
        names = set(weights.keys())
    assert {"model.layers.1.self_attn.llama_adapter.prompt", "model.layers.3.self_attn.llama_adapter.gate"} <= names
    assert "model.layers.2.self_attn.llama_adapter.prompt" not in names


def test_v2_bias_and_scale_tuning_is_folded_into_plain_weights(llama_v2_case):
    config = json.loads((llama_v2_case.exported / "config.json").read_text())
    section = config["llama_adapter"]
    assert config["attention_bias"] and config["mlp_bias"]
    assert section["trained_config"]["bias_tuning"] and not section["config"]["bias_tuning"]
    assert section["folded_into_weights"] and section["computation"]["v2_bias_tuning"] is None
    with safe_open(str(llama_v2_case.exported / "model.safetensors"), "pt") as weights:
        names = set(weights.keys())
    assert not [n for n in names if "bias_scale" in n] and "model.layers.0.mlp.down_proj.bias" in names
    ids = token_batch(config["vocab_size"])
    with torch.no_grad():
        expected = llama_v2_case.model(ids).logits
        torch.testing.assert_close(load_exported(llama_v2_case.exported)(ids).logits, expected, rtol=0, atol=1e-5)


_LOAD_WITHOUT_TRUST = """
import sys
from transformers import AutoModelForCausalLM
try:
    AutoModelForCausalLM.from_pretrained(sys.argv[1])
except (ValueError, OSError) as error:
    print("without trust_remote_code:", " ".join(str(error).split()))
sys.modules["tuner"] = None  # as if tuner were not installed
try:
    AutoModelForCausalLM.from_pretrained(sys.argv[1], trust_remote_code=True)
except ImportError as error:
    print("without tuner:", " ".join(str(error).split()))
"""


def test_folder_never_loads_as_the_plain_base_model(llama_case):
    """A fresh process (no tuner classes registered): it refuses rather than dropping the adapter."""
    result = subprocess.run([sys.executable, "-c", _LOAD_WITHOUT_TRUST, str(llama_case.exported)],
                            capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL)
    lines = result.stdout.splitlines()  # transformers' y/N prompt may precede the first line
    assert result.returncode == 0, result.stderr[-2000:]
    assert any("without trust_remote_code: " in line and "`trust_remote_code=True`" in line for line in lines)
    assert any(line.startswith("without tuner: ") and "needs the `tuner` package" in line for line in lines)


def test_registered_auto_classes_load_without_trust_remote_code(llama_case):
    register_auto_classes()
    model = AutoModelForCausalLM.from_pretrained(llama_case.exported, dtype=torch.float32)
    assert type(model) is LlamaAdapterForCausalLM
    ids = token_batch(model.config.vocab_size)
    with torch.no_grad():
        same_logits(model(ids).logits, llama_case.model(ids).logits)


def test_adapter_folder_export_finds_its_base_model_or_asks_for_it(tiny_llama_dir, tiny_tokenizer, tmp_path):
    base = AutoModelForCausalLM.from_pretrained(tiny_llama_dir, dtype=torch.float32)
    model = trained_like_adapter(base, LlamaAdapterConfig(adapter_len=3, adapter_layers=1), seed=5)
    adapter_dir = save_llama_adapter(model, tmp_path / "final")
    ids = token_batch(model.config.vocab_size)
    with torch.no_grad():
        expected = model(ids).logits

    recorded = export_adapter_folder(adapter_dir, tmp_path / "recorded", torch.float32)  # base_model.name_or_path
    with torch.no_grad():
        same_logits(load_exported(recorded)(ids).logits, expected)
    assert (recorded / "tokenizer_config.json").is_file()  # taken from the base when the adapter has none

    saved = json.loads((adapter_dir / "adapter_config.json").read_text())
    saved["base_model"]["name_or_path"] = str(tmp_path / "moved")
    (adapter_dir / "adapter_config.json").write_text(json.dumps(saved))
    (adapter_dir / "training_config.yaml").write_text(f"model:\n  path: {tiny_llama_dir}\n")
    assert export_adapter_folder(adapter_dir, tmp_path / "from_yaml", torch.bfloat16).is_dir()
    exported = json.loads((tmp_path / "from_yaml" / "config.json").read_text())
    assert exported["dtype"] == "bfloat16"

    (adapter_dir / "training_config.yaml").unlink()
    with pytest.raises(ExportError, match=r"base model folder not found .*moved.*pass it with --base"):
        export_adapter_folder(adapter_dir, tmp_path / "lost", torch.float32)
    assert export_adapter_folder(adapter_dir, tmp_path / "explicit", torch.float32, base=tiny_llama_dir).is_dir()


def test_unservable_adapters_are_refused_with_the_reason(tiny_model_dirs, tmp_path):
    folder = tmp_path / "mm"
    folder.mkdir()
    (folder / "adapter_config.json").write_text(json.dumps(
        {"method": "llama_adapter", "config": {"multimodal": True}, "base_model": {"name_or_path": "x"}}))
    with pytest.raises(ExportError, match="multimodal.*image prompts is not supported"):
        export_adapter_folder(folder, tmp_path / "out", torch.float32)
    assert not (tmp_path / "out").exists()

    (folder / "adapter_config.json").write_text('{"method": "llama_adapter",\n "config": }')
    with pytest.raises(ExportError, match=r"adapter_config.json: line 2: not valid JSON"):
        export_adapter_folder(folder, tmp_path / "out", torch.float32)

    mistral = AutoModelForCausalLM.from_pretrained(tiny_model_dirs["mistral"]).config
    mistral.sliding_window = 512
    with pytest.raises(ExportError, match="sliding_window 512"):
        check_servable(mistral, LlamaAdapterConfig(), "tiny-mistral")
    mistral.sliding_window = None
    with pytest.raises(ExportError, match="bias tuning .* Mistral"):
        check_servable(mistral, LlamaAdapterConfig(bias_tuning=True), "tiny-mistral")
    bigcode = AutoModelForCausalLM.from_pretrained(tiny_model_dirs["gpt_bigcode"]).config
    bigcode.multi_query = False
    with pytest.raises(ExportError, match="multi_query: false"):
        check_servable(bigcode, LlamaAdapterConfig(), "tiny-bigcode")
