"""`tuner-eval`: generate samples, evaluate them, or both.

    tuner-eval generate --task T --model PATH|NAME --backend {vllm,hf,openai} [--base-url URL]
        [--n N] [--temperature X] [--top-p P] [--max-new-tokens M] [--prompt-style {base,instruct}]
        [--chat] [--out DIR]                                   -> DIR/samples.jsonl (+ raw.jsonl, generation.json)
        vllm: [--tensor-parallel-size T] [--data-parallel-size D] [--gpu-memory-utilization F]
              [--max-num-seqs S] [--max-model-len L] [--dtype X]  (effective values in generation.json)
    tuner-eval evaluate --task T --samples FILE [--dataset PATH] [--k 1,10,100] [--out FILE]
                                                               -> results JSON, summary table
    tuner-eval run ... = generate, then evaluate DIR/samples.jsonl into DIR/results.json

Tasks: humaneval, humaneval+, mbpp, mbpp+, ds1000, scienceqa, coco-caption. `--dataset` overrides
the data file (otherwise it is downloaded once into the cache, see tuner_eval.data.download).

Results JSON: {"task", "pass@k": {"pass@1": x, ...}, "per_task": {TASK_ID: {"n", "correct",
"verdicts": ["pass"|"fail"|"timeout"|"error"|"skipped", ...]}}, "dataset", "sandbox", ...};
ScienceQA adds "accuracy" by subject, context and grade band; COCO gives "metrics" (BLEU-4, CIDEr).
Both stages resume: rerunning the same command continues where an interrupted one stopped.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from tuner_eval.data.download import DownloadError
from tuner.jsonl import InputError

log = logging.getLogger("tuner-eval")


def _ks(text: str) -> list[int]:
    try:
        ks = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"--k must be comma-separated integers, got {text!r}") from None
    if not ks or min(ks) < 1:
        raise argparse.ArgumentTypeError(f"--k values must be >= 1, got {text!r}")
    return ks


def _add_task_args(parser: argparse.ArgumentParser) -> None:
    from tuner_eval.tasks import TASKS

    parser.add_argument("--task", required=True, choices=list(TASKS))
    parser.add_argument("--dataset", type=Path, help="data file to use instead of the cached download")


def _add_generate_args(parser: argparse.ArgumentParser) -> None:
    from tuner.generation import BACKENDS
    from tuner.generation.vllm_offline import VLLMEngineOptions

    parser.add_argument("--model", required=True, help="folder or model name (for openai: the served name)")
    parser.add_argument("--backend", required=True, choices=BACKENDS)
    parser.add_argument("--base-url", default="http://127.0.0.1:8000/v1", help="openai backend: server URL")
    parser.add_argument("--api-key-env", default="OPENAI_API_KEY", help="openai backend: variable holding the key")
    parser.add_argument("--concurrency", type=int, default=8, help="openai backend: requests in flight")
    parser.add_argument("--n", type=int, default=1, help="samples per problem")
    parser.add_argument("--temperature", type=float, default=0.0)
    parser.add_argument("--top-p", type=float, default=1.0)
    parser.add_argument("--max-new-tokens", type=int, default=512)
    parser.add_argument("--seed", type=int)
    parser.add_argument("--prompt-style", choices=("base", "instruct"), default="base")
    parser.add_argument("--chat", action="store_true",
                        help="instruct style through the tokenizer's chat template instead of the Alpaca template")
    VLLMEngineOptions.add_arguments(parser.add_argument_group("vllm backend engine (default: vLLM's own)"))
    parser.add_argument("--dtype", help="vllm/hf backends: weights dtype (default float32 on CPU)")
    parser.add_argument("--batch-size", type=int, default=8, help="hf backend: prompts per generate call")
    parser.add_argument("--limit", type=int, help="only the first N problems (smoke tests)")
    parser.add_argument("--out", type=Path, default=Path("eval_out"), help="output folder")


def _add_evaluate_args(parser: argparse.ArgumentParser, samples: bool) -> None:
    if samples:
        parser.add_argument("--samples", type=Path, required=True)
        parser.add_argument("--out", type=Path, help="results JSON (default: <samples>_results.json)")
    parser.add_argument("--k", type=_ks, default=[1, 10, 100], help="comma-separated k values for pass@k")
    parser.add_argument("--workers", type=int, help="programs run at once (default: CPU count)")
    parser.add_argument("--strict-sandbox", action="store_true",
                        help="refuse to run when an isolation layer is unavailable on this machine")
    parser.add_argument("--ds1000-plot-checks", choices=("skip", "in-process"), default="skip",
                        help="DS-1000 plot problems: skip them (default), or check them inside the program's own "
                             "interpreter, where a forging program could fake a pass")
    limits = parser.add_argument_group("HumanEval+/MBPP+ time limits (default: evalplus's; larger values are looser)")
    limits.add_argument("--min-time-limit", type=float, help="seconds each input may take at least (evalplus: 1.0)")
    limits.add_argument("--gt-time-limit-factor", type=float,
                        help="each input may take this many times the reference solution's time (evalplus: 4.0)")
    limits.add_argument("--task-time-cap", type=float,
                        help="cap in seconds on the base or plus inputs' summed limits (evalplus: 60)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tuner-eval", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    generate = commands.add_parser("generate", help="generate samples")
    _add_task_args(generate)
    _add_generate_args(generate)
    evaluate = commands.add_parser("evaluate", help="score a samples file")
    _add_task_args(evaluate)
    _add_evaluate_args(evaluate, samples=True)
    run = commands.add_parser("run", help="generate, then evaluate")
    _add_task_args(run)
    _add_generate_args(run)
    _add_evaluate_args(run, samples=False)
    return parser


def _generator(args: argparse.Namespace):
    from tuner.generation import make_generator
    from tuner.generation.vllm_offline import VLLMEngineOptions

    try:
        engine = VLLMEngineOptions.from_arguments(args, args.dtype if args.backend == "vllm" else None)
    except ValueError as exc:
        raise InputError(str(exc)) from None
    if args.backend != "vllm" and engine.engine_kwargs():
        flags = ", ".join("--" + name.replace("_", "-") for name in engine.engine_kwargs())
        raise InputError(f"{flags}: vllm backend options, but --backend is {args.backend}")
    options: dict = {}
    if args.backend == "openai":
        options = dict(base_url=args.base_url, api_key_env=args.api_key_env, concurrency=args.concurrency)
    elif args.backend == "vllm":
        options = engine.engine_kwargs()
    elif args.backend == "hf":
        options = dict(batch_size=args.batch_size, show_progress=True)
        if args.dtype:
            options["dtype"] = args.dtype
    try:
        return make_generator(args.backend, args.model, **options)
    except ValueError as exc:
        raise InputError(f"--backend {args.backend}: {exc}") from None


def do_generate(args: argparse.Namespace) -> tuple[int, Path]:
    from tuner_eval.generate import extract_samples, generate_raw
    from tuner_eval.tasks import get_task
    from tuner.generation import SamplingConfig

    task = get_task(args.task)
    if task.kind == "caption":
        raise InputError("--task coco-caption: the generation backends are text-only; write samples "
                         "({task_id: cocoid, completion: caption}) with your vision-language model and run "
                         "`tuner-eval evaluate`")
    dataset = task.load(args.dataset)
    try:
        sampling = SamplingConfig(n=args.n, temperature=args.temperature, top_p=args.top_p,
                                  max_new_tokens=args.max_new_tokens, seed=args.seed)
    except ValueError as exc:
        raise InputError(f"sampling: {exc}") from None
    task_ids = list(dataset.problems)[: args.limit] if args.limit else None
    with _generator(args) as generator:
        report = generate_raw(task, dataset, generator, sampling, args.out, args.prompt_style, args.chat, task_ids)
    samples = extract_samples(task, dataset, args.out)
    print(f"{report.generated} samples generated ({report.requested} requested) -> {samples}")
    if report.failed_prompts:
        print(f"{report.failed_prompts} prompts failed (first: {report.errors[0]}); run the same command "
              "again to retry them", file=sys.stderr)
        return 1, samples
    return 0, samples


def _time_limits(args: argparse.Namespace):
    """evalplus's time limits with the options given on the command line, or None for its defaults."""
    from tuner_eval.tasks import TimeLimits

    given = {field: value for field, value in (("min_s", args.min_time_limit), ("factor", args.gt_time_limit_factor),
                                               ("task_cap_s", args.task_time_cap)) if value is not None}
    if not given:
        return None
    try:
        return TimeLimits(**given)
    except ValueError as exc:
        raise InputError(f"--min-time-limit/--gt-time-limit-factor/--task-time-cap: {exc}") from None


def do_evaluate(args: argparse.Namespace, samples: Path, out: Path | None) -> int:
    from tuner_eval.evaluate import evaluate
    from tuner_eval.sandbox import SandboxConfig
    from tuner_eval.score import summary_table

    config = SandboxConfig(strict=args.strict_sandbox)
    if args.workers:
        config.workers = args.workers
    results = evaluate(args.task, samples, args.dataset, args.k, out, config, time_limits=_time_limits(args),
                       plot_checks=args.ds1000_plot_checks)
    print(summary_table(results))
    print(f"results -> {results['results_file']}")
    return 0


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args = build_parser().parse_args(argv)
    try:
        if args.command == "generate":
            return do_generate(args)[0]
        if args.command == "evaluate":
            return do_evaluate(args, args.samples, args.out)
        status, samples = do_generate(args)
        if status:
            return status
        return do_evaluate(args, samples, args.out / "results.json")
    except (InputError, DownloadError) as exc:
        print(f"tuner-eval: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
