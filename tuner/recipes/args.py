"""The recipe schema of `tuner train`: one dataclass per concern, validated on construction.

Every field has a docstring; a bad value fails at start with `ConfigError` naming the field as it
is typed in YAML (`train.lr`), the value and the fix.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from tuner.adapters import ADAPTER_METHODS
from tuner.adapters.llama_adapter.config import LlamaAdapterConfig
from tuner.adapters.lora import LoraArgs
from tuner.config import ConfigError
from tuner.diagnostics.config import DiagnosticsArgs

DTYPES = ("bf16", "fp16", "fp32")
METHODS = ("full", *ADAPTER_METHODS)


def _check(condition: bool, key: str, message: str) -> None:
    if not condition:
        raise ConfigError(f"{key}: {message}")


@dataclass
class ModelArgs:
    path: str
    """A local folder written by `save_pretrained` (or a hub name, where the hub is reachable)."""
    dtype: Literal["bf16", "fp16", "fp32"] = "bf16"
    """Training precision. bf16/fp16 keep fp32 master weights in the optimizer (DeepSpeed)."""
    attn_implementation: Literal["auto", "flash_attention_2", "sdpa", "eager"] = "auto"
    """`auto` picks flash_attention_2 when flash-attn is importable on a CUDA device, else sdpa."""
    gradient_checkpointing: bool = False
    """Recompute activations in the backward pass to save memory."""
    tokenizer_path: str | None = None
    """Tokenizer folder, when it differs from `path`."""


@dataclass
class DataArgs:
    path: str | list[str]
    """One or more JSON/JSONL files of instruction data."""
    format: Literal["auto", "alpaca", "evol", "chat", "sharegpt"] = "auto"
    """alpaca: instruction/input/output; evol: instruction/output (WizardCoder); chat: `messages`
    with the tokenizer's chat template; sharegpt: `conversations` of from/value turns; auto: by keys."""
    template: Literal["alpaca", "wizardcoder", "chat"] = "alpaca"
    """Prompt template for alpaca/evol records; chat/sharegpt records always use the chat template."""
    max_length: int = 512
    """Longest tokenised example (prompt + response + EOS) and the length of a packed row."""
    packing: bool = False
    """Pack several examples into each row; attention never crosses example boundaries."""
    on_overlong: Literal["skip", "truncate", "error"] = "skip"
    """What to do with an example longer than `max_length`: skip and count it, cut the response,
    or stop with an error naming its file and line."""
    max_examples: int | None = None
    """Use only the first N examples (for smoke runs)."""

    def __post_init__(self) -> None:
        _check(self.max_length >= 8, "data.max_length", f"must be at least 8, got {self.max_length}")
        _check(self.max_examples is None or self.max_examples > 0, "data.max_examples", "must be positive")

    @property
    def paths(self) -> list[str]:
        return [self.path] if isinstance(self.path, str) else list(self.path)


