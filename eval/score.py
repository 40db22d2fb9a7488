"""The score stage: pass@k for code tasks, accuracy breakdowns for ScienceQA, BLEU-4 and CIDEr for
COCO captions; and the printed summary table."""

from __future__ import annotations

from collections import defaultdict
from typing import Iterable, Sequence

from tuner_eval.data import Dataset
from tuner_eval.extract import extract_choice
from tuner_eval.samples import Sample
from tuner_eval.sandbox import PASS, SKIPPED, VERDICTS

DEFAULT_K = (1, 10, 100)


def pass_at_k(n: int, c: int, k: int) -> float:
    """The unbiased estimator of Chen et al. (2021): 1 - C(n-c, k) / C(n, k), computed as a product
    so that large n does not overflow.

    Raises:
        ValueError: k > n or c outside [0, n].
    """
    if not 0 <= c <= n:
        raise ValueError(f"correct samples {c} must be between 0 and n={n}")
    if not 1 <= k <= n:
        raise ValueError(f"k={k} must be between 1 and n={n}")
    if n - c < k:
        return 1.0
    product = 1.0
    for i in range(n - c + 1, n + 1):
        product *= 1.0 - k / i
    return 1.0 - product


def mean_pass_at_k(counts: Sequence[tuple[int, int]], ks: Iterable[int]) -> dict[str, float]:
    """pass@k averaged over tasks, for each k that every task has at least k samples for."""
    if not counts:
        return {}
    fewest = min(n for n, _ in counts)
    return {f"pass@{k}": sum(pass_at_k(n, c, k) for n, c in counts) / len(counts) for k in ks if k <= fewest}


def code_results(task_name: str, samples: list[Sample], verdicts: dict[tuple[str, int], dict],
                 ks: Sequence[int]) -> dict:
    per_task: dict[str, dict] = {}
    by_task: dict[str, list[Sample]] = defaultdict(list)
    for sample in samples:
        by_task[sample.task_id].append(sample)
    base_counts, counts, skipped = [], [], []
    totals = {v: 0 for v in VERDICTS}
    for task_id, task_samples in by_task.items():
        task_samples.sort(key=lambda s: s.index)
        records = [verdicts[(task_id, s.index)] for s in task_samples]
        labels = [r["verdict"] for r in records]
        for label in labels:
            totals[label] += 1
        entry = {"n": len(labels), "correct": labels.count(PASS), "verdicts": labels}
        if any("base" in r for r in records):
            entry["base_verdicts"] = [r.get("base", r["verdict"]) for r in records]
            entry["base_correct"] = entry["base_verdicts"].count(PASS)
        per_task[task_id] = entry
        if all(label == SKIPPED for label in labels):
            skipped.append(task_id)
            continue
        counts.append((entry["n"], entry["correct"]))
        if "base_correct" in entry:
            base_counts.append((entry["n"], entry["base_correct"]))
    results = {"task": task_name, "pass@k": mean_pass_at_k(counts, ks), "per_task": per_task,
               "tasks_scored": len(counts), "verdict_counts": {k: v for k, v in totals.items() if v}}
    if base_counts:
        results["pass@k (base tests only)"] = mean_pass_at_k(base_counts, ks)
    if skipped:
        results["skipped_tasks"] = skipped
    return results


# -- ScienceQA -----------------------------------------------------------------------------------

def scienceqa_groups(record: dict) -> list[str]:
    """The paper's breakdown: subject, context modality (TXT/IMG/NO), grade band."""
    subject = {"natural science": "NAT", "social science": "SOC", "language science": "LAN"}.get(
        record["subject"], record["subject"])
    groups = [f"subject:{subject}"]
    has_text, has_image = bool((record.get("hint") or "").strip()), bool(record.get("image"))
    if has_text:
        groups.append("context:TXT")
    if has_image:
        groups.append("context:IMG")
    if not has_text and not has_image:
        groups.append("context:NO")
    grade = int(str(record["grade"]).removeprefix("grade"))
    groups.append("grade:G1-6" if grade <= 6 else "grade:G7-12")
    return groups


