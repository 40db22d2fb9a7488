"""Where folders exported before tuner 0.2 find their model classes.

Their `modeling_tuner_llama_adapter.py` imports from this module; the classes now live in
tuner.export.hf_model (export and serving code is kept together in tuner.export).
"""

from tuner.export.hf_model import (  # noqa: F401
    AdaptedGPTBigCodeConfig,
    AdaptedLlamaConfig,
    AdaptedMistralConfig,
    GPTBigCodeAdapterForCausalLM,
    LlamaAdapterForCausalLM,
    MistralAdapterForCausalLM,
)
