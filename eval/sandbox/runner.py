"""Run untrusted programs: the harness side of the sandbox.

Each program runs in its own interpreter process, never a fork of the harness: either forked
from a launcher ("zygote") that is itself a fresh interpreter started with `subprocess`, never
runs a program and holds nothing of the harness, or (`launcher="exec"`) started with
`subprocess` directly. It gets a fixed minimal environment that holds no value from the
harness's environment (`HOME`/`TMPDIR` point at its own working directory; thread counts are
pinned to 1), its own throwaway working directory (a private tmpfs) and its own process group,
and locks itself down with the layers of `tuner_eval.sandbox.isolation` before it receives the program.
Programs run in parallel, `SandboxConfig.workers` at a time.

How a verdict is reached (judged mode: HumanEval, HumanEval+, MBPP, MBPP+, DS-1000):

    harness ──spec+program──▶ judge (trusted test code only) ──pickled calls──▶ candidate (program)
        ◀──verdict JSON──────      ◀──────── plain-data answers (strict codec) ────────┘

The program's process never sees the tests, the expected outputs or the verdict channel, and the
judge never runs a line of the program: it only receives data, decoded into plain Python values.
Because the judge runs trusted code only, one judge process (sandboxed as well) serves many
programs in turn; each program still gets its own fresh interpreter.
So exiting early with status 0 (`os._exit(0)`, `sys.exit(0)`), printing "PASS", patching `check`,
builtins, `sys.exit` or `atexit`, returning an object whose `__eq__` is always true, or killing
the judge all end in "fail" (or "timeout"/"error"), never in "pass".

DS-1000's test programs run in the judge as well: where they `exec` the program's code, the code
runs in the candidate's interpreter instead and the variables it leaves come back as data (numpy,
pandas, scipy.sparse and torch values rebuilt from checked parts by `datacodec`); test inputs and expected
results are made in the judge, and the checks run there.

Single mode, only for DS-1000's plot problems and only when asked for (`--ds1000-plot-checks
in-process`; skipped otherwise), because their checks read the figure the program drew: the
process gets a per-run secret nonce on stdin, and trusted code writes it to a dedicated verdict
pipe only after the test program finishes without an exception; exit status and output count for
nothing.

What the sandbox does NOT protect against:
- In single mode a program that deliberately inspects its own interpreter (frames, `gc`,
  `ctypes`) can find the nonce or patch the test functions and forge a pass (the sandbox tests
  show it). Judged mode has no such hole.
- DS-1000 results whose types the data codec does not rebuild (anything but plain data, numpy
  arrays and scalars, pandas frames, series and indexes, scipy.sparse matrices, torch tensors) reach the checks as
  opaque values, so those checks fail: a false "fail", never a false "pass".
- Kernel vulnerabilities, and CPU side channels between concurrently running programs.
- On kernels without Landlock the file-system rules are missing (and the process keeps the
  harness's uid, without capabilities); without seccomp (any architecture but x86_64) process
  spawning is limited only by RLIMIT_NPROC (not applied to uid 0) and the process-group kill, and
  network access only by the network namespace. `Sandbox.isolation()` reports what is in force
  and the harness warns once when a layer is missing (`strict=True` refuses to run instead).
- With the zygote launcher, programs share the launcher's empty network namespace; on kernels
  without Landlock ABI 6 two programs running at the same time could reach each other over
  abstract UNIX sockets (nothing else is reachable there).
- Reading files that the sandbox must allow: the Python installation and its site-packages
  (except the packages excluded by exact name in `policy.EXCLUDED_PACKAGES`) and system libraries.
- Time limits per call (evalplus's) are measured up to the moment the program's process says the
  call returned, so a program that says so early and keeps computing while "encoding" its answer
  gets a looser limit, bounded by the group's budget and its CPU limit (never a pass for an answer
  it did not produce).
- Programs that are correct only by luck or by hard-coding the visible test inputs.
"""

from __future__ import annotations

import json
import logging
import queue
import secrets
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path
from typing import Callable, Iterable, Iterator, TypeVar

from tuner_eval.sandbox.policy import (ERROR, FAIL, PASS, TIMEOUT, VERDICTS, SandboxConfig, Verdict,
                                       isolation_warning, missing_layers)
from tuner_eval.sandbox.processes import JudgeProcess, Launcher, PipeReader, Pipes, kill_group, remove_workdir

log = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")


