"""`tuner evolve`: evolve a seed set of code instructions with a teacher model.

    tuner evolve --seed code_alpaca.json --out evol/ --rounds 3 \\
        --teacher-url http://127.0.0.1:8000/v1 --teacher-model MODEL --concurrency 16
    tuner evolve --seed code_alpaca.json --out evol/ --teacher-path ./teacher-model

Run the same command again on the same --out to resume after an interruption, to retry teacher
calls that failed, or (with a larger --rounds) to add rounds.

Exit status: 0 when every teacher call succeeded, 3 when the run finished but some calls failed
(their items are in rejects.jsonl as teacher_error; rerunning asks again), 2 on bad input.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from tuner.evol.benchmarks import BenchmarkUnavailable
from tuner.evol.decontaminate import DecontamConfig
from tuner.evol.dedup import DedupConfig
from tuner.evol.eliminate import EliminationRules
from tuner.evol.pipeline import BUILTIN_BENCHMARKS, EvolConfig, Evolution
from tuner.evol.teacher import TeacherConfig
from tuner.generation import SamplingConfig
from tuner.generation.vllm_offline import VLLMEngineOptions
from tuner.jsonl import InputError

EXIT_OK, EXIT_BAD_INPUT, EXIT_INCOMPLETE = 0, 2, 3


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tuner evolve",
        description="Evolve code instructions with a teacher model (Evol-Instruct / WizardCoder).",
    )
    parser.add_argument("--seed", required=True, type=Path,
                        help="seed set: JSON array or JSONL of {instruction, input, output} (Code Alpaca format)")
    parser.add_argument("--out", required=True, type=Path, help="output folder; rerun on it to resume")
    parser.add_argument("--rounds", type=int, default=3, help="evolution rounds (default 3)")
    parser.add_argument("--seed-value", type=int, default=0, help="seed of the heuristic choice (default 0)")

    teacher = parser.add_argument_group("teacher (give --teacher-url and --teacher-model, or --teacher-path)")
    teacher.add_argument("--teacher-url", help="OpenAI-compatible base URL, e.g. http://127.0.0.1:8000/v1")
    teacher.add_argument("--teacher-model", help="model name the server serves")
    teacher.add_argument("--teacher-path", help="local model folder, run with offline vLLM")
    teacher.add_argument("--api-key-env", default="OPENAI_API_KEY",
                         help="environment variable holding the server's API key (default OPENAI_API_KEY)")
    teacher.add_argument("--concurrency", type=int, default=8, help="requests in flight (server; default 8)")
    teacher.add_argument("--timeout", type=float, default=120.0, help="seconds per request (server; default 120)")
    teacher.add_argument("--max-retries", type=int, default=5, help="retries per request (server; default 5)")
    teacher.add_argument("--retry-backoff", type=float, default=1.0,
                         help="first retry delay in seconds, doubling after each (server; default 1)")
    teacher.add_argument("--max-requests", type=int, default=None,
                         help="request budget for this run, retries included (server; default unlimited)")
    VLLMEngineOptions.add_arguments(teacher, "offline vLLM teacher")

    sampling = parser.add_argument_group("sampling (the evaluation harness's SamplingConfig)")
    sampling.add_argument("--temperature", type=float, default=0.0, help="0 is greedy (default)")
    sampling.add_argument("--top-p", type=float, default=1.0)
    sampling.add_argument("--max-new-tokens", type=int, default=1024)
    sampling.add_argument("--sampling-seed", type=int, default=None)

    elimination = parser.add_argument_group("elimination")
    elimination.add_argument("--judge", action="store_true",
                             help="also ask the teacher whether each rewrite adds anything over its parent")
    elimination.add_argument("--min-new-words", type=int, default=EliminationRules.min_new_words)
    elimination.add_argument("--min-answer-words", type=int, default=EliminationRules.min_answer_words)
    elimination.add_argument("--max-tokens", type=int, default=EliminationRules.max_tokens,
                             help="longest instruction + answer kept, in tokens (default 2048)")
    elimination.add_argument("--tokenizer", default=None,
                             help="tokenizer for --max-tokens (default: --teacher-path's, else approximate)")

    cleaning = parser.add_argument_group("deduplication and decontamination")
    cleaning.add_argument("--near-dup-threshold", type=float, default=DedupConfig.near_threshold,
                          help="word-shingle Jaccard for near-duplicates (default 0.8; above 1 disables)")
    cleaning.add_argument("--decontaminate", type=Path, nargs="+", default=[], metavar="FILE",
                          help="extra benchmark files (JSON/JSONL with prompt/solution-like fields)")
    cleaning.add_argument("--skip-benchmark", choices=BUILTIN_BENCHMARKS, action="append", default=[],
                          help="do not decontaminate against this built-in benchmark")
    cleaning.add_argument("--mbpp-path", default=None,
                          help="local mbpp.jsonl (default: $TUNER_MBPP_PATH, else downloaded into the cache)")
    cleaning.add_argument("--decontam-ngram", type=int, default=DecontamConfig.ngram)
    cleaning.add_argument("--decontam-threshold", type=float, default=DecontamConfig.threshold,
                          help="fraction of a benchmark text's n-grams that marks an item (default 0.5)")
    parser.add_argument("-v", "--verbose", action="store_true", help="log each failed call")
    return parser


def configs_from_args(args: argparse.Namespace) -> tuple[EvolConfig, TeacherConfig]:
    """Raises ValueError with the flag named when an option is out of range."""
    teacher = TeacherConfig(
        url=args.teacher_url, model=args.teacher_model, path=args.teacher_path,
        api_key_env=args.api_key_env, concurrency=args.concurrency, timeout_s=args.timeout,
        max_retries=args.max_retries, backoff_s=args.retry_backoff, max_requests=args.max_requests,
        engine=VLLMEngineOptions.from_arguments(args),
    )
    sampling = SamplingConfig(temperature=args.temperature, top_p=args.top_p,
                              max_new_tokens=args.max_new_tokens, seed=args.sampling_seed)
    config = EvolConfig(
        seed_path=args.seed, out_dir=args.out, rounds=args.rounds, seed_value=args.seed_value,
        sampling=sampling, judge=args.judge,
        rules=EliminationRules(min_new_words=args.min_new_words, min_answer_words=args.min_answer_words,
                               max_tokens=args.max_tokens),
        dedup=DedupConfig(near_threshold=args.near_dup_threshold),
        decontam=DecontamConfig(ngram=args.decontam_ngram, threshold=args.decontam_threshold),
        benchmarks=tuple(b for b in BUILTIN_BENCHMARKS if b not in args.skip_benchmark),
        mbpp_path=args.mbpp_path, decontaminate_files=list(args.decontaminate), tokenizer=args.tokenizer,
    )
    return config, teacher


def summary(report: dict, out: Path) -> str:
    calls = report["teacher_calls"]
    merge = report["merge"]
    lines = [
        f"merged {merge['merged']} items into {out / 'merged.jsonl'} "
        f"(seed {report['seed']['items']}, by round {merge['merged_by_round']})",
        f"eliminated: {json.dumps(report['eliminated_by_reason'])}; merge removed: {json.dumps(merge['removed'])}",
        f"teacher calls: {calls['made_this_run']} made, {calls['reused_from_journal']} reused, "
        f"{calls['failed_this_run']} failed",
    ]
    if not report["complete"]:
        lines.append(f"{calls['failed_outstanding']} teacher calls failed (e.g. {calls['first_errors'][:1]}); "
                     f"their items are in rejects.jsonl; run the same command again to retry them")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.verbose:
        logging.getLogger("tuner").setLevel(logging.DEBUG)
    try:
        config, teacher = configs_from_args(args)
    except ValueError as e:
        print(f"tuner evolve: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT
    evolution = Evolution(config, teacher)
    try:
        report = evolution.run()
    except (InputError, BenchmarkUnavailable) as e:
        print(f"tuner evolve: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT
    finally:
        evolution.close()
    print(summary(report, args.out))
    return EXIT_OK if report["complete"] else EXIT_INCOMPLETE