@dataclass
class TrainArgs:
    output_dir: str = "runs/default"
    """Checkpoints, metrics.jsonl, tensorboard events, the loss plot and the final model go here."""
    method: str = "full"
    """What trains: all weights (`full`) or an adapter method of tuner.adapters.ADAPTER_METHODS: LoRA
    adapters (`lora`, peft), LoRA on a 4-bit base (`qlora`), or LLaMA-Adapter (`llama_adapter`)."""
    epochs: float = 1.0
    """Passes over the data (fractions allowed); ignored when `max_steps` is set."""
    max_steps: int | None = None
    """Optimizer steps to run; overrides `epochs`."""
    micro_batch_size: int = 4
    """Rows per rank per forward pass."""
    gradient_accumulation_steps: int = 1
    """Micro-batches per optimizer step on each rank."""
    lr: float = 2e-5
    """Peak learning rate (before `lr_scaling`)."""
    lr_scaling: Literal["none", "linear"] = "none"
    """`linear`: the peak rate is `lr * global_batch_size / lr_base_batch_size` (LLaMA-Adapter)."""
    lr_base_batch_size: int = 256
    """Reference batch size for `lr_scaling: linear`."""
    min_lr: float = 0.0
    """Learning rate at the end of the cosine decay."""
    warmup_steps: int | None = None
    """Linear warmup length in optimizer steps (set at most one of the three warmup fields)."""
    warmup_ratio: float | None = None
    """Linear warmup as a fraction of all steps."""
    warmup_epochs: float | None = None
    """Linear warmup in epochs."""
    weight_decay: float = 0.0
    """AdamW weight decay, applied to matrices (weights, LoRA factors, adaption prompts), not to
    biases, norms or gates."""
    adam_betas: tuple[float, float] = (0.9, 0.999)
    adam_eps: float = 1e-8
    max_grad_norm: float | None = 1.0
    """Clip the global gradient norm to this value; null disables clipping."""
    seed: int = 42
    """Seeds data order, initialisation of new parameters and dropout."""
    save_every_n_steps: int | None = None
    """Write a resumable checkpoint every N optimizer steps (null: only at the end)."""
    keep_last_n_checkpoints: int | None = 2
    """Delete older resumable checkpoints; null keeps all."""
    resume: Literal["auto", "never"] | str = "auto"
    """`auto` resumes from the newest complete checkpoint in output_dir; `never` starts fresh
    (refusing a folder that already holds checkpoints); or a checkpoint folder path."""
    log_every_n_steps: int = 1
    """How often to write metrics.jsonl and tensorboard."""

    def __post_init__(self) -> None:
        _check(self.method in METHODS, "train.method",
               f"must be one of {', '.join(map(repr, METHODS))}, got {self.method!r}")
        _check(self.epochs > 0, "train.epochs", f"must be positive, got {self.epochs}")
        _check(self.max_steps is None or self.max_steps > 0, "train.max_steps", "must be positive")
        _check(self.micro_batch_size > 0, "train.micro_batch_size", "must be positive")
        _check(self.gradient_accumulation_steps > 0, "train.gradient_accumulation_steps", "must be positive")
        _check(self.lr > 0, "train.lr", f"must be positive, got {self.lr}")
        _check(0 <= self.min_lr <= self.lr, "train.min_lr", f"must be between 0 and train.lr, got {self.min_lr}")
        _check(self.weight_decay >= 0, "train.weight_decay", "must be >= 0")
        _check(all(0 <= b < 1 for b in self.adam_betas), "train.adam_betas", "each beta must be in [0, 1)")
        _check(self.max_grad_norm is None or self.max_grad_norm > 0, "train.max_grad_norm", "must be positive or null")
        warmups = [n for n in ("warmup_steps", "warmup_ratio", "warmup_epochs") if getattr(self, n) is not None]
        _check(len(warmups) <= 1, f"train.{warmups[-1] if warmups else 'warmup'}",
               f"set only one of {', '.join('train.' + w for w in warmups)}")
        _check(self.warmup_ratio is None or 0 <= self.warmup_ratio < 1, "train.warmup_ratio", "must be in [0, 1)")
        _check(self.warmup_steps is None or self.warmup_steps >= 0, "train.warmup_steps", "must be >= 0")
        _check(self.warmup_epochs is None or self.warmup_epochs >= 0, "train.warmup_epochs", "must be >= 0")
        _check(self.save_every_n_steps is None or self.save_every_n_steps > 0, "train.save_every_n_steps",
               "must be positive or null")
        _check(self.log_every_n_steps > 0, "train.log_every_n_steps", "must be positive")


@dataclass
class DeepSpeedArgs:
    config: str | None = None
    """A DeepSpeed JSON config (ZeRO stage, offload, communication), e.g. launch/deepspeed/zero3.json;
    null means ZeRO stage 0. Batch size, accumulation, clipping and precision come from the recipe
    and are filled in; "auto" placeholders are allowed. A relative path is looked up from the
    working directory, then from the tuner checkout (where launch/ lives)."""


@dataclass
class RecipeConfig:
    model: ModelArgs
    data: DataArgs
    train: TrainArgs = field(default_factory=TrainArgs)
    lora: LoraArgs = field(default_factory=LoraArgs)
    llama_adapter: LlamaAdapterConfig | None = None
    """LLaMA-Adapter options (tuner.adapters.llama_adapter.LlamaAdapterConfig): adapter_len,
    adapter_layers, gate, multimodal and V2 switches; defaults when train.method is llama_adapter."""
    deepspeed: DeepSpeedArgs = field(default_factory=DeepSpeedArgs)
    diagnostics: DiagnosticsArgs = field(default_factory=DiagnosticsArgs)
    """Training diagnostics (the gradient-health monitor); see tuner.diagnostics.config."""

    def __post_init__(self) -> None:
        if self.train.method == "qlora":
            _check(self.model.dtype != "fp16", "model.dtype", "qlora computes in bf16 or fp32")
        if self.llama_adapter is not None and self.train.method != "llama_adapter":
            raise ConfigError("llama_adapter: options given but train.method is "
                              f"{self.train.method!r}; set train.method: llama_adapter")
        if self.train.method == "llama_adapter" and self.llama_adapter is None:
            self.llama_adapter = LlamaAdapterConfig()

    def method_options(self):
        """The options section of `train.method` (None for full fine-tuning)."""
        if self.train.method == "full":
            return None
        return getattr(self, ADAPTER_METHODS[self.train.method].section)
