"""Inside the program's interpreter: the candidate role.

It holds the program under test and nothing else. After locking itself down it reports its
isolation, receives the program from the judge, runs it in a fresh module, then serves calls: the
judge sends (function name, arguments) pickled, the candidate answers with an empty frame as soon
as the call returns, then the return value in the plain-data codec; or with the exception's type
and text. For test programs that run the
program's code through `exec` (DS-1000), the judge instead sends (source, environment) and gets
the environment back as data. Sent as source into the sandbox.
"""

import os
import sys

try:  # imported as a module (tests, tools); in the sandbox these names come first in the source
    from tuner_eval.sandbox.codec import dumps, dumps_answer, encode
    from tuner_eval.sandbox.isolation import lock_down
    from tuner_eval.sandbox.wire import (CandidateDied, _describe, _prepare, _silence_stdio, _unpickle,
                                         receive_message, send_message)
except ImportError:
    pass


def _run_in(source, environment):
    """`exec(source, environment)`; the names it leaves that hold values (not modules, functions
    or classes)."""
    exec(compile(source, "<program>", "exec"), environment)
    values = {}
    for name, value in environment.items():
        if name.startswith("__") or isinstance(value, (type, type(sys))) or callable(value):
            continue
        values[name] = value
    return values


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
            message = _unpickle(request, namespace)
            if message[0] == "exec":
                value = _run_in(message[1], message[2])
            else:
                _, name, args, kwargs = message
                if name not in namespace:
                    raise NameError("name " + repr(name) + " is not defined")
                value = namespace[name](*args, **kwargs)
            send_message(answers, b"")  # returned: the time limits cover the call, not the encoding
            payload = dumps_answer(value).encode()
        except BaseException as exc:
            payload = dumps({"raise": [type(exc).__name__, str(exc)[:500]]}).encode()
        send_message(answers, payload)
