"""A type-preserving JSON encoding for plain Python data, and a strict decoder for it.

Values cross from the program under test to the judge only in this form, so the judge never holds
an object the program made: whatever bytes arrive, `decode` yields only None, bool, int, float,
complex, str, bytes, list, tuple, set, frozenset, dict, numpy/pandas/scipy.sparse/torch values
rebuilt from checked parts (`datacodec`), or `Opaque` (a stand-in for anything else, equal only to itself). An object with a doctored `__eq__`, a subclass of `int` that lies about its
value, or a generator cannot reach a comparison in the judge.

This file is also sent as source into the sandboxed interpreters (see `tuner_eval.sandbox.runner`): it
must stay self-contained, standard-library only, and free of `from __future__` imports.
"""

import math

from _json import encode_basestring_ascii as _quote

try:  # imported as a module; in the sandbox datacodec's source follows this file's
    from tuner_eval.sandbox.datacodec import DATA_TAGS, DataDecodeError, decode_data, encode_data
except ImportError:
    pass

_TAGS = frozenset({"t", "s", "fs", "d", "b", "c", "f", "o", "x", "ai"})
MAX_MESSAGE_BYTES = 256 * 1024 * 1024


class Opaque:
    """A value the program returned that is not plain data: its type name and a short repr."""

    __slots__ = ("type_name", "text")

    def __init__(self, type_name, text):
        self.type_name = str(type_name)
        self.text = str(text)

    def __eq__(self, other):
        return self is other

    def __ne__(self, other):
        return self is not other

    def __hash__(self):
        return id(self)

    def __repr__(self):
        return "<opaque " + self.type_name + ": " + self.text + ">"


_BIG_INT_BITS = 4096
"""Integers longer than this travel as hexadecimal ({"x": "-1f..."}): conversion to and from a
power-of-two base is linear in the number of digits, decimal is not (HumanEval+ has outputs with
hundreds of thousands of digits)."""


_JSON_SCALARS = frozenset({int, float, str, bool, type(None)})
_LIMIT = 1 << _BIG_INT_BITS


def _json_ready(value, depth=0):
    """Whether `value` is a list (of lists) of exact str/int/float/bool/None, which the C JSON
    encoder writes just as `dumps(encode(value))` would (NaN and infinities as Python's json
    extension, which the judge's `json.loads` reads back)."""
    kinds = set(map(type, value))
    nested = list in kinds
    if nested:
        if depth > 64 or not all(_json_ready(v, depth + 1) for v in value if type(v) is list):
            return False
        kinds.discard(list)
    if not kinds <= _JSON_SCALARS:
        return False
    if int in kinds:
        ints = value if kinds == {int} and not nested else [v for v in value if type(v) is int]
        if ints and not -_LIMIT < min(ints) <= max(ints) < _LIMIT:
            return False
    return True


_INT64 = 1 << 63


def dumps_answer(value):
    """The candidate's `{"ok": value}` message.

    Long lists (outputs of a million numbers are common in HumanEval+) take a fast road, because
    the per-input time limits are evalplus's, measured on the reference solution in-process: a
    flat list of exact ints within 64 bits or of exact floats travels as raw machine numbers
    (`{"ai": [typecode, base64]}`, decoded with `array`), other lists of plain scalars through the
    C JSON encoder.
    """
    if type(value) is not list or len(value) <= 256:
        return dumps({"ok": encode(value)})
    kinds = set(map(type, value))
    if kinds == {float} or (kinds == {int} and -_INT64 <= min(value) <= max(value) < _INT64):
        import array
        import base64

        packed = base64.b64encode(array.array("d" if float in kinds else "q", value).tobytes()).decode("ascii")
        return '{"ok":{"ai":["' + ("d" if float in kinds else "q") + '","' + packed + '"]}}'
    if _json_ready(value):
        import json

        return '{"ok":' + json.dumps(value) + "}"
    return dumps({"ok": encode(value)})


def _int(value):
    if value.bit_length() <= _BIG_INT_BITS:
        return value
    return {"x": int.__format__(value, "x")}


def _float(value):
    if math.isfinite(value):
        return value
    return {"f": "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")}


