"""Helpers for the vLLM LLaMA-Adapter tests: adapted tiny models, greedy references, plugin discovery."""

from __future__ import annotations

import copy
import importlib.metadata
from pathlib import Path

import torch

import tuner
from tuner.adapters.llama_adapter import LlamaAdapterConfig, add_llama_adapter, adapter_parameters

PLUGIN_GROUP = "vllm.general_plugins"
PLUGIN_NAME = "tuner_llama_adapter"
PLUGIN_TARGET = "tuner.export.vllm_plugin:register"

PROMPT_TEXTS = (
    "def add(a, b):\n    return",
    "Below is an instruction that describes a task. Write a response",
    "import os\nfor name in sorted(",
    "Given a list of integers, return the largest element.",
)
NEW_TOKENS = 16


def installed_entry_point() -> importlib.metadata.EntryPoint | None:
    """tuner's vLLM plugin entry point as declared by the installed `tuner` distribution, if it is."""
    try:
        entry_points = importlib.metadata.distribution("tuner").entry_points
    except importlib.metadata.PackageNotFoundError:
        return None
    return next((ep for ep in entry_points if ep.group == PLUGIN_GROUP and ep.name == PLUGIN_NAME), None)


def write_entry_point_dist(root: Path) -> Path:
    """A dist-info folder declaring tuner's plugin entry point, for a checkout whose installed dist predates it.

    vLLM discovers plugins with importlib.metadata over sys.path, so with `root` on PYTHONPATH every
    process vLLM starts finds this declaration exactly as it finds the one of an installed tuner.
    """
    dist_info = root / "tuner_vllm_plugin_checkout-0.0.0.dist-info"
    dist_info.mkdir(parents=True, exist_ok=True)
    (dist_info / "METADATA").write_text("Metadata-Version: 2.1\nName: tuner-vllm-plugin-checkout\nVersion: 0.0.0\n")
    (dist_info / "entry_points.txt").write_text(f"[{PLUGIN_GROUP}]\n{PLUGIN_NAME} = {PLUGIN_TARGET}\n")
    return root


def tuner_source_root() -> Path:
    """The folder holding the imported `tuner` package (this checkout when run with PYTHONPATH=$PWD)."""
    return Path(tuner.__file__).resolve().parent.parent


def trained_like_adapter(model, config: LlamaAdapterConfig, seed: int):
    """Add an adapter to `model` and give it non-zero gates (and V2 parameters) as training would.

    The perturbations are moderate so the tiny random models still produce varied greedy text.
    """
    torch.manual_seed(seed)
    add_llama_adapter(model, config)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in adapter_parameters(model):
            noise = torch.randn(param.shape, generator=generator)
            if name.endswith("llama_adapter.gate"):
                param.copy_(0.6 + 0.3 * noise)
            elif name.endswith(".llama_adapter_bias_scale.bias"):
                param.copy_(0.02 * noise)
            elif name.endswith(".llama_adapter_bias_scale.scale") or "norm" in name or "ln_" in name:
                param.mul_(1 + 0.02 * noise)
    return model


def prompt_ids(tokenizer) -> list[list[int]]:
    return [tokenizer(text)["input_ids"] for text in PROMPT_TEXTS]


def hf_greedy(model, prompts: list[list[int]], new_tokens: int = NEW_TOKENS) -> list[tuple[list[int], list[float]]]:
    """transformers' greedy continuation of each prompt (EOS ignored) with each chosen token's logprob."""
    config = copy.deepcopy(model.generation_config)
    config.eos_token_id = None
    results = []
    with torch.no_grad():
        for prompt in prompts:
            out = model.generate(torch.tensor([prompt]), generation_config=config, max_new_tokens=new_tokens,
                                 do_sample=False, output_logits=True,
                                 return_dict_in_generate=True)
            tokens = out.sequences[0, len(prompt):].tolist()
            logprobs = [torch.log_softmax(step[0].float(), -1)[t].item() for step, t in zip(out.logits, tokens)]
            results.append((tokens, logprobs))
    return results
