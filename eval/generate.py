"""The generate stage (and the extract stage that follows it).

`generate_raw` asks a `Generator` for the samples each problem still lacks and appends every
text to `raw.jsonl` as it arrives; a rerun on the same folder asks only for what is missing, so
finished samples are never regenerated. `extract_samples` then rebuilds `samples.jsonl` from
`raw.jsonl` (cheap and deterministic). `generation.json` records the task, the backend and the
sampling parameters the backend actually applied.
"""

from __future__ import annotations

import logging
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path

from tqdm.auto import tqdm

from tuner_eval.data import Dataset, Problem
from tuner.jsonl import InputError, JsonlAppender, iter_json_records, read_json, write_json
from tuner_eval.prompts import chat_messages, instruct_prompt
from tuner_eval.tasks import Task
from tuner.generation import GenerationResult, Generator, SamplingConfig

log = logging.getLogger(__name__)

RAW_FILE, SAMPLES_FILE, CONFIG_FILE = "raw.jsonl", "samples.jsonl", "generation.json"


@dataclass
class GenerationReport:
    requested: int
    generated: int
    failed_prompts: int
    errors: list[str]


def build_prompt(problem: Problem, style: str, chat: bool) -> str | list[dict]:
    if style == "base":
        return problem.prompt
    return chat_messages(problem.instruction) if chat else instruct_prompt(problem.instruction)


def _check_same_run(out_dir: Path, config: dict) -> None:
    path = out_dir / CONFIG_FILE
    if not path.exists():
        return
    previous = read_json(path)
    for key in ("task", "prompt_style", "chat", "sampling_requested"):
        if previous.get(key) != config.get(key):
            raise InputError(f"{path}: this folder holds a run with a different `{key}` "
                             f"({previous.get(key)!r}, now {config.get(key)!r}); use another --out")


def generate_raw(task: Task, dataset: Dataset, generator: Generator, sampling: SamplingConfig, out_dir: Path,
                 style: str = "base", chat: bool = False, task_ids: list[str] | None = None) -> GenerationReport:
    """Generate until every problem has `sampling.n` texts in `out_dir/raw.jsonl`."""
    out_dir.mkdir(parents=True, exist_ok=True)
    stops = task.stops(style)
    effective = SamplingConfig(**{**sampling.to_dict(), "stop": list(sampling.stop) or stops})
    config = {"task": task.name, "dataset": dataset.describe(), "prompt_style": style, "chat": chat,
              "stop": effective.stop, "sampling_requested": sampling.to_dict(),
              "sampling_effective": generator.effective_sampling(effective), "generator": generator.describe()}
    _check_same_run(out_dir, config)
    write_json(out_dir / CONFIG_FILE, config)
    raw_path = out_dir / RAW_FILE
    have: Counter[str] = Counter()
    if raw_path.exists():
        for _, record in iter_json_records(raw_path, tolerate_torn_tail=True):
            have[record["task_id"]] += 1
    wanted = task_ids or list(dataset.problems)
    need: dict[int, list[str]] = defaultdict(list)
    for task_id in wanted:
        missing = effective.n - have[task_id]
        if missing > 0:
            need[missing].append(task_id)
    requested = sum(n * len(ids) for n, ids in need.items())
    if have and requested:
        log.info("resuming: %d samples already in %s, %d to go", sum(have.values()), raw_path, requested)
    report = GenerationReport(requested, 0, 0, [])
    progress = tqdm(total=requested, desc=f"{task.name} generate", disable=not requested)
    with JsonlAppender(raw_path) as out:
        for missing, ids in sorted(need.items()):
            group_sampling = SamplingConfig(**{**effective.to_dict(), "n": missing})
            prompts = [build_prompt(dataset.problems[i], style, chat) for i in ids]

            def write(index: int, result: GenerationResult, ids=ids, start=missing) -> None:
                task_id = ids[index]
                if not result.ok:
                    report.failed_prompts += 1
                    report.errors.append(f"{task_id}: {result.error}")
                    return
                for text, reason in zip(result.texts, result.finish_reasons or [None] * len(result.texts)):
                    out.write({"task_id": task_id, "sample_index": have[task_id], "text": text,
                               "finish_reason": reason})
                    have[task_id] += 1
                    report.generated += 1
                progress.update(len(result.texts))

            if chat:
                generator.chat(prompts, group_sampling, on_result=write)
            else:
                generator.complete(prompts, group_sampling, on_result=write)
    progress.close()
    return report


def extract_samples(task: Task, dataset: Dataset, out_dir: Path) -> Path:
    """Rebuild `samples.jsonl` from `raw.jsonl` with the task's extraction rules."""
    config = read_json(out_dir / CONFIG_FILE)
    style = config["prompt_style"]
    samples_path = out_dir / SAMPLES_FILE
    tmp = samples_path.with_name(samples_path.name + ".tmp")
    tmp.unlink(missing_ok=True)
    with JsonlAppender(tmp) as out:
        for _, record in iter_json_records(out_dir / RAW_FILE, tolerate_torn_tail=True):
            problem = dataset.problems[record["task_id"]]
            fields = task.extract(problem, record["text"], style)
            out.write({"task_id": record["task_id"], "sample_index": record["sample_index"], **fields,
                       "finish_reason": record.get("finish_reason")})
    tmp.replace(samples_path)
    return samples_path
