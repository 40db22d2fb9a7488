"""Tiny, random-initialised models and a locally trained tokenizer.

Tests, benchmarks and the embedded demo job need real models without a model hub: these helpers
train a byte-level BPE tokenizer with `tokenizers` on local text (Python's own standard library
sources plus the prompt templates), build small configs of every supported family (TINY_CONFIGS:
Llama 3, DeepSeek-Coder, Mistral, StarCoder 1 and 2, Qwen2/2.5, Qwen3, Gemma 2 and 3, Phi-3,
Mixtral, Qwen2-MoE, Qwen3-MoE), and save both with `save_pretrained`, so that everything downstream goes
through the real `from_pretrained` loading code.

Head dimension is 64 throughout: vLLM's CPU attention kernels reject smaller head sizes.
"""

from __future__ import annotations

import sysconfig
from pathlib import Path
from typing import Iterable, Iterator

import torch

SPECIAL_TOKENS = {"bos_token": "<s>", "eos_token": "</s>", "pad_token": "<pad>", "unk_token": "<unk>"}

# A minimal chat template with explicit role markers. The assistant turn ends with the EOS token so
# that a model trained on chat data learns to stop.
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if message['role'] == 'system' %}<|system|>\n{{ message['content'] }}\n"
    "{% elif message['role'] == 'user' %}<|user|>\n{{ message['content'] }}\n"
    "{% else %}<|assistant|>\n{{ message['content'] }}{{ eos_token }}\n{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)

# Standard-library modules whose source makes a reproducible, code-heavy tokenizer corpus.
_CORPUS_MODULES = (
    "textwrap.py", "string.py", "bisect.py", "heapq.py", "fractions.py", "statistics.py",
    "functools.py", "shlex.py", "colorsys.py", "glob.py", "fnmatch.py", "calendar.py",
)

_ENGLISH = """Below is an instruction that describes a task. Write a response that appropriately
completes the request. Below is an instruction that describes a task, paired with an input that
provides further context. ### Instruction: ### Input: ### Response: Write a Python function that
returns the sum of a list of numbers. Create a function to reverse a string. Given a list of
integers, return the largest element. Question: Context: Options: Answer: The answer is
"""

