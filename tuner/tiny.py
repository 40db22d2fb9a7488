"""Tiny, random-initialised models and a locally trained tokenizer.

Tests, benchmarks and the embedded demo job need real models without a model hub: these helpers
train a byte-level BPE tokenizer with `tokenizers` on local text (Python's own standard library
sources plus the prompt templates), build small Llama, Mistral (GQA) and GPTBigCode/StarCoder
(multi-query) configs, and save both with `save_pretrained`, so that everything downstream goes
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

TINY_ARCHITECTURES = ("llama", "mistral", "mistral_head_dim", "gpt_bigcode")


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
    """A small config of the given family; `overrides` replace any config field.

    arch: "llama" (MHA), "mistral" (GQA: 4 query heads, 2 KV heads), "mistral_head_dim"
    (explicit head_dim with heads * head_dim != hidden_size) or "gpt_bigcode" (multi-query,
    fused c_attn, learned absolute positions).
    """
    from transformers import GPTBigCodeConfig, LlamaConfig, MistralConfig

    ids = dict(
        vocab_size=len(tokenizer),
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    if arch == "llama":
        fields = dict(hidden_size=128, intermediate_size=256, num_hidden_layers=4,
                      num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=1024,
                      tie_word_embeddings=False)
        cls = LlamaConfig
    elif arch == "mistral":
        fields = dict(hidden_size=256, intermediate_size=512, num_hidden_layers=4,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024,
                      sliding_window=None, tie_word_embeddings=False)
        cls = MistralConfig
    elif arch == "mistral_head_dim":
        fields = dict(hidden_size=128, intermediate_size=256, num_hidden_layers=4,
                      num_attention_heads=4, num_key_value_heads=2, head_dim=64,
                      max_position_embeddings=1024, sliding_window=None, tie_word_embeddings=False)
        cls = MistralConfig
    elif arch == "gpt_bigcode":
        fields = dict(n_embd=128, n_layer=4, n_head=2, n_inner=512, n_positions=1024,
                      multi_query=True, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)
        cls = GPTBigCodeConfig
    else:
        raise ValueError(f"unknown tiny architecture {arch!r}; choose one of {TINY_ARCHITECTURES}")
    fields.update(ids)
    fields.update(overrides)
    return cls(**fields)


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
