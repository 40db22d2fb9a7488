"""Inside every sandboxed interpreter: the framing of messages between judge and candidate, and
the start-up steps every role shares. Sent as source into the sandbox (see
`tuner_eval.sandbox.processes.child_source`): standard library only, no `from __future__`.
"""

import io
import os
import struct
import sys
import time

# The program's interpreter imports only what it needs (no json, re or pickle.py): start-up time
# is most of the cost of a sandboxed run. The judge imports the rest lazily.

_HEADER = struct.Struct(">I")
MAX_RESPONSE_BYTES = 64 * 1024 * 1024


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


def _describe(exc):
    try:
        return (type(exc).__name__ + ": " + str(exc))[:500]
    except BaseException:
        return "exception"


_CORE_TYPES = frozenset({type(None), bool, int, float, complex, str, bytes, tuple, list, dict, set, frozenset})


def _core_only(value):
    """Whether `value` is built from core types only (marshal would also take any object with the
    buffer protocol, such as a numpy array, and turn it into bytes)."""
    stack, seen = [value], set()
    while stack:
        item = stack.pop()
        kind = type(item)
        if kind not in _CORE_TYPES:
            return False
        if kind in (dict, tuple, list, set, frozenset):
            if id(item) in seen:
                return False  # shared or cyclic: pickle keeps the structure
            seen.add(id(item))
        if kind is dict:
            stack.extend(item.keys())
            stack.extend(item.values())
        elif kind in (tuple, list, set, frozenset):
            stack.extend(item)
    return True


def _pack(message):
    """Judge -> candidate: marshal (built in, no imports on the candidate's side) when the
    arguments are core types, pickle otherwise (e.g. MBPP's tree nodes, DS-1000's arrays).
    This direction carries only the judge's own data."""
    if _core_only(message):
        import marshal

        return b"M" + marshal.dumps(message)
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
