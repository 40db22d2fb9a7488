"""vLLM plugin: serves models exported by `tuner export` from a LLaMA-Adapter run.

vLLM calls `register()` in every process it starts (API server, engine core, workers) because
tuner's package metadata lists it in the `vllm.general_plugins` entry-point group:

    [project.entry-points."vllm.general_plugins"]
    tuner_llama_adapter = "tuner.export.vllm_plugin:register"

So once tuner is installed, `vllm serve DIR` and `vllm.LLM(DIR)` load an exported adapter folder
with no extra flags. `register()` does two things:

1. registers the exported config classes with transformers' AutoConfig, so vLLM parses the
   folder's config.json (model type `llama_adapter`, ...) without `trust_remote_code`;
2. registers the exported architectures with vLLM's ModelRegistry, pointing at vLLM model classes
   that add the gated prompt attention inside vLLM's attention path (see `prompt_attention`).

Nothing here imports vLLM until `register()` runs, so `import tuner` never needs it.
"""

from __future__ import annotations

ARCHITECTURES: dict[str, str] = {
    "LlamaAdapterForCausalLM": "tuner.export.vllm_plugin.llama:LlamaAdapterForCausalLM",
    # Mistral checkpoints without a sliding window compute exactly what vLLM's Llama model does.
    "MistralAdapterForCausalLM": "tuner.export.vllm_plugin.llama:LlamaAdapterForCausalLM",
    "GPTBigCodeAdapterForCausalLM": "tuner.export.vllm_plugin.gpt_bigcode:GPTBigCodeAdapterForCausalLM",
}
"""Architecture name in an exported config.json -> the vLLM model class that serves it."""


def register() -> None:
    """vLLM general-plugin entry point; safe to call more than once per process."""
    from vllm import ModelRegistry

    from tuner.export.hf_model import register_auto_classes

    register_auto_classes()
    supported = set(ModelRegistry.get_supported_archs())
    for architecture, model_class in ARCHITECTURES.items():
        if architecture not in supported:
            ModelRegistry.register_model(architecture, model_class)