def choice_results(task_name: str, dataset: Dataset, samples: list[Sample], ks: Sequence[int]) -> dict:
    """Accuracy (the mean over samples; pass@k over questions too). An answer without a
    recognisable option letter counts as wrong (the official script picks a random option)."""
    per_task: dict[str, dict] = {}
    by_task: dict[str, list[Sample]] = defaultdict(list)
    for sample in samples:
        by_task[sample.task_id].append(sample)
    group_hits: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    counts, unparsed = [], 0
    for task_id, task_samples in by_task.items():
        record = dataset.problems[task_id].record
        gold = "ABCDE"[int(record["answer"])]
        answers = [extract_choice(s.fields["completion"]) for s in sorted(task_samples, key=lambda s: s.index)]
        unparsed += answers.count(None)
        labels = [PASS if a == gold else "fail" for a in answers]
        per_task[task_id] = {"n": len(labels), "correct": labels.count(PASS), "verdicts": labels,
                             "answers": answers, "gold": gold}
        counts.append((len(labels), labels.count(PASS)))
        for group in ["overall"] + scienceqa_groups(record):
            group_hits[group][0] += labels.count(PASS)
            group_hits[group][1] += len(labels)
    accuracy = {group: {"accuracy": hits / total, "n": total} for group, (hits, total) in sorted(group_hits.items())}
    return {"task": task_name, "pass@k": mean_pass_at_k(counts, ks), "accuracy": accuracy,
            "unparsed_answers": unparsed, "per_task": per_task}


# -- COCO Caption --------------------------------------------------------------------------------

def caption_results(task_name: str, dataset: Dataset, samples: list[Sample]) -> dict:
    """BLEU-4 and CIDEr with pycocoevalcap (PTB tokenisation as in the COCO caption server).
    With several samples per image, the first (lowest sample_index) is scored."""
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    first: dict[str, Sample] = {}
    for sample in samples:
        if sample.task_id not in first or sample.index < first[sample.task_id].index:
            first[sample.task_id] = sample
    ids = sorted(first)
    references = {i: [{"caption": c} for c in dataset.problems[i].record["references"]] for i in ids}
    candidates = {i: [{"caption": first[i].fields["completion"]}] for i in ids}
    tokenizer = PTBTokenizer()
    references, candidates = tokenizer.tokenize(references), tokenizer.tokenize(candidates)
    bleu, _ = Bleu(4).compute_score(references, candidates, verbose=0)
    cider, cider_per_image = Cider().compute_score(references, candidates)
    per_task = {i: {"n": sum(1 for s in samples if s.task_id == i), "caption": first[i].fields["completion"],
                    "CIDEr": float(score)} for i, score in zip(ids, cider_per_image)}
    return {"task": task_name, "metrics": {"BLEU-1": bleu[0], "BLEU-4": bleu[3], "CIDEr": float(cider)},
            "images_scored": len(ids), "images_in_split": len(dataset.problems), "per_task": per_task}


# -- summary ---------------------------------------------------------------------------------------

def summary_table(results: dict) -> str:
    """A small fixed-width table of the headline numbers."""
    rows: list[tuple[str, str]] = [("task", results["task"])]
    for key in ("pass@k", "pass@k (base tests only)"):
        for name, value in results.get(key, {}).items():
            label = name if key == "pass@k" else f"{name} (base)"
            rows.append((label, f"{100 * value:.2f}"))
    for group, entry in results.get("accuracy", {}).items():
        rows.append((f"acc {group}", f"{100 * entry['accuracy']:.2f}  (n={entry['n']})"))
    for name, value in results.get("metrics", {}).items():
        rows.append((name, f"{100 * value:.2f}"))
    if "verdict_counts" in results:
        rows.append(("verdicts", ", ".join(f"{k} {v}" for k, v in results["verdict_counts"].items())))
    if results.get("skipped_tasks"):
        rows.append(("skipped tasks", str(len(results["skipped_tasks"]))))
    width = max(len(label) for label, _ in rows)
    line = "-" * (width + 3 + max(len(value) for _, value in rows))
    return "\n".join([line] + [f"{label:<{width}} | {value}" for label, value in rows] + [line])
