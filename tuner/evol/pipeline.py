"""The Evol-Instruct pipeline for code (Xu et al., arXiv:2304.12244; Luo et al., WizardCoder,
arXiv:2306.08568): decontaminate the seed, then round after round evolve → eliminate → answer →
eliminate → decontaminate, and finally merge the seed with every round and deduplicate.

Contaminated items are dropped before they are evolved: a rewrite of a benchmark problem is a
paraphrase of it, which no n-gram check can catch afterwards.

Output folder:
    calls.jsonl   every teacher answer, appended as it arrives (the resume state, see journal.py)
    run.json      settings that stored answers depend on; a rerun with other ones is refused
    round_<k>.jsonl, merged.jsonl, rejects.jsonl, report.json
                  derived from the seed file and calls.jsonl on every run, written atomically

`merged.jsonl` is a `tuner train` dataset in Evol-Instruct form: `instruction`, `input` (always
empty: Code Alpaca inputs are folded into the instruction), `output`, plus provenance.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from tuner.evol import benchmarks as bench
from tuner.evol.decontaminate import BenchmarkIndex, DecontamConfig, Match, decontaminate
from tuner.evol.dedup import DedupConfig, deduplicate
from tuner.evol.eliminate import (
    JUDGED_NO_GAIN,
    TEACHER_ERROR,
    EliminationRules,
    Verdict,
    check_answer,
    check_instruction,
    make_token_counter,
)
from tuner.evol.journal import CallJournal
from tuner.evol.prompts import (
    HEURISTICS_BY_NAME,
    answer_messages,
    choose_heuristic,
    evolve_messages,
    judge_messages,
    judged_no_gain,
)
from tuner.evol.records import Item, child_id, load_seed
from tuner.evol.teacher import Call, CallStats, TeacherConfig, make_teacher, run_calls
from tuner.generation import GenerationResult, Generator, SamplingConfig
from tuner.jsonl import InputError, write_json, write_jsonl

log = logging.getLogger(__name__)

BUILTIN_BENCHMARKS = ("humaneval", "mbpp")
JUDGE_MAX_NEW_TOKENS = 8


@dataclass
class EvolConfig:
    """Everything a run needs besides the teacher."""

    seed_path: Path
    out_dir: Path
    rounds: int = 3
    seed_value: int = 0
    """Seeds the heuristic choice of every item."""
    sampling: SamplingConfig = field(default_factory=lambda: SamplingConfig(max_new_tokens=1024))
    judge: bool = False
    """Also ask the teacher whether each rewrite adds anything (one short extra call per item)."""
    rules: EliminationRules = field(default_factory=EliminationRules)
    dedup: DedupConfig = field(default_factory=DedupConfig)
    decontam: DecontamConfig = field(default_factory=DecontamConfig)
    benchmarks: tuple[str, ...] = BUILTIN_BENCHMARKS
    mbpp_path: str | None = None
    decontaminate_files: list[Path] = field(default_factory=list)
    tokenizer: str | None = None
    """Tokenizer for the length limit; default: the offline teacher's, else an approximation."""

    def __post_init__(self) -> None:
        if self.rounds < 0:
            raise ValueError(f"--rounds must be >= 0, got {self.rounds}")
        unknown = set(self.benchmarks) - set(BUILTIN_BENCHMARKS)
        if unknown:
            raise ValueError(f"unknown benchmark {sorted(unknown)[0]!r}; choose from {', '.join(BUILTIN_BENCHMARKS)}")


class SettingsMismatch(InputError):
    """The output folder holds answers made under other settings."""


@dataclass
class RunState:
    """What a run accumulates while it goes."""

    rejects: list[dict] = field(default_factory=list)
    calls: CallStats = field(default_factory=CallStats)
    rounds: list[dict] = field(default_factory=list)
    matches: list[Match] = field(default_factory=list)
    """Every (item, benchmark text) pair found by decontamination."""


