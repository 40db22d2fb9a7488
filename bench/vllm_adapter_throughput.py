"""Generation throughput of an exported LLaMA-Adapter model in vLLM, against baselines in the same process.

Printed ratios (output tokens per second, greedy, EOS ignored so every request makes --new-tokens):
- vLLM adapter / vLLM base: the cost of the gated prompt attention inside vLLM's attention path
  (same engine settings, same prompts; the base is the exported model's own base folder).
- vLLM adapter / transformers generate with the adapter: what serving through the plugin buys
  over tuner's transformers implementation (one batch of all prompts, KV cache on).

The model is a small random Llama (default 8 layers, hidden 512, head_dim 64) with a randomly
perturbed adapter (K=10 in the top 7 of 8 layers, about 30 of 32 for LLaMA-7B). All prompts have
the same length, so transformers needs no padding. Both vLLM engines live side by side and their
runs are interleaved --repeats times; the best run counts (other load on a shared machine can
only add time). The engines are shut down before transformers runs. The script also reports how
many vLLM adapter continuations equal transformers'.

Usage (vLLM must find tuner's plugin: install tuner, or put the checkout first on PYTHONPATH with
an installed tuner that declares the `vllm.general_plugins` entry point):
    PYTHONPATH=$PWD python bench/vllm_adapter_throughput.py [--prompts 64 --new-tokens 128 ...]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch
from _common import add_adapter_model_args


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_adapter_model_args(parser)
    parser.add_argument("--prompts", type=int, default=64)
    parser.add_argument("--prompt-len", type=int, default=32)
    parser.add_argument("--new-tokens", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=3, help="interleaved runs of each vLLM engine (best counts)")
    parser.add_argument("--hf-repeats", type=int, default=1, help="runs of transformers generate (slow on CPU)")
    parser.add_argument("--workdir", type=Path, default=None, help="where the models go (default: a temp folder)")
    return parser.parse_args()


def build_models(args: argparse.Namespace, root: Path) -> tuple[Path, Path]:
    """Save the random base Llama and export it with a perturbed adapter; returns (base, exported)."""
    from transformers import AutoModelForCausalLM

    from tuner.adapters.llama_adapter import LlamaAdapterConfig, adapter_parameters, add_llama_adapter
    from tuner.export.llama_adapter import export_adapted_model
    from tuner.tiny import build_tiny_model, train_tokenizer

    tokenizer = train_tokenizer()
    base_dir = build_tiny_model("llama", root / "base", tokenizer, hidden_size=args.hidden,
                                intermediate_size=args.intermediate, num_hidden_layers=args.layers,
                                num_attention_heads=args.heads, num_key_value_heads=args.heads)
    model = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32)
    add_llama_adapter(model, LlamaAdapterConfig(adapter_len=args.adapter_len, adapter_layers=args.adapter_layers))
    with torch.no_grad():
        for name, param in adapter_parameters(model):
            if name.endswith(".gate"):
                param.uniform_(0.3, 1.0)
    return base_dir, export_adapted_model(model, tokenizer, root / "adapter", torch.float32)


def timed(fn) -> tuple[float, object]:
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def main() -> None:
    args = parse_args()
    from transformers import AutoModelForCausalLM
    from vllm import LLM, SamplingParams
    from vllm.inputs import TokensPrompt

    from tuner.generation.vllm_offline import cpu_engine_defaults

    root = args.workdir or Path(tempfile.mkdtemp(prefix="vllm_adapter_bench_"))
    base_dir, adapter_dir = build_models(args, root)
    generator = torch.Generator().manual_seed(0)
    prompts = torch.randint(10, 1000, (args.prompts, args.prompt_len), generator=generator).tolist()
    total_tokens = args.prompts * args.new_tokens
    engine_args = {**cpu_engine_defaults(), "max_model_len": args.prompt_len + args.new_tokens + 16}

    engines = {name: LLM(model=str(folder), **engine_args) for name, folder in
               (("vLLM adapter", adapter_dir), ("vLLM base", base_dir))}
    params = SamplingParams(max_tokens=args.new_tokens, temperature=0, ignore_eos=True)
    requests = [TokensPrompt(prompt_token_ids=p) for p in prompts]
    best = {name: float("inf") for name in engines}
    outputs = {}
    for _ in range(args.repeats):
        for name, llm in engines.items():
            seconds, outputs[name] = timed(lambda llm=llm: llm.generate(requests, params, use_tqdm=False))
            best[name] = min(best[name], seconds)
    served = [list(o.outputs[0].token_ids) for o in outputs["vLLM adapter"]]
    for llm in engines.values():  # idle engines must not compete with transformers for the cores
        llm.llm_engine.engine_core.shutdown()  # vLLM 0.32: LLM has no shutdown of its own
    del engines, llm

    model = AutoModelForCausalLM.from_pretrained(adapter_dir, trust_remote_code=True, dtype=torch.float32).eval()
    model.generation_config.eos_token_id = None
    ids = torch.tensor(prompts)
    best["transformers adapter"] = float("inf")
    for _ in range(args.hf_repeats):
        with torch.no_grad():
            seconds, sequences = timed(lambda: model.generate(ids, max_new_tokens=args.new_tokens, do_sample=False))
        best["transformers adapter"] = min(best["transformers adapter"], seconds)
    reference = sequences[:, args.prompt_len:].tolist()

    print(f"\n{args.prompts} prompts x {args.new_tokens} new tokens, Llama {args.layers} layers hidden {args.hidden}, "
          f"adapter K={args.adapter_len} in {args.adapter_layers} layers, torch threads {torch.get_num_threads()}")
    for name, seconds in best.items():
        print(f"  {name:22s} {seconds:8.2f} s  {total_tokens / seconds:9.1f} tokens/s")
    print(f"  vLLM adapter / vLLM base throughput:            {best['vLLM base'] / best['vLLM adapter']:.3f}")
    speedup = best["transformers adapter"] / best["vLLM adapter"]
    print(f"  vLLM adapter / transformers adapter throughput: {speedup:.2f}")
    same = sum(a == b for a, b in zip(served, reference))
    print(f"  vLLM adapter continuations equal to transformers': {same}/{len(prompts)}")


if __name__ == "__main__":
    main()