class Sandbox:
    """Runs programs under isolation; safe to call from many threads at once."""

    def __init__(self, config: SandboxConfig | None = None) -> None:
        self.config = config or SandboxConfig()
        self.root = Path(tempfile.mkdtemp(prefix="tuner-sandbox-"))
        self.launcher = Launcher(self.root, self.config.program_limits, self.config.launcher)
        self._judges: queue.SimpleQueue[JudgeProcess] = queue.SimpleQueue()
        self._isolation: dict | None = None
        self._lock = threading.Lock()  # the isolation probe

    # -- isolation report ----------------------------------------------------------------------

    def isolation(self) -> dict:
        """The layers in force on this machine, from a trivial sandboxed run (cached)."""
        with self._lock:
            if self._isolation is None:
                if self.config.launcher == "zygote":
                    # A trivial judged program: reports what programs get, and warms a judge.
                    spec = {"kind": "check_function", "reference": "def probe():\n    return 1\n",
                            "test": "def check(candidate):\n    assert candidate() == 1\n",
                            "entry_point": "probe", "timeout_s": 10.0, "load_s": 10.0}
                    verdict = self._judge(spec, "def probe():\n    return 1\n", 10.0)
                    report = dict(verdict.extra.get("candidate_isolation") or {})
                else:
                    verdict = self._single("pass", timeout_s=30, check_isolation=False)
                    report = dict(verdict.extra.get("isolation") or {})
                self._isolation = {**report, "missing": missing_layers(report)}
                if self._isolation["missing"]:
                    message = isolation_warning(self._isolation)
                    if self.config.strict:
                        raise RuntimeError(message)
                    log.warning(message)
            return self._isolation

    # -- judged runs ---------------------------------------------------------------------------

    def judge(self, spec: dict, program: str, budget_s: float) -> Verdict:
        """Run `program` against the judge `spec` (see `tuner_eval.sandbox.judge`).

        Args:
            spec: kind, reference, and the kind's fields (test, proxied, groups, ...), with
                `load_s` (time to load the program) and either `timeout_s` (CPU seconds for the
                tests once the program is loaded) or `groups` with wall-clock `time_limits` per
                input and a `budget_s` per group.
            program: the untrusted source.
            budget_s: the test time the candidate may use (its CPU limit, with `load_s`).
        """
        self.isolation()
        return self._judge(spec, program, budget_s)

    def _timed_spec(self, spec: dict, budget_s: float) -> tuple[dict, float]:
        """The spec with its CPU-second limits stretched into wall-clock deadlines by
        `wall_factor`, and the harness's own deadline for the whole run."""
        factor = self.config.wall_factor
        spec = dict(spec, load_s=spec["load_s"] * factor)
        if "timeout_s" in spec:
            spec["timeout_s"] *= factor
            test_wall_s = spec["timeout_s"]
        else:  # per-input wall-clock limits (evalplus): used as they are
            test_wall_s = sum(group["budget_s"] for group in spec["groups"])
        return spec, self.config.startup_s + spec["load_s"] + max(test_wall_s, budget_s) + 5

    def _judge(self, spec: dict, program: str, budget_s: float) -> Verdict:
        started = time.monotonic()
        program_limits = self.config.program_limits.with_cpu(budget_s + spec["load_s"] + 1)
        spec, wall_s = self._timed_spec(spec, budget_s)
        pipes = Pipes()
        requests_r, requests_w = pipes.new()
        answers_r, answers_w = pipes.new()
        candidate = None
        judge = None
        try:
            candidate = self.launcher.candidate(program_limits, (requests_r, answers_w))
            pipes.close(requests_r)
            pipes.close(answers_w)
            judge = self._acquire_judge()
            result = judge.run({**spec, "program": program, "startup_s": self.config.startup_s},
                               (requests_w, answers_r), wall_s)
            pipes.close_all()  # the judge holds its own copies now
            if result is None:
                judge.close()
                judge = None
                return Verdict(TIMEOUT, f"no verdict within {wall_s:.0f} s", duration_s=time.monotonic() - started)
            status = None
            if result.get("verdict") == "died":
                status = candidate.wait(timeout=2)
                if status is None:
                    result.update(verdict=FAIL, detail="the program closed its end of the pipe")
            return self._judged_verdict(result, status, started)
        finally:
            pipes.close_all()
            if judge is not None:
                self._release_judge(judge)
            if candidate is not None:
                candidate.kill()
                remove_workdir(candidate.workdir)

    def _acquire_judge(self) -> JudgeProcess:
        try:
            return self._judges.get_nowait()
        except queue.Empty:
            return JudgeProcess(self.launcher, self.config.judge_limits)

    def _release_judge(self, judge: JudgeProcess) -> None:
        if judge.healthy():
            self._judges.put(judge)
        else:
            judge.close()

    @staticmethod
    def _judged_verdict(result: dict, candidate_status: int | None, started: float) -> Verdict:
        duration = time.monotonic() - started
        verdict, detail = result.pop("verdict", ERROR), result.pop("detail", "")
        if verdict == "died":
            # The program's process ended while the judge waited for it; its status says why.
            if candidate_status == -signal.SIGXCPU:
                verdict, detail = TIMEOUT, "CPU time limit"
            elif candidate_status is not None and candidate_status < 0:
                name = signal.Signals(-candidate_status).name
                verdict, detail = ERROR, f"the program was killed by {name}"
            else:
                verdict, detail = FAIL, f"the program exited (status {candidate_status}) before answering"
        if verdict not in VERDICTS:
            verdict, detail = ERROR, f"unknown verdict {verdict!r}"
        return Verdict(verdict, detail, result, duration)

    # -- reference outputs ---------------------------------------------------------------------

    def reference(self, spec: dict, timeout_s: float = 600.0) -> dict:
        """Expected outputs and run times of the trusted reference solution (evalplus style)."""
        limits = self.config.judge_limits.with_cpu(timeout_s)
        process, workdir = self.launcher.spawn("reference", limits, (), {}, stdin=subprocess.PIPE,
                                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            out, err = process.communicate(json.dumps(spec).encode(), timeout=timeout_s)
        except subprocess.TimeoutExpired:
            raise RuntimeError(f"reference solution of {spec.get('task_id')} ran over {timeout_s:g} s")
        finally:
            kill_group(process)
            remove_workdir(workdir)
        try:
            return json.loads(out)
        except ValueError:
            tail = " | ".join(err.decode("utf-8", "replace").strip().splitlines()[-3:])
            raise RuntimeError(f"reference solution of {spec.get('task_id')} failed: {tail}") from None

    # -- single-process runs -------------------------------------------------------------------

    def single(self, program: str, timeout_s: float) -> Verdict:
        """Run a self-checking test program in one interpreter with the program under test; pass
        only with the run's nonce. Forgeable by a program that inspects its own interpreter (see
        the module docstring): only for checks that cannot be judged otherwise, when allowed."""
        return self._single(program, timeout_s)

    def _single(self, program: str, timeout_s: float, check_isolation: bool = True) -> Verdict:
        if check_isolation:
            self.isolation()
        started = time.monotonic()
        limits = self.config.program_limits.with_cpu(max(self.config.program_limits.cpu_s, timeout_s + 1))
        pipes = Pipes()
        verdict_r, verdict_w = pipes.new()
        process = None
        workdir = None
        try:
            process, workdir = self.launcher.spawn("single", limits, (verdict_w,), {"verdict_fd": verdict_w},
                                                   stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                                   stderr=subprocess.PIPE)
            pipes.close(verdict_w)
            nonce = secrets.token_hex(16)
            reader = PipeReader(verdict_r)
            wall_s = self.config.startup_s + timeout_s
            try:
                _, err = process.communicate(json.dumps({"nonce": nonce, "program": program}).encode(),
                                             timeout=wall_s)
            except subprocess.TimeoutExpired:
                kill_group(process)
                reader.join()
                return Verdict(TIMEOUT, f"still running after {timeout_s:g} s",
                               {"isolation": reader.isolation()}, time.monotonic() - started)
            kill_group(process)
            reader.join()
            return self._single_verdict(reader, nonce, process.returncode, err, started)
        finally:
            pipes.close_all()
            kill_group(process)
            remove_workdir(workdir)

    @staticmethod
    def _single_verdict(reader: PipeReader, nonce: str, status: int, err: bytes, started: float) -> Verdict:
        duration = time.monotonic() - started
        extra = {"isolation": reader.isolation()}
        lines = reader.text().split("\n", 1)
        body = lines[1] if len(lines) > 1 else ""
        if body == f"{nonce} pass":
            return Verdict(PASS, "", extra, duration)
        if status == -signal.SIGXCPU:
            return Verdict(TIMEOUT, "CPU time limit", extra, duration)
        if body.startswith("fail "):
            return Verdict(FAIL, body[5:505], extra, duration)
        if status is not None and status < 0:
            return Verdict(ERROR, f"killed by {signal.Signals(-status).name}", extra, duration)
        if not extra["isolation"]:
            tail = " | ".join(err.decode("utf-8", "replace").strip().splitlines()[-3:])
            return Verdict(ERROR, f"sandbox failed to start: {tail}", extra, duration)
        return Verdict(FAIL, "the program ended without the tests completing", extra, duration)

    # -- parallel map --------------------------------------------------------------------------

    def map(self, function: Callable[[T], R], items: Iterable[T]) -> Iterator[tuple[T, R]]:
        """Apply `function` to items on `workers` threads; yields (item, result) as they finish."""
        items = list(items)
        if not items:
            return
        self.isolation()
        with ThreadPoolExecutor(max_workers=self.config.workers, thread_name_prefix="sandbox") as pool:
            futures = {pool.submit(function, item): item for item in items}
            try:
                for future in as_completed(futures):
                    yield futures[future], future.result()
            finally:
                for future in futures:
                    future.cancel()

    def close(self) -> None:
        while True:
            try:
                self._judges.get_nowait().close()
            except queue.Empty:
                break
        self.launcher.close()
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> "Sandbox":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
