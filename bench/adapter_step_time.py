"""LLaMA-Adapter training-step time against baselines run in the same process.

A step is forward + loss + backward on one fixed batch (no optimizer update, which is negligible
for the adapter and would only flatter it against full fine-tuning). Printed ratios:

- adapter / frozen base, same backward span (goal <= 1.15): the base model with no trainable
  parameter, whose loss is backpropagated down to the input of the lowest adapted layer's output
  projection, the point where the adapter adds its prompt attention. That is the backward work
  the adapter's own step must do besides its prompt attention (in the lowest adapted layer the
  gradient enters only through o_proj, as the layer input needs none), so the ratio is the cost
  of the adapter itself over the base model's share of an adapter training step.
- adapter / peft AdaptionPrompt (goal <= 1.0): the same K and L on the same model, both in the
  scalar-gate mode that computes the same function (peft recomputes the query and value
  projections inside each adapted layer; this adapter captures them from the base attention).
- adapter / base full fine-tuning step and adapter / base forward only: for scale.

Timing: each candidate runs `--repeats` times, interleaved with the others, and the best run
counts (other processes can only add time). With one torch thread (the default) the process's CPU
time is reported next to wall time: on a shared machine it is far less disturbed by other load.

Usage:
    PYTHONPATH=$PWD python bench/adapter_step_time.py [--hidden 512 --layers 8 --seq 256 ...]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from _common import add_adapter_model_args
from transformers import LlamaConfig, LlamaForCausalLM


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_adapter_model_args(parser)
    parser.add_argument("--vocab", type=int, default=8192)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--seq", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1 is least disturbed on a shared machine)")
    return parser.parse_args()


def build_base(args: argparse.Namespace) -> LlamaForCausalLM:
    config = LlamaConfig(
        hidden_size=args.hidden, intermediate_size=args.intermediate, num_hidden_layers=args.layers,
        num_attention_heads=args.heads, num_key_value_heads=args.heads, vocab_size=args.vocab,
        max_position_embeddings=max(1024, args.seq), tie_word_embeddings=False,
    )
    config._attn_implementation = "sdpa"
    torch.manual_seed(0)
    return LlamaForCausalLM(config).train()


def training_step(model: torch.nn.Module, ids: torch.Tensor) -> None:
    loss = model(input_ids=ids, labels=ids).loss
    loss.backward()
    for param in model.parameters():
        param.grad = None


def forward_only(model: torch.nn.Module, ids: torch.Tensor) -> None:
    with torch.no_grad():
        model(input_ids=ids, labels=ids)


def frozen_base_same_span(args: argparse.Namespace) -> LlamaForCausalLM:
    """The base, all frozen, with gradient flowing back to the lowest adapted layer's o_proj input."""
    model = build_base(args).requires_grad_(False)
    lowest = model.model.layers[args.layers - args.adapter_layers]

    def require_grad(module, positional):
        positional[0].requires_grad_(True)  # a leaf: nothing below it requires grad

    lowest.self_attn.o_proj.register_forward_pre_hook(require_grad)
    return model


def main() -> None:
    args = parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    from peft import AdaptionPromptConfig, get_peft_model

    from tuner.adapters.llama_adapter import LlamaAdapterConfig, add_llama_adapter

    def adapter(gate: str):
        return add_llama_adapter(
            build_base(args), LlamaAdapterConfig(adapter_len=args.adapter_len, adapter_layers=args.adapter_layers, gate=gate)
        )

    peft_model = get_peft_model(
        build_base(args),
        AdaptionPromptConfig(adapter_len=args.adapter_len, adapter_layers=args.adapter_layers, task_type="CAUSAL_LM"),
    )
    base = build_base(args)
    candidates = {
        "adapter (tanh per head)": (adapter("tanh_per_head"), training_step),
        "adapter (scalar gate)": (adapter("scalar"), training_step),
        "peft AdaptionPrompt": (peft_model, training_step),
        "frozen base, same backward span": (frozen_base_same_span(args), training_step),
        "base full fine-tuning": (base, training_step),
        "base forward only": (base, forward_only),
    }
    ids = torch.randint(0, args.vocab, (args.batch, args.seq), generator=torch.Generator().manual_seed(0))
    for model, step in candidates.values():  # warm-up
        step(model, ids)
    wall: dict[str, list[float]] = {name: [] for name in candidates}
    cpu: dict[str, list[float]] = {name: [] for name in candidates}
    for _ in range(args.repeats):  # interleaved, so load from other processes hits all alike
        for name, (model, step) in candidates.items():
            start_wall, start_cpu = time.perf_counter(), time.process_time()
            step(model, ids)
            wall[name].append(time.perf_counter() - start_wall)
            cpu[name].append(time.process_time() - start_cpu)

    print(f"Llama hidden={args.hidden} layers={args.layers} heads={args.heads} batch={args.batch} seq={args.seq} "
          f"K={args.adapter_len} L={args.adapter_layers} threads={torch.get_num_threads()} repeats={args.repeats}")
    for name in candidates:
        print(f"  {name:<32} wall best {min(wall[name]) * 1000:7.1f} ms (median {statistics.median(wall[name]) * 1000:7.1f})"
              f"   cpu best {min(cpu[name]) * 1000:7.1f} ms")
    ratios = [
        ("adapter / frozen base, same backward span", "adapter (tanh per head)", "frozen base, same backward span", "  (goal <= 1.15)"),
        ("adapter (scalar) / peft AdaptionPrompt", "adapter (scalar gate)", "peft AdaptionPrompt", "  (goal <= 1.0)"),
        ("adapter / base full fine-tuning step", "adapter (tanh per head)", "base full fine-tuning", ""),
        ("adapter / base forward only", "adapter (tanh per head)", "base forward only", ""),
    ]
    for label, numerator, denominator, goal in ratios:
        by_wall = min(wall[numerator]) / min(wall[denominator])
        by_cpu = min(cpu[numerator]) / min(cpu[denominator])
        print(f"{label:<42} wall {by_wall:.3f}   cpu {by_cpu:.3f}{goal}")


if __name__ == "__main__":
    main()
