"""The execute stage: every sample's program through the sandbox, verdicts appended to a JSONL
file keyed by (task_id, sample_index) as they arrive. A rerun skips samples whose verdict is
already there for the same program text, so an interrupted evaluation continues where it stopped.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Iterable

from tqdm.auto import tqdm

from tuner_eval.data import Dataset
from tuner_eval.data.download import cache_dir
from tuner.jsonl import JsonlAppender, iter_json_records
from tuner_eval.sandbox import ERROR, SKIPPED, Sandbox, Verdict
from tuner_eval.samples import Sample
from tuner_eval.tasks import Check, CodeTask, self_checking_program

log = logging.getLogger(__name__)


def program_digest(program: str) -> str:
    return hashlib.sha256(program.encode("utf-8")).hexdigest()[:16]


def _cache_file(folder: Path, task_id: str) -> Path:
    return folder / (hashlib.sha256(task_id.encode()).hexdigest()[:16] + ".json")


def reference_outputs(task: CodeTask, dataset: Dataset, task_ids: Iterable[str], sandbox: Sandbox,
                      cache: Path | None = None) -> dict[str, dict]:
    """evalplus's ground truth: outputs and run times of each reference solution, computed once in
    the sandbox and cached by data-set hash (the cache is plain JSON, never pickle)."""
    folder = (cache or cache_dir()) / "reference_outputs" / f"v5-{task.name}-{dataset.sha256[:16]}"
    folder.mkdir(parents=True, exist_ok=True)
    outputs, todo = {}, []
    for task_id in task_ids:
        path = _cache_file(folder, task_id)
        if path.exists():
            outputs[task_id] = json.loads(path.read_text())
        else:
            todo.append(task_id)

    def compute(task_id: str) -> dict:
        try:
            return sandbox.reference(task.reference_spec(dataset.problems[task_id]))
        except RuntimeError as exc:  # the data set's own solution failed: its samples get "error"
            return {"error": str(exc)}

    progress = tqdm(total=len(todo), desc=f"{task.name} reference outputs", disable=not todo)
    for task_id, result in sandbox.map(compute, todo):
        if "error" not in result:
            _cache_file(folder, task_id).write_text(json.dumps(result))
        outputs[task_id] = result
        progress.update()
    progress.close()
    return outputs


def _run(sandbox: Sandbox, check: Check, program: str) -> Verdict:
    if check.mode == "skip":
        return Verdict(SKIPPED, check.reason)
    if check.mode == "error":
        return Verdict(ERROR, check.reason)
    if check.mode == "single":
        verdict = sandbox.single(self_checking_program(check.spec, program), check.budget_s)
        verdict.detail = ("checked in the program's own interpreter (forgeable); " + verdict.detail).rstrip("; ")
        return verdict
    return sandbox.judge(check.spec, program, check.budget_s)


def execute_samples(task: CodeTask, dataset: Dataset, samples: list[Sample], verdicts_path: Path,
                    sandbox: Sandbox, cache: Path | None = None, show_progress: bool = True) -> dict[tuple[str, int], dict]:
    """Judge every sample; returns {(task_id, sample_index): verdict record}.

    A program that crashes, hangs or misbehaves gets its own verdict and never stops the run; an
    unexpected failure inside the harness for one sample is recorded as an "error" verdict.
    """
    done: dict[tuple[str, int], dict] = {}
    if verdicts_path.exists():
        for _, record in iter_json_records(verdicts_path, tolerate_torn_tail=True):
            done[(record["task_id"], record["sample_index"])] = record
    programs = {(s.task_id, s.index): task.program(dataset.problems[s.task_id], s.fields) for s in samples}
    todo = [s for s in samples
            if (s.task_id, s.index) not in done
            or done[(s.task_id, s.index)].get("program_sha") != program_digest(programs[(s.task_id, s.index)])]
    if len(todo) < len(samples):
        log.info("resuming: %d of %d samples already judged", len(samples) - len(todo), len(samples))
    outputs = {}
    if task.needs_reference_outputs() and todo:
        outputs = reference_outputs(task, dataset, sorted({s.task_id for s in todo}), sandbox, cache)
    checks: dict[str, Check] = {}
    for sample in todo:
        if sample.task_id not in checks:
            reference = outputs.get(sample.task_id)
            if reference is not None and "error" in reference:
                checks[sample.task_id] = Check("error", reason=reference["error"])
            else:
                checks[sample.task_id] = task.check(dataset.problems[sample.task_id], reference)

    def judge(sample: Sample) -> Verdict:
        try:
            return _run(sandbox, checks[sample.task_id], programs[(sample.task_id, sample.index)])
        except Exception as exc:  # a harness failure on one sample must not stop the others
            log.exception("sandbox failure on %s #%d", sample.task_id, sample.index)
            return Verdict(ERROR, f"harness error: {type(exc).__name__}: {exc}")

    progress = tqdm(total=len(todo), desc=f"{task.name} execute", disable=not (show_progress and todo))
    counts: dict[str, int] = {}
    with JsonlAppender(verdicts_path) as out:
        for sample, verdict in sandbox.map(judge, todo):
            record = {"task_id": sample.task_id, "sample_index": sample.index,
                      "program_sha": program_digest(programs[(sample.task_id, sample.index)]),
                      "verdict": verdict.verdict, "detail": verdict.detail[:500],
                      "duration_s": round(verdict.duration_s, 4)}
            for group in ("base", "plus"):
                if isinstance(verdict.extra.get(group), dict):
                    record[group] = verdict.extra[group].get("verdict")
            if task.needs_reference_outputs():
                record.setdefault("base", verdict.verdict)
            out.write(record)
            done[(sample.task_id, sample.index)] = record
            counts[verdict.verdict] = counts.get(verdict.verdict, 0) + 1
            progress.update()
            progress.set_postfix(counts)
    progress.close()
    return {(s.task_id, s.index): done[(s.task_id, s.index)] for s in samples}