def encode(value):
    """Turn `value` into JSON-ready data; anything that is not plain data becomes an opaque tag.

    Exact types are checked first (`type(x) is int`); subclasses are reduced to their base value;
    numpy, pandas and torch values travel as the checked parts `datacodec` rebuilds them from.
    """
    kind = type(value)
    if value is None or kind is bool or kind is str:
        return value
    if kind is int:
        return _int(value)
    if kind is float:
        return _float(value)
    if kind is list:
        return [encode(v) for v in value]
    if kind is tuple:
        return {"t": [encode(v) for v in value]}
    if kind is set:
        return {"s": [encode(v) for v in value]}
    if kind is frozenset:
        return {"fs": [encode(v) for v in value]}
    if kind is dict:
        return {"d": [[encode(k), encode(v)] for k, v in value.items()]}
    if kind is bytes:
        import base64  # imports `re`: only when needed, it is a third of the start-up time

        return {"b": base64.b64encode(value).decode("ascii")}
    if kind is complex:
        return {"c": [_float(value.real), _float(value.imag)]}
    data = encode_data(value, encode)  # numpy (scalars keep their dtype), pandas, torch: see datacodec
    if data is not None:
        return data
    # Subclasses (Counter, OrderedDict, namedtuple, IntEnum, ...) travel as their base type, which
    # is how they compare with plain values anyway; their own methods never reach the judge.
    if isinstance(value, bool):
        return bool(value)
    if isinstance(value, int):
        return _int(int.__index__(value))
    if isinstance(value, float):
        return _float(float.__float__(value))
    if isinstance(value, str):
        return str.__str__(value)
    if isinstance(value, dict):
        return {"d": [[encode(k), encode(v)] for k, v in dict.items(value)]}
    if isinstance(value, list):
        return [encode(v) for v in list.__iter__(value)]
    if isinstance(value, tuple):
        return {"t": [encode(v) for v in tuple.__iter__(value)]}
    if isinstance(value, frozenset):
        return {"fs": [encode(v) for v in frozenset.__iter__(value)]}
    if isinstance(value, set):
        return {"s": [encode(v) for v in set.__iter__(value)]}
    try:
        text = repr(value)[:200]
    except BaseException:
        text = "?"
    return {"o": [getattr(kind, "__qualname__", "object"), text]}


def _float_json(value):
    if math.isfinite(value):
        return repr(value)
    return '{"f":"' + ("nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")) + '"}'


def dumps(value):
    """JSON text for already-encoded (or plain JSON) data, without the `json` module.

    The program's interpreter uses this so it need not import `json` (and `re`) at start-up.
    """
    kind = type(value)
    if value is None:
        return "null"
    if kind is bool:
        return "true" if value else "false"
    if kind is int:
        return int.__repr__(value)
    if kind is float:
        return _float_json(value)
    if kind is str:
        return _quote(value)
    if kind is list or kind is tuple:
        return "[" + ",".join([dumps(v) for v in value]) + "]"
    if kind is dict:
        return "{" + ",".join([_quote(str(k)) + ":" + dumps(v) for k, v in value.items()]) + "}"
    raise TypeError("cannot write " + kind.__name__ + " as JSON")


class DecodeError(ValueError):
    pass


def _decode_float(node):
    if type(node) is float or type(node) is int:
        return float(node)
    if type(node) is dict and set(node) == {"f"} and node["f"] in ("nan", "inf", "-inf"):
        return float(node["f"])
    raise DecodeError("bad float")


def decode(node):
    """Rebuild plain data from `encode`'s output. Raises DecodeError on anything else."""
    kind = type(node)
    if node is None or kind is bool or kind is str or kind is int or kind is float:
        return node
    if kind is list:
        if set(map(type, node)) <= _JSON_SCALARS:  # plain already (JSON never yields subclasses)
            return node
        return [decode(v) for v in node]
    if kind is not dict or len(node) != 1:
        raise DecodeError("unexpected " + kind.__name__)
    (tag, body), = node.items()
    if tag in DATA_TAGS:
        try:
            return decode_data(tag, body, decode)
        except DataDecodeError as exc:
            raise DecodeError(str(exc))
    if tag not in _TAGS:
        raise DecodeError("unknown tag " + repr(tag)[:40])
    if tag == "f":
        return _decode_float(node)
    if tag == "x":
        digits = body[1:] if type(body) is str and body[:1] == "-" else body
        if type(digits) is not str or not digits or digits.strip("0123456789abcdef"):
            raise DecodeError("bad integer")
        return int(body, 16)
    if tag == "ai":
        import array
        import base64

        if type(body) is not list or len(body) != 2 or body[0] not in ("q", "d") or type(body[1]) is not str:
            raise DecodeError("bad number array")
        data = base64.b64decode(body[1].encode("ascii"), validate=True)
        if len(data) % 8:
            raise DecodeError("bad number array")
        numbers = array.array(body[0])
        numbers.frombytes(data)
        return numbers.tolist()
    if tag == "b":
        import base64

        if type(body) is not str:
            raise DecodeError("bad bytes")
        return base64.b64decode(body.encode("ascii"), validate=True)
    if type(body) is not list:
        raise DecodeError("bad " + tag)
    if tag == "t":
        return tuple(decode(v) for v in body)
    if tag == "s":
        return {decode(v) for v in body}
    if tag == "fs":
        return frozenset(decode(v) for v in body)
    if tag == "d":
        if not all(type(pair) is list and len(pair) == 2 for pair in body):
            raise DecodeError("bad dict")
        return {decode(k): decode(v) for k, v in body}
    if tag == "c":
        if len(body) != 2:
            raise DecodeError("bad complex")
        return complex(_decode_float(body[0]), _decode_float(body[1]))
    if len(body) != 2 or not all(type(v) is str for v in body):
        raise DecodeError("bad opaque")
    return Opaque(body[0][:200], body[1][:200])


def loads(text):
    """Parse one message (bytes or str) into plain data, or raise DecodeError."""
    import json

    if len(text) > MAX_MESSAGE_BYTES:
        raise DecodeError("message too large")
    try:
        return decode(json.loads(text))
    except DecodeError:
        raise
    except (ValueError, TypeError, RecursionError, MemoryError) as exc:
        raise DecodeError(type(exc).__name__ + ": " + str(exc)[:200])