def load_benchmarks(config: EvolConfig) -> tuple[list[bench.BenchmarkText], list[bench.BenchmarkSource]]:
    """All benchmark texts to decontaminate against; raises before any teacher call if one is missing."""
    loaders: list[Callable[[], tuple[list[bench.BenchmarkText], bench.BenchmarkSource]]] = []
    if "humaneval" in config.benchmarks:
        loaders.append(bench.load_humaneval)
    if "mbpp" in config.benchmarks:
        loaders.append(lambda: bench.load_mbpp(config.mbpp_path))
    loaders += [lambda p=p: bench.load_benchmark_file(p) for p in config.decontaminate_files]
    texts, sources = [], []
    for load in loaders:
        some, source = load()
        texts += some
        sources.append(source)
    return texts, sources


def pinned_settings(config: EvolConfig, teacher: TeacherConfig) -> dict:
    return {
        "seed_sha256": hashlib.sha256(Path(config.seed_path).read_bytes()).hexdigest(),
        "seed_value": config.seed_value,
        "teacher": teacher.identity,
        "sampling": config.sampling.to_dict(),
    }


def check_settings(out_dir: Path, settings: dict) -> None:
    """Refuse to mix answers made under different settings in one folder.

    Raises:
        SettingsMismatch: run.json in `out_dir` records different settings.
    """
    path = out_dir / "run.json"
    if not path.exists():
        write_json(path, settings)
        return
    stored = json.loads(path.read_text(encoding="utf-8"))
    for key, value in settings.items():
        if stored.get(key) != value:
            raise SettingsMismatch(
                f"this folder was started with {key} = {json.dumps(stored.get(key))}, now "
                f"{json.dumps(value)}; resume with the same settings or use another --out",
                path,
            )


