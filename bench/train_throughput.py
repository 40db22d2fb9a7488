"""Training throughput: `tuner train` vs transformers' `Trainer`, same model, data, DeepSpeed config,
steps and ranks; printed as tokens/s ratios (goal: >= 1.3x with packing on mixed-length data).

    .venv/bin/python bench/train_throughput.py [--ranks 2] [--steps 30] [--data FILE.json]

Tokens are real (non-padding) tokens, counted the same way for both; time is the training loop only
(tuner: the sum of its per-step times; Trainer: its `train_runtime`), so start-up is excluded for both.
The default data is the shared Code Alpaca sample (mixed lengths) when present, else synthetic tasks.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

TRAINER_SCRIPT = r'''
import json, sys, torch
from transformers import AutoModelForCausalLM, AutoTokenizer, Trainer, TrainingArguments, DataCollatorForSeq2Seq
from tuner.data.examples import load_examples
args = json.loads(sys.argv[1])
tok = AutoTokenizer.from_pretrained(args["model"])
examples, _ = load_examples([args["data"]], tok, max_length=args["max_length"])
rows = [{"input_ids": e.input_ids, "labels": e.labels, "attention_mask": [1] * len(e.input_ids)} for e in examples]
model = AutoModelForCausalLM.from_pretrained(args["model"], dtype=torch.float32, attn_implementation="sdpa")
ds = json.load(open(args["ds_config"]))
targs = TrainingArguments(output_dir=args["out"], per_device_train_batch_size=args["micro_batch_size"],
    gradient_accumulation_steps=1, max_steps=args["steps"], learning_rate=1e-4, lr_scheduler_type="cosine",
    warmup_steps=2, logging_steps=10**9, save_strategy="no", report_to=[], use_cpu=True, deepspeed=ds,
    dataloader_num_workers=0, seed=1, disable_tqdm=True, bf16=False)
class Counting(DataCollatorForSeq2Seq):
    tokens = 0
    def __call__(self, features, return_tensors=None):
        batch = super().__call__(features, return_tensors)
        Counting.tokens += int(batch["attention_mask"].sum())
        return batch
collator = Counting(tok, padding=True, pad_to_multiple_of=8)
trainer = Trainer(model=model, args=targs, train_dataset=rows, data_collator=collator)
result = trainer.train()
tokens = torch.tensor([float(Counting.tokens)])
if torch.distributed.is_initialized():
    torch.distributed.all_reduce(tokens)
if trainer.is_world_process_zero():
    json.dump({"tokens": tokens.item(), "seconds": result.metrics["train_runtime"]}, open(args["out"] + "/result.json", "w"))
'''


def run(cmd: list[str], env: dict) -> None:
    result = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit(f"failed: {' '.join(cmd)}\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")


def launcher(ranks: int, port: int) -> list[str]:
    return [str(Path(sys.executable).parent / "deepspeed"), "--num_gpus", str(ranks), "--master_port", str(port),
            "--no_local_rank"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ranks", type=int, default=2)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--micro-batch-size", type=int, default=8)
    parser.add_argument("--max-length", type=int, default=512)
    parser.add_argument("--ds-config", default=str(REPO / "launch" / "deepspeed" / "zero2.json"))
    parser.add_argument("--data", default=None)
    args = parser.parse_args()

    from tuner.engine import free_port
    from tuner.metrics import read_metrics
    from tuner.synthetic import generate_tasks, write_alpaca
    from tuner.tiny import build_tiny_model, train_tokenizer

    work = Path(tempfile.mkdtemp(prefix="tuner-bench-"))
    shared = REPO.parent / "shared" / "data" / "codealpaca" / "code_alpaca_2k.json"
    data = Path(args.data) if args.data else shared if shared.exists() else write_alpaca(
        generate_tasks(2000, seed=0), work / "synthetic.jsonl")
    model_dir = build_tiny_model("llama", work / "model", train_tokenizer(),
                                 hidden_size=256, intermediate_size=688, num_hidden_layers=4,
                                 num_attention_heads=4, num_key_value_heads=4)
    env = dict(os.environ, DS_ACCELERATOR=os.environ.get("DS_ACCELERATOR", "cpu"),
               TORCH_EXTENSIONS_DIR=os.environ.get("TORCH_EXTENSIONS_DIR", str(REPO / ".cache" / "torch_extensions")),
               PYTHONPATH=str(REPO))
    print(f"model: llama 4 layers hidden 256 ({model_dir}); data: {data}; {args.ranks} ranks; "
          f"{args.steps} steps of {args.micro_batch_size} rows/rank; DeepSpeed config {args.ds_config}")

    results = {}
    for packing in (False, True):
        out = work / f"tuner_packing_{packing}"
        recipe = {"model": {"path": str(model_dir), "dtype": "fp32", "attn_implementation": "sdpa"},
                  "data": {"path": str(data), "max_length": args.max_length, "packing": packing},
                  "train": {"output_dir": str(out), "max_steps": args.steps, "micro_batch_size": args.micro_batch_size,
                            "lr": 1e-4, "warmup_steps": 2, "seed": 1, "keep_last_n_checkpoints": 1},
                  "deepspeed": {"config": args.ds_config}}
        (work / "recipe.json").write_text(json.dumps(recipe))
        run(launcher(args.ranks, free_port()) + ["--module", "tuner.cli", "train", str(work / "recipe.json")], env)
        rows = read_metrics(out / "metrics.jsonl")
        results[f"tuner (packing={packing})"] = sum(r["tokens"] for r in rows) / sum(r["step_time_s"] for r in rows)

    trainer_out = work / "trainer"
    trainer_out.mkdir()
    script = work / "trainer_baseline.py"
    script.write_text(TRAINER_SCRIPT)
    config = {"model": str(model_dir), "data": str(data), "max_length": args.max_length, "out": str(trainer_out),
              "steps": args.steps, "micro_batch_size": args.micro_batch_size, "ds_config": args.ds_config}
    run(launcher(args.ranks, free_port()) + [str(script), json.dumps(config)], env)
    measured = json.loads((trainer_out / "result.json").read_text())
    baseline = measured["tokens"] / measured["seconds"]
    results["transformers Trainer"] = baseline

    print(f"\n{'system':<28}{'tokens/s':>12}{'vs Trainer':>12}")
    for name, value in results.items():
        print(f"{name:<28}{value:>12.0f}{value / baseline:>11.2f}x")


if __name__ == "__main__":
    main()
