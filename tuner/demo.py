"""`tuner demo`: the embedded end-to-end job, on CPU in a few minutes.

1. Generate the bundled data: small Python function-writing tasks with unit tests (tuner.synthetic),
   in two instruction styles: Alpaca prompts with bare code answers, and chat turns (the
   tokenizer's chat template) with markdown-fenced answers. Held-out problems use function names
   never seen in training.
2. Build a tiny random-initialised code model and its tokenizer (tuner.tiny).
3. Evaluate it (pass@1 about 0), fully fine-tune it on style one with `tuner train`, export and
   evaluate again; then LLaMA-Adapter-tune the fine-tuned model on style two, export the adapter
   model and evaluate it. Every evaluation serves the exported folder with `vllm serve` (vLLM's CPU
   build, with tuner's vLLM plugin for the adapter model) and scores through the harness
   (`tuner-eval run`) in its sandbox.
4. Write report.md and report.png (loss curves, pass@1 per stage and style) and print the numbers.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from tuner.synthetic import Task, generate_tasks, write_humaneval

logger = logging.getLogger("tuner.demo")

STYLES = ("alpaca", "chat")
PASS_AT_1_GOAL = 0.8


@dataclass
class DemoSizes:
    """How big each part of the job is; `quick` keeps CI short while still meeting the goal."""

    train_tasks: int = 3000
    heldout_tasks: int = 100
    full_steps: int = 1600
    adapter_steps: int = 300
    hidden_size: int = 256
    layers: int = 4


SIZES = {"default": DemoSizes(), "quick": DemoSizes(train_tasks=2000, heldout_tasks=50, full_steps=1400,
                                                     adapter_steps=200)}


def instruction_for(task: Task) -> str:
    """The instruction the harness builds for a HumanEval-format problem (its `instruct` style)."""
    from tuner_eval.data.humaneval import INSTRUCTION

    return INSTRUCTION.format(prompt=task.humaneval()["prompt"].strip())


def alpaca_record(task: Task) -> dict:
    return {"instruction": instruction_for(task), "input": "", "output": task.solution}


def chat_record(task: Task) -> dict:
    return {"messages": [{"role": "user", "content": instruction_for(task)},
                         {"role": "assistant", "content": f"```python\n{task.solution}```"}]}


def write_data(out: Path, sizes: DemoSizes, seed: int) -> dict[str, Path]:
    """Training files for both styles and the held-out problems in HumanEval format."""
    out.mkdir(parents=True, exist_ok=True)
    train = generate_tasks(sizes.train_tasks, seed, "train")
    heldout = generate_tasks(sizes.heldout_tasks, seed, "heldout")
    files = {"alpaca": out / "train_alpaca.jsonl", "chat": out / "train_chat.jsonl",
             "heldout": out / "heldout_humaneval.jsonl"}
    files["alpaca"].write_text("".join(json.dumps(alpaca_record(t)) + "\n" for t in train))
    files["chat"].write_text("".join(json.dumps(chat_record(t)) + "\n" for t in train))
    write_humaneval(heldout, files["heldout"])
    return files


def evaluate_served(model_dir: Path, heldout: Path, out: Path, styles=STYLES) -> dict[str, float]:
    """Serve `model_dir` with `vllm serve`, run the harness on the held-out problems per style."""
    from tuner_eval.cli import main as tuner_eval
    from tuner.generation.server import VLLMServer

    scores = {}
    out.mkdir(parents=True, exist_ok=True)
    with VLLMServer(model_dir, max_model_len=512, log_path=out / "vllm_serve.log") as server:
        for style in styles:
            result_dir = out / style
            argv = ["run", "--task", "humaneval", "--dataset", str(heldout), "--model", server.model,
                    "--backend", "openai", "--base-url", server.base_url, "--prompt-style", "instruct",
                    "--max-new-tokens", "96", "--k", "1", "--out", str(result_dir)]
            if style == "chat":
                argv.append("--chat")
            code = tuner_eval(argv)
            if code != 0:
                raise RuntimeError(f"tuner-eval failed for {model_dir} ({style}), exit {code}")
            results = json.loads(next(result_dir.glob("*results.json")).read_text())
            scores[style] = results["pass@k"]["pass@1"]
    return scores


def train(recipe: dict, path: Path) -> Path:
    from tuner.config import from_dict
    from tuner.recipes.args import RecipeConfig
    from tuner.recipes.finetune import main as run_recipe

    path.write_text(json.dumps(recipe, indent=2))
    return run_recipe(from_dict(RecipeConfig, recipe))


def write_report(out: Path, scores: dict[str, dict[str, float]], runs: dict[str, Path], sizes: DemoSizes,
                 timings: dict[str, float]) -> tuple[Path, Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from tuner.metrics import read_metrics

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    for name, run in runs.items():
        rows = read_metrics(run / "metrics.jsonl")
        left.plot([r["step"] for r in rows], [r["loss"] for r in rows], label=name)
    left.set_xlabel("optimizer step")
    left.set_ylabel("loss (mean over response tokens)")
    left.set_yscale("log")
    left.set_title("training loss")
    left.legend()
    stages = list(scores)
    width = 0.38
    for i, style in enumerate(STYLES):
        values = [scores[s].get(style, 0.0) for s in stages]
        bars = right.bar([x + (i - 0.5) * width for x in range(len(stages))], values, width, label=f"{style} prompts")
        right.bar_label(bars, fmt="%.2f")
    right.axhline(PASS_AT_1_GOAL, color="grey", linestyle="--", linewidth=1)
    right.set_xticks(range(len(stages)), stages)
    right.set_ylim(0, 1.1)
    right.set_ylabel("pass@1 on held-out problems")
    right.set_title("evaluation (vLLM serve + sandboxed harness)")
    right.legend()
    fig.tight_layout()
    png = out / "report.png"
    fig.savefig(png, dpi=100)
    plt.close(fig)

    lines = ["# tuner demo report", "",
             f"Tiny Llama-architecture code model (hidden {sizes.hidden_size}, {sizes.layers} layers), "
             f"{sizes.train_tasks} synthetic training tasks, {sizes.heldout_tasks} held-out problems "
             "(function names never seen in training). Greedy decoding, pass@1 from the sandboxed harness.",
             "", "| stage | " + " | ".join(f"pass@1 ({s})" for s in STYLES) + " |",
             "|---|" + "---|" * len(STYLES)]
    for stage, by_style in scores.items():
        lines.append(f"| {stage} | " + " | ".join(f"{by_style.get(s, float('nan')):.2f}" for s in STYLES) + " |")
    lines += ["", "| step | seconds |", "|---|---|"] + [f"| {k} | {v:.0f} |" for k, v in timings.items()]
    lines += ["", "![loss curves and pass@1](report.png)", "", "Sizes: " + json.dumps(asdict(sizes))]
    md = out / "report.md"
    md.write_text("\n".join(lines) + "\n")
    return md, png


def run_demo(out: Path, sizes: DemoSizes, seed: int = 0) -> dict[str, dict[str, float]]:
    from tuner.export import export
    from tuner.tiny import build_tiny_model, train_tokenizer

    timings: dict[str, float] = {}
    clock = time.perf_counter()

    def lap(name: str) -> None:
        nonlocal clock
        timings[name] = time.perf_counter() - clock
        clock = time.perf_counter()
        logger.info("%s done in %.0f s", name, timings[name])

    out.mkdir(parents=True, exist_ok=True)
    data = write_data(out / "data", sizes, seed)
    base = build_tiny_model("llama", out / "base_model", train_tokenizer(), seed=seed,
                            hidden_size=sizes.hidden_size, intermediate_size=2 * sizes.hidden_size,
                            num_hidden_layers=sizes.layers, num_attention_heads=sizes.hidden_size // 64,
                            num_key_value_heads=sizes.hidden_size // 64)
    lap("data and tiny model")
    scores = {"base": evaluate_served(base, data["heldout"], out / "eval" / "base")}
    lap("evaluate base")

    full_run = out / "runs" / "full"  # no deepspeed section: ZeRO stage 0, this one process
    # Small steps, many of them: the model copies function names early, but copying the constant
    # from the docstring appears after a late phase change that comes with the number of updates
    # (around step 900 at micro batch 4), not with the number of examples seen.
    train({"model": {"path": str(base), "dtype": "fp32"},
           "data": {"path": str(data["alpaca"]), "template": "alpaca", "max_length": 256, "packing": True},
           "train": {"output_dir": str(full_run), "method": "full", "max_steps": sizes.full_steps,
                     "micro_batch_size": 4, "lr": 1e-3, "warmup_steps": 20, "min_lr": 1e-4, "seed": seed,
                     "weight_decay": 0.0, "resume": "never", "log_every_n_steps": 5}},
          out / "recipe_full.json")
    full_export = export(full_run / "final", out / "export" / "full", dtype="fp32")
    lap("full fine-tuning")
    scores["full fine-tune"] = evaluate_served(full_export, data["heldout"], out / "eval" / "full")
    lap("evaluate full fine-tune")

    adapter_run = out / "runs" / "adapter"
    train({"model": {"path": str(full_export), "dtype": "fp32"},
           "data": {"path": str(data["chat"]), "max_length": 256, "packing": True},
           "train": {"output_dir": str(adapter_run), "method": "llama_adapter", "max_steps": sizes.adapter_steps,
                     "micro_batch_size": 4, "lr": 2e-2, "warmup_steps": 10, "seed": seed,
                     "weight_decay": 0.02, "adam_betas": [0.9, 0.95], "resume": "never", "log_every_n_steps": 5},
           # prompts alone barely move a 3M-parameter model to a new format (loss 2.3 -> 1.6 in 150
           # steps); with V2 bias/scale tuning and unfrozen norms it falls below 0.1
           "llama_adapter": {"adapter_len": 10, "adapter_layers": sizes.layers, "bias_tuning": True,
                             "unfreeze_norms": True}},
          out / "recipe_adapter.json")
    adapter_export = export(adapter_run / "final", out / "export" / "adapter", dtype="fp32")
    lap("LLaMA-Adapter tuning")
    scores["+ LLaMA-Adapter"] = evaluate_served(adapter_export, data["heldout"], out / "eval" / "adapter")
    lap("evaluate LLaMA-Adapter")

    md, png = write_report(out, scores, {"full fine-tune": full_run, "LLaMA-Adapter": adapter_run}, sizes, timings)
    (out / "scores.json").write_text(json.dumps(scores, indent=2))
    print("\n== tuner demo ==")
    for stage, by_style in scores.items():
        print(f"  {stage:<18} " + "  ".join(f"pass@1[{s}]={v:.2f}" for s, v in by_style.items()))
    print(f"  checkpoints: {full_run / 'final'}, {adapter_run / 'final'}")
    print(f"  exported:    {full_export}, {adapter_export}")
    print(f"  metrics:     {full_run / 'metrics.jsonl'}, {adapter_run / 'metrics.jsonl'}")
    print(f"  report:      {md} ({png})")
    return scores


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="tuner demo", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("runs/demo"), help="output folder (default runs/demo)")
    parser.add_argument("--quick", action="store_true", help="reduced sizes (CI)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    os.environ.setdefault("DS_ACCELERATOR", "cpu")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    sizes = SIZES["quick" if args.quick else "default"]
    scores = run_demo(args.out, sizes, args.seed)
    reached = scores["full fine-tune"]["alpaca"]
    if reached < PASS_AT_1_GOAL:
        print(f"tuner demo: pass@1 after full fine-tuning is {reached:.2f}, below the goal {PASS_AT_1_GOAL}",
              file=sys.stderr)
        return 1
    return 0