# Tiny configs of each family, written from the published ones: the same flags (biases, norms,
# rope scaling, sliding windows, soft-capping, fused projections, experts), small sizes, head_dim 64.
# name -> (transformers config class, fields); the published model each one mirrors is noted.
_SLIDING, _FULL = "sliding_attention", "full_attention"
TINY_CONFIGS: dict[str, tuple[str, dict]] = {
    # Llama, multi-head attention
    "llama": ("LlamaConfig", dict(
        hidden_size=128, intermediate_size=256, num_hidden_layers=4, num_attention_heads=2, num_key_value_heads=2,
        max_position_embeddings=1024, tie_word_embeddings=False)),
    # Llama 3.2 1B/3B: GQA, llama3 rope scaling, tied input/output embeddings
    "llama3": ("LlamaConfig", dict(
        hidden_size=256, intermediate_size=512, num_hidden_layers=4, num_attention_heads=4, num_key_value_heads=2,
        max_position_embeddings=1024, tie_word_embeddings=True,
        rope_parameters=dict(rope_type="llama3", rope_theta=500000.0, factor=32.0, low_freq_factor=1.0,
                             high_freq_factor=4.0, original_max_position_embeddings=256))),
    # DeepSeek-Coder (model_type llama): linear rope scaling (factor 4), untied
    "deepseek_coder": ("LlamaConfig", dict(
        hidden_size=128, intermediate_size=256, num_hidden_layers=4, num_attention_heads=2, num_key_value_heads=2,
        max_position_embeddings=1024, tie_word_embeddings=False,
        rope_parameters=dict(rope_type="linear", rope_theta=100000.0, factor=4.0))),
    # Mistral 7B v0.1 style GQA, no sliding window
    "mistral": ("MistralConfig", dict(
        hidden_size=256, intermediate_size=512, num_hidden_layers=4, num_attention_heads=4, num_key_value_heads=2,
        max_position_embeddings=1024, sliding_window=None, tie_word_embeddings=False)),
    # explicit head_dim with heads * head_dim != hidden_size
    "mistral_head_dim": ("MistralConfig", dict(
        hidden_size=128, intermediate_size=256, num_hidden_layers=4, num_attention_heads=4, num_key_value_heads=2,
        head_dim=64, max_position_embeddings=1024, sliding_window=None, tie_word_embeddings=False)),
    # Mistral with its sliding window (small, so test sequences cross it)
    "mistral_sliding": ("MistralConfig", dict(
        hidden_size=256, intermediate_size=512, num_hidden_layers=4, num_attention_heads=4, num_key_value_heads=2,
        max_position_embeddings=1024, sliding_window=16, tie_word_embeddings=False)),
    # StarCoder 1 / GPTBigCode: multi-query, fused c_attn, learned absolute positions
    "gpt_bigcode": ("GPTBigCodeConfig", dict(
        n_embd=128, n_layer=4, n_head=2, n_inner=512, n_positions=1024, multi_query=True,
        resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)),
    # Qwen2.5-Coder 0.5B-3B: bias on q/k/v, GQA, tied embeddings
    "qwen2": ("Qwen2Config", dict(
        hidden_size=256, intermediate_size=512, num_hidden_layers=4, num_attention_heads=4, num_key_value_heads=2,
        max_position_embeddings=1024, tie_word_embeddings=True, rope_parameters=dict(rope_type="default",
                                                                                     rope_theta=1000000.0))),
    # Qwen3 0.6B-8B: per-head q_norm/k_norm, explicit head_dim, GQA, tied (small sizes)
    "qwen3": ("Qwen3Config", dict(
        hidden_size=128, intermediate_size=256, num_hidden_layers=4, num_attention_heads=4, num_key_value_heads=2,
        head_dim=64, max_position_embeddings=1024, tie_word_embeddings=True, attention_bias=False)),
    # StarCoder2 3B-15B: GQA, biases everywhere, LayerNorm, GELU MLP (c_fc/c_proj), sliding window
    "starcoder2": ("Starcoder2Config", dict(
        hidden_size=256, intermediate_size=512, num_hidden_layers=4, num_attention_heads=4, num_key_value_heads=2,
        max_position_embeddings=1024, use_bias=True, sliding_window=16, tie_word_embeddings=True,
        residual_dropout=0.0, embedding_dropout=0.0, attention_dropout=0.0)),
    # Gemma 2 2B-27B: query_pre_attn_scalar != head_dim, attention and final logit soft-capping,
    # alternating sliding/global layers, embeddings scaled by sqrt(hidden), tied
    "gemma2": ("Gemma2Config", dict(
        hidden_size=128, intermediate_size=256, num_hidden_layers=4, num_attention_heads=4, num_key_value_heads=2,
        head_dim=64, query_pre_attn_scalar=32, attn_logit_softcapping=50.0, final_logit_softcapping=30.0,
        sliding_window=16, layer_types=[_SLIDING, _FULL, _SLIDING, _FULL], max_position_embeddings=1024,
        tie_word_embeddings=True)),
    # Gemma 3 1B (text): q_norm/k_norm, query_pre_attn_scalar, 5:1 sliding/global (here 3:1),
    # separate rope for local and global layers, no soft-capping, tied
    "gemma3": ("Gemma3TextConfig", dict(
        hidden_size=128, intermediate_size=256, num_hidden_layers=4, num_attention_heads=4, num_key_value_heads=1,
        head_dim=64, query_pre_attn_scalar=64, sliding_window=16, layer_types=[_SLIDING, _SLIDING, _SLIDING, _FULL],
        max_position_embeddings=1024, tie_word_embeddings=True)),
    # Phi-3 mini: fused qkv_proj and gate_up_proj
    "phi3": ("Phi3Config", dict(
        hidden_size=128, intermediate_size=256, num_hidden_layers=4, num_attention_heads=2, num_key_value_heads=2,
        max_position_embeddings=1024, original_max_position_embeddings=1024, sliding_window=None,
        tie_word_embeddings=False, resid_pdrop=0.0, embd_pdrop=0.0, attention_dropout=0.0)),
    # Mixtral 8x7B: top-2 of 8 experts (here of 4), GQA
    "mixtral": ("MixtralConfig", dict(
        hidden_size=128, intermediate_size=128, num_hidden_layers=4, num_attention_heads=2, num_key_value_heads=1,
        head_dim=64, num_local_experts=4, num_experts_per_tok=2, max_position_embeddings=1024,
        sliding_window=None, tie_word_embeddings=False)),
    # Qwen1.5-MoE / Qwen2-MoE: routed experts plus a gated shared expert, bias on q/k/v
    "qwen2_moe": ("Qwen2MoeConfig", dict(
        hidden_size=128, intermediate_size=256, moe_intermediate_size=64, shared_expert_intermediate_size=128,
        num_hidden_layers=4, num_attention_heads=2, num_key_value_heads=2, num_experts=4, num_experts_per_tok=2,
        max_position_embeddings=1024, tie_word_embeddings=False)),
    # Qwen3-MoE 30B-A3B: q_norm/k_norm, routed experts, no shared expert
    "qwen3_moe": ("Qwen3MoeConfig", dict(
        hidden_size=128, intermediate_size=256, moe_intermediate_size=64, num_hidden_layers=4,
        num_attention_heads=4, num_key_value_heads=2, head_dim=64, num_experts=4, num_experts_per_tok=2,
        max_position_embeddings=1024, tie_word_embeddings=False)),
}

