"""`tuner diagnose grad-health|kernel|placement ...`

  grad-health RUN_DIR     summarise a run's gradient-health records (written by `tuner train` with
                          diagnostics.grad_monitor_every_n_steps=N): alarms, grad_health.json/.png
  kernel                  kernel-regime check of prompt-based fine-tuning (eNTK vs fine-tuning)
  placement               successive-halving search of LLaMA-Adapter prompt placement under a budget

Each writes JSON and a PNG into --out (grad-health: into RUN_DIR unless --out is given).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from tuner.data.records import DataError

_SYNTHETIC_HELP = ("use N examples of the built-in synthetic sentiment task instead of files "
                   "(label words ' terrible' ' great' must be single tokens of the model's tokenizer)")


def _grad_health(args: argparse.Namespace) -> int:
    from tuner.diagnostics.grad_report import JSONL_NAME, write_report

    run = Path(args.run_dir)
    records = run / JSONL_NAME if run.is_dir() else run
    if not records.exists():
        raise FileNotFoundError(f"{records}: no gradient-health records (train with "
                                "diagnostics.grad_monitor_every_n_steps=N to write them)")
    out = Path(args.out) if args.out else records.parent
    out.mkdir(parents=True, exist_ok=True)
    written = write_report(records, out)
    summary = json.loads(written["summary"].read_text())
    print(f"{summary['steps_monitored']} monitored steps ({summary['first_step']}..{summary['last_step']}), "
          f"{len(summary['alarms'])} alarm episodes")
    for alarm in summary["alarms"]:
        print(f"  {alarm['kind']:<9} {alarm['reason']:<8} steps {alarm['first_step']}-{alarm['last_step']}: "
              f"{alarm['message']}")
    print(f"summary: {written['summary']}" + (f"\nheat map: {written['heatmap']}" if "heatmap" in written else ""))
    return 0


def _load_model(path: str, attn_implementation: str = "eager"):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32, attn_implementation=attn_implementation)
    return model.eval(), tokenizer


def _splits(args: argparse.Namespace, tokenizer, first: str, second: str):
    """Two encoded few-shot splits from JSONL files or the synthetic task."""
    from tuner.diagnostics.fewshot import SENTIMENT_LABEL_WORDS, encode_task, read_task_jsonl, synthetic_sentiment

    label_words = tuple(args.label_words) if args.label_words else SENTIMENT_LABEL_WORDS
    if args.synthetic:
        pairs = synthetic_sentiment(2 * args.synthetic, seed=args.seed)
        a, b = pairs[: args.synthetic], pairs[args.synthetic:]
    else:
        files = (getattr(args, first), getattr(args, second))
        if not all(files):
            raise ValueError(f"give --{first} and --{second} JSONL files, or --synthetic N")
        a, b = (read_task_jsonl(f, len(label_words)) for f in files)
    return encode_task(tokenizer, a, label_words, args.template), encode_task(tokenizer, b, label_words, args.template)


def _kernel(args: argparse.Namespace) -> int:
    from tuner.diagnostics.kernel import KernelCheckConfig, kernel_check, plot_kernel_reports

    model, tokenizer = _load_model(args.model)
    train, test = _splits(args, tokenizer, "train", "test")
    config = KernelCheckConfig(optimizer=args.optimizer, lr=args.lr[0], steps=args.steps, batch_size=args.batch_size,
                               param_filter=args.param_filter, seed=args.seed,
                               pad_id=tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0)
    finetuned = _load_model(args.finetuned)[0] if args.finetuned else None
    reports = kernel_check(model, train, test, config, learning_rates=args.lr, finetuned=finetuned)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "kernel_check.json").write_text(json.dumps([r.to_dict() for r in reports], indent=2))
    plot_kernel_reports(reports, out / "kernel_check.png")
    for report in reports:
        accuracy = ", ".join(f"{k} {v:.3f}" for k, v in report.accuracy.items())
        agreement = ", ".join(f"{k} {v:.3f}" for k, v in report.agreement_with_finetuned.items())
        print(f"{report.config['optimizer']} lr={report.config['lr']:g}: linearisation error "
              f"{report.linearisation_error:.4g}, |Δθ|/|θ0| {report.relative_weight_change:.3g}, kernel regime: "
              f"{'yes' if report.kernel_regime else 'no'}\n  test accuracy: {accuracy}\n  agreement with "
              f"fine-tuning: {agreement}")
    print(f"report: {out / 'kernel_check.json'}\nplot: {out / 'kernel_check.png'}")
    return 0


def _placement(args: argparse.Namespace) -> int:
    from tuner.diagnostics.placement import Placement, SearchConfig, plot_search, successive_halving

    model, tokenizer = _load_model(args.model, attn_implementation="sdpa")
    train, val = _splits(args, tokenizer, "train", "val")
    config = SearchConfig(budget=args.budget, adapter_len=args.adapter_len, min_steps=args.min_steps, eta=args.eta,
                          max_candidates=args.max_candidates, search_tuned_layers=not args.prompts_only,
                          candidates=[Placement.parse(c) for c in args.candidates] if args.candidates else None,
                          lr=args.lr, layer_lr=args.layer_lr, batch_size=args.batch_size, seed=args.seed,
                          pad_id=tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0)
    report = successive_halving(model, train, val, config)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "placement_search.json").write_text(json.dumps(report.to_dict(), indent=2))
    plot_search(report, out / "placement_search.png")
    best = next(c for c in report.candidates if c.placement == report.chosen)
    last = best.curve[-1]
    print(f"chosen placement: {report.chosen} (prompt layers {report.chosen_prompt_layers}, fine-tuned layers "
          f"{report.chosen_tuned_layers}, {best.trainable_params:,} trainable parameters): validation loss "
          f"{last['val_loss']:.4f}, accuracy {last['val_accuracy']:.3f} after {last['steps']} steps; "
          f"{len(report.candidates)} candidates, {report.total_training_steps} training steps in all")
    print(f"report: {out / 'placement_search.json'}\nplot: {out / 'placement_search.png'}")
    return 0


def _task_arguments(parser: argparse.ArgumentParser, second: str) -> None:
    parser.add_argument("--model", required=True, help="model folder (from_pretrained), e.g. a tuner train final/")
    parser.add_argument("--train", help="JSONL of {\"text\": ..., \"label\": class index}")
    parser.add_argument(f"--{second}", help=f"JSONL {second} split, same format")
    parser.add_argument("--synthetic", type=int, metavar="N", help=_SYNTHETIC_HELP)
    parser.add_argument("--label-words", nargs="+", metavar="WORD",
                        help="one single-token word per class, in label order (default: ' terrible' ' great')")
    parser.add_argument("--template", default="{text} It was", help="prompt template with {text} (default: %(default)r)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", required=True, help="folder for the JSON report and the PNG")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tuner diagnose", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="tool", required=True)

    grad = sub.add_parser("grad-health", help="summarise a run's gradient-health records")
    grad.add_argument("run_dir", help="a tuner train output_dir (or its grad_health.jsonl)")
    grad.add_argument("--out", help="where to write grad_health.json/.png (default: next to the records)")

    kernel = sub.add_parser("kernel", help="eNTK kernel-regime check of prompt-based fine-tuning")
    _task_arguments(kernel, "test")
    kernel.add_argument("--optimizer", choices=("sgd", "adam"), default="adam")
    kernel.add_argument("--lr", type=float, nargs="+", default=[1e-5],
                        help="one fine-tuning run per learning rate (default: %(default)s)")
    kernel.add_argument("--steps", type=int, default=50, help="fine-tuning steps (default: %(default)s)")
    kernel.add_argument("--batch-size", type=int, help="mini-batch size (default: the whole train split)")
    kernel.add_argument("--param-filter", help="regex: only these parameters train and enter the kernel")
    kernel.add_argument("--finetuned", help="analyse this fine-tuned model folder instead of fine-tuning")

    place = sub.add_parser("placement", help="search LLaMA-Adapter prompt placement under a parameter budget")
    _task_arguments(place, "val")
    place.add_argument("--budget", type=int, required=True, help="most trainable parameters per candidate")
    place.add_argument("--adapter-len", type=int, default=10, help="prompt vectors per layer (default: %(default)s)")
    place.add_argument("--min-steps", type=int, default=20, help="steps per candidate in the first rung")
    place.add_argument("--eta", type=int, default=2, help="keep 1/eta per rung (default: %(default)s)")
    place.add_argument("--max-candidates", type=int, default=16)
    place.add_argument("--candidates", nargs="+", metavar="PLACEMENT",
                       help="explicit candidates, e.g. p31 p28,29,30,31 p0+t31 (p: prompt layers, t: tuned layers)")
    place.add_argument("--prompts-only", action="store_true", help="never fine-tune whole layers")
    place.add_argument("--lr", type=float, default=1e-2, help="prompt and gate learning rate")
    place.add_argument("--layer-lr", type=float, default=1e-4, help="learning rate of fine-tuned layers")
    place.add_argument("--batch-size", type=int, default=16)
    return parser


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    handler = {"grad-health": _grad_health, "kernel": _kernel, "placement": _placement}[args.tool]
    try:
        return handler(args)
    except (DataError, ValueError, FileNotFoundError) as exc:
        print(f"tuner diagnose {args.tool}: error: {exc}", file=sys.stderr)
        return 2