class Evolution:
    """One run over an output folder; `run()` does the work and returns the report."""

    def __init__(
        self,
        config: EvolConfig,
        teacher: TeacherConfig,
        teacher_factory: Callable[[TeacherConfig], Generator] = make_teacher,
    ) -> None:
        self.config = config
        self.teacher_config = teacher
        self._teacher_factory = teacher_factory
        self._teacher: Generator | None = None
        self.teacher_description: dict | None = None
        """What the teacher backend reports about itself once started (the offline engine's
        effective settings included), for report.json."""
        self.state = RunState()
        self.provenance = {
            "teacher": teacher.identity,
            "sampling": config.sampling.to_dict(),
            "seed_value": config.seed_value,
        }

    def teacher(self) -> Generator:
        """The teacher backend, started on first need (a finished run starts no engine)."""
        if self._teacher is None:
            try:
                self._teacher = self._teacher_factory(self.teacher_config)
            except ValueError as exc:  # e.g. engine settings this vLLM refuses
                raise InputError(str(exc)) from None
            self.teacher_description = self._teacher.describe()
        return self._teacher

    def close(self) -> None:
        if self._teacher is not None:
            self._teacher.close()
            self._teacher = None

    # -- the run -----------------------------------------------------------------------------

    def run(self) -> dict:
        started = time.monotonic()
        config = self.config
        seeds = load_seed(config.seed_path)
        bench_texts, bench_sources = load_benchmarks(config)
        self.index = BenchmarkIndex(bench_texts, config.decontam)
        out = Path(config.out_dir)
        out.mkdir(parents=True, exist_ok=True)
        check_settings(out, pinned_settings(config, self.teacher_config))
        self.count_tokens, token_counter_name = make_token_counter(config.tokenizer or self.teacher_config.path)

        seed_eliminated: Counter[str] = Counter()
        parents = self.drop_contaminated(seeds, seed_eliminated)
        self.state.rounds.append({"round": 0, "input": len(seeds), "kept": len(parents),
                                  "eliminated": dict(seed_eliminated)})
        kept_by_round: list[list[Item]] = [parents]
        with CallJournal(out / "calls.jsonl") as self.journal:
            if self.journal.repaired_partial_line:
                log.info("dropped a partial last line from %s (the previous run was killed mid-write)", self.journal.path)
            for k in range(1, config.rounds + 1):
                parents = self.evolve_round(k, parents)
                kept_by_round.append(parents)
                write_jsonl(out / f"round_{k}.jsonl", (i.to_record(**self.provenance) for i in parents))
        for stale in out.glob("round_*.jsonl"):
            suffix = stale.stem.split("_", 1)[1]
            if suffix.isdigit() and int(suffix) > config.rounds:
                stale.unlink()

        merged, merge_report = self.merge(kept_by_round)
        write_jsonl(out / "merged.jsonl", (i.to_record(**self._provenance_of(i)) for i in merged))
        write_jsonl(out / "rejects.jsonl", self.state.rejects)
        report = self.report(len(seeds), merge_report, bench_sources, token_counter_name)
        report["wall_time_s"] = round(time.monotonic() - started, 1)
        write_json(out / "report.json", report)
        return report

    def _provenance_of(self, item: Item) -> dict:
        if item.round == 0:
            return {"teacher": None, "sampling": None, "seed_value": self.config.seed_value}
        return self.provenance

    def reject(self, item: Item, verdict: Verdict, stage: str) -> None:
        record = item.to_record(**self._provenance_of(item))
        record.update(reason=verdict.reason, detail=verdict.detail, stage=stage)
        self.state.rejects.append(record)

    def ask(self, calls: list[Call], sampling: SamplingConfig, desc: str) -> dict[str, GenerationResult]:
        results, stats = run_calls(self.teacher, calls, sampling, self.journal, desc)
        self.state.calls.add(stats)
        return results

    def evolve_round(self, k: int, parents: list[Item]) -> list[Item]:
        """Rewrite every parent, drop failed rewrites, answer the rest, drop failed answers."""
        config, rules = self.config, self.config.rules
        label = f"round {k}/{config.rounds}"
        eliminated: Counter[str] = Counter()
        pairs = []
        for parent in parents:
            heuristic = choose_heuristic(config.seed_value, k, parent.id)
            pairs.append((parent, Item(id=child_id(parent.id, k), instruction="", output="", round=k,
                                       parent=parent.id, heuristic=heuristic.name)))

        def rewrite(parent: Item, child: Item, text: str) -> Verdict | None:
            child.instruction = text.strip()
            return check_instruction(parent.instruction, child.instruction, rules, self.count_tokens)

        def judge(parent: Item, child: Item, text: str) -> Verdict | None:
            return Verdict(JUDGED_NO_GAIN, f"judge said {text.strip()[:40]!r}") if judged_no_gain(text) else None

        def answer(parent: Item, child: Item, text: str) -> Verdict | None:
            child.output = text.strip()
            return check_answer(child.instruction, child.output, rules, self.count_tokens)

        pairs = self.stage(k, "evolve", pairs, config.sampling, eliminated, rewrite,
                           lambda p, c: evolve_messages(HEURISTICS_BY_NAME[c.heuristic], p.instruction))
        if config.judge:
            judge_sampling = dataclasses.replace(config.sampling, n=1, max_new_tokens=JUDGE_MAX_NEW_TOKENS)
            pairs = self.stage(k, "judge", pairs, judge_sampling, eliminated, judge,
                               lambda p, c: judge_messages(p.instruction, c.instruction))
        pairs = self.stage(k, "answer", pairs, config.sampling, eliminated, answer,
                           lambda p, c: answer_messages(c.instruction))
        kept = self.drop_contaminated([child for _, child in pairs], eliminated)

        self.state.rounds.append({
            "round": k, "input": len(parents), "kept": len(kept),
            "eliminated": dict(sorted(eliminated.items())),
        })
        log.info("%s: %d parents, %d kept, eliminated %s", label, len(parents), len(kept), dict(eliminated))
        return kept

    def stage(
        self,
        k: int,
        name: str,
        pairs: list[tuple[Item, Item]],
        sampling: SamplingConfig,
        eliminated: Counter[str],
        check: Callable[[Item, Item, str], Verdict | None],
        messages: Callable[[Item, Item], list],
    ) -> list[tuple[Item, Item]]:
        """One teacher call per (parent, child) pair; `check` takes the reply and may eliminate."""
        if not pairs:
            return []
        calls = [Call(f"r{k}/{name}/{child.id}", messages(parent, child)) for parent, child in pairs]
        results = self.ask(calls, sampling, f"round {k}/{self.config.rounds} {name}")
        survivors = []
        for (parent, child), call in zip(pairs, calls):
            result = results[call.key]
            if result.ok:
                verdict = check(parent, child, result.texts[0])
            else:
                verdict = Verdict(TEACHER_ERROR, result.error or "")
            if verdict is None:
                survivors.append((parent, child))
            else:
                eliminated[verdict.reason] += 1
                self.reject(child, verdict, name)
        return survivors

    def drop_contaminated(self, items: list[Item], eliminated: Counter[str]) -> list[Item]:
        clean, contaminated, matches = decontaminate(items, self.index)
        self.state.matches += matches
        for item, verdict in contaminated:
            eliminated[verdict.reason] += 1
            self.reject(item, verdict, "decontaminate")
        return clean

    def merge(self, kept_by_round: list[list[Item]]) -> tuple[list[Item], dict]:
        """The seed plus every round, without duplicates (the first of a group wins)."""
        items = [item for kept in kept_by_round for item in kept]
        merged, duplicates = deduplicate(items, self.config.dedup)
        for item, verdict in duplicates:
            self.reject(item, verdict, "deduplicate")
        by_round = Counter(i.round for i in merged)
        report = {
            "input_by_round": {str(k): len(kept) for k, kept in enumerate(kept_by_round)},
            "input": len(items),
            "removed": dict(sorted(Counter(v.reason for _, v in duplicates).items())),
            "merged": len(merged),
            "merged_by_round": {str(k): by_round[k] for k in range(len(kept_by_round))},
        }
        return merged, report

    def report(self, seed_count: int, merge_report: dict, sources: list, token_counter_name: str) -> dict:
        config, state = self.config, self.state
        eliminated: Counter[str] = Counter()
        for round_report in state.rounds:
            eliminated.update(round_report["eliminated"])
        matched: dict[str, list[str]] = {}
        for match in state.matches:
            ids = matched.setdefault(match.benchmark, [])
            if match.task_id not in ids:
                ids.append(match.task_id)
        return {
            "complete": state.calls.failed == 0,
            "seed": {"path": str(config.seed_path), "items": seed_count},
            "settings": {
                "rounds": config.rounds,
                "seed_value": config.seed_value,
                "teacher": self.teacher_config.identity,
                "teacher_backend": self.teacher_description,
                "sampling": config.sampling.to_dict(),
                "judge": config.judge,
                "elimination": dataclasses.asdict(config.rules),
                "token_counter": token_counter_name,
                "dedup": dataclasses.asdict(config.dedup),
            },
            "rounds": state.rounds,
            "eliminated_by_reason": dict(sorted(eliminated.items())),
            "teacher_calls": {
                "reused_from_journal": state.calls.reused,
                "made_this_run": state.calls.made,
                "failed_this_run": state.calls.failed,
                "failed_outstanding": state.calls.failed,  # journal-reused results are all successes
                "first_errors": state.calls.first_errors,
            },
            "merge": merge_report,
            "decontamination": {
                "benchmarks": [dataclasses.asdict(s) for s in sources],
                "ngram": config.decontam.ngram,
                "threshold": config.decontam.threshold,
                "texts_indexed": len(self.index.texts),
                "texts_too_short_to_check": self.index.skipped_short,
                "contaminated_items": len({m.item for m in state.matches}),
                "matched_benchmark_items": {b: sorted(ids) for b, ids in sorted(matched.items())},
                "matches": [m.to_dict() for m in state.matches],
            },
            "rejects": len(state.rejects),
        }