TINY_ARCHITECTURES = ("llama", "mistral", "mistral_head_dim", "gpt_bigcode")
"""The tiny models the suite builds once per session (the original four)."""

TINY_FAMILIES = tuple(name for name in TINY_CONFIGS if name not in TINY_ARCHITECTURES)
"""The other families, each built by the tests that need it."""


def tokenizer_corpus(extra_texts: Iterable[str] = ()) -> Iterator[str]:
    """Yield the local training text for the tiny tokenizer."""
    yield _ENGLISH
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    for name in _CORPUS_MODULES:
        path = stdlib / name
        if path.exists():
            yield path.read_text(encoding="utf-8", errors="replace")
    yield from extra_texts


def train_tokenizer(vocab_size: int = 1024, extra_texts: Iterable[str] = ()):
    """Train a byte-level BPE tokenizer and wrap it as a `PreTrainedTokenizerFast`.

    Byte-level pre-tokenisation over the full 256-byte alphabet means every input string can be
    encoded; the pad token is distinct from EOS so padding never teaches the model to stop.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE(unk_token=SPECIAL_TOKENS["unk_token"]))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    specials = list(SPECIAL_TOKENS.values()) + ["<|system|>", "<|user|>", "<|assistant|>"]
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(tokenizer_corpus(extra_texts), trainer=trainer)
    wrapped = PreTrainedTokenizerFast(tokenizer_object=tokenizer, **SPECIAL_TOKENS)
    wrapped.add_special_tokens({"additional_special_tokens": ["<|system|>", "<|user|>", "<|assistant|>"]})
    wrapped.chat_template = CHAT_TEMPLATE
    wrapped.model_max_length = 2048
    return wrapped


def tiny_config(arch: str, tokenizer, **overrides):
    """A small config of the family `arch` (a key of TINY_CONFIGS); `overrides` replace any field."""
    import transformers

    if arch not in TINY_CONFIGS:
        raise ValueError(f"unknown tiny architecture {arch!r}; choose one of {', '.join(TINY_CONFIGS)}")
    class_name, fields = TINY_CONFIGS[arch]
    ids = dict(
        vocab_size=len(tokenizer),
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    return getattr(transformers, class_name)(**{**fields, **ids, **overrides})


def build_tiny_model(arch: str, out_dir: str | Path, tokenizer=None, seed: int = 0, **overrides) -> Path:
    """Build a random-initialised tiny model with its tokenizer and save both to `out_dir`.

    Returns the folder, ready for `AutoModelForCausalLM.from_pretrained(out_dir)`.
    """
    from transformers import AutoModelForCausalLM

    out_dir = Path(out_dir)
    tokenizer = tokenizer if tokenizer is not None else train_tokenizer()
    config = tiny_config(arch, tokenizer, **overrides)
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.bos_token_id = tokenizer.bos_token_id
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    return out_dir
