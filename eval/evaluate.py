"""`evaluate`: samples file -> (execute) -> score -> results JSON. Usable from Python too."""

from __future__ import annotations

import logging
from dataclasses import asdict
from pathlib import Path
from typing import Sequence

from tuner_eval.execute import execute_samples
from tuner.jsonl import read_json, write_json
from tuner_eval.samples import read_samples
from tuner_eval.sandbox import Sandbox, SandboxConfig
from tuner_eval.score import DEFAULT_K, caption_results, choice_results, code_results
from tuner_eval.tasks import CodeTask, TimeLimits, get_task

log = logging.getLogger(__name__)


def default_results_path(samples: Path) -> Path:
    return samples.with_name(samples.stem + "_results.json")


def evaluate(task_name: str, samples_path: Path, dataset_path: Path | None = None, ks: Sequence[int] = DEFAULT_K,
             out_path: Path | None = None, sandbox_config: SandboxConfig | None = None,
             cache: Path | None = None, show_progress: bool = True,
             time_limits: TimeLimits | None = None, plot_checks: str = "skip") -> dict:
    """Score a samples file and write the results JSON (see the module docstring of tuner_eval.cli).

    Verdicts go to `<results>.verdicts.jsonl` as they arrive; a rerun resumes from it.
    `time_limits` replaces evalplus's defaults for HumanEval+/MBPP+ (a looser policy, when asked for);
    `plot_checks="in-process"` lets DS-1000's plot problems be checked in the program's interpreter.
    """
    task = get_task(task_name, time_limits, plot_checks)
    dataset = task.load(dataset_path)
    samples = read_samples(samples_path, task, dataset)
    out_path = out_path or default_results_path(samples_path)
    if isinstance(task, CodeTask):
        verdicts_path = out_path.with_name(out_path.stem + ".verdicts.jsonl")
        with Sandbox(sandbox_config) as sandbox:
            verdicts = execute_samples(task, dataset, samples, verdicts_path, sandbox, cache, show_progress)
            isolation = sandbox.isolation()
        results = code_results(task.name, samples, verdicts, ks)
        results["sandbox"] = isolation
        if hasattr(task, "time_limits"):
            results["time_limits"] = asdict(task.time_limits)
        results["verdicts_file"] = str(verdicts_path)
    elif task.kind == "choice":
        results = choice_results(task.name, dataset, samples, ks)
    else:
        results = caption_results(task.name, dataset, samples)
    attempted = len(results["per_task"])  # one entry per task id the samples cover
    if attempted < len(dataset.problems):
        results["incomplete"] = (f"samples cover {attempted} of the {len(dataset.problems)} problems; "
                                 "pass@k is over those only")
        log.warning(results["incomplete"])
    results["dataset"] = dataset.describe()
    results["samples"] = str(samples_path)
    generation = samples_path.parent / "generation.json"
    if generation.exists():
        results["generation"] = read_json(generation)
    write_json(out_path, results)
    results["results_file"] = str(out_path)
    return results
