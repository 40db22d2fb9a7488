"""numpy, pandas, scipy.sparse and torch values in the codec (DS-1000's results), rebuilt from checked plain data.

The program's process encodes (`encode_data`); the judge decodes (`decode_data`) into genuine
objects of the libraries' own types, built by their public constructors from validated parts:
arrays from raw bytes with a checked non-object dtype, frames and series from arrays, names and
dtype names. Nothing the program defined (no subclass, no `__eq__`, no pickle) reaches the judge.
A value of any other type stays `Opaque` (equal only to itself), so a test comparing it fails.

Sent as source into the sandbox right after codec.py (see `tuner_eval.sandbox.processes`):
standard library only at import time, no `from __future__` imports.
"""

DATA_TAGS = frozenset({"nd", "ndo", "pdi", "pds", "pdf", "pdcat", "pdts", "pdtd", "pdnat", "pdna", "th", "sp"})
_LIBRARIES = ("numpy", "pandas", "torch", "scipy")
_SPARSE_FORMATS = frozenset({"csr", "csc", "coo", "lil", "dok", "dia", "bsr"})


class DataDecodeError(ValueError):
    pass


# -- encoding (in the program's process) -----------------------------------------------------------

def encode_data(value, encode):
    """The tagged form of a numpy/pandas/torch value, or None for any other type.

    `encode` is the codec's own encoder, used for the parts (names, object elements)."""
    library = getattr(type(value), "__module__", "").split(".")[0]
    if library not in _LIBRARIES:
        return None
    if library == "numpy":
        import numpy as np

        if type(value) is np.ndarray or type(value) is np.matrix:
            return _array(np.asarray(value), encode)
        if isinstance(value, np.generic):  # numpy scalars keep their dtype: a 0-d array
            return {"nd": _array(np.asarray(value), encode)["nd"] + ["scalar"]}
        return None
    if library == "torch":
        import torch

        if type(value) is not torch.Tensor:
            return None
        tensor = value.detach().cpu()
        wide = tensor.to(torch.float32) if tensor.dtype == torch.bfloat16 else tensor
        return {"th": [_array(wide.numpy(), encode), str(tensor.dtype).removeprefix("torch.")]}
    if library == "scipy":
        return _sparse(value, encode)
    return _pandas(value, encode)


def _sparse(value, encode):
    """A scipy.sparse matrix or array: its format, shape and coordinates (duplicates kept)."""
    import scipy.sparse as sparse

    kind = type(value)
    if not kind.__module__.startswith("scipy.sparse") or not sparse.issparse(value) \
            or getattr(sparse, kind.__name__, None) is not kind:
        return None
    coo = value.tocoo()
    return {"sp": [kind.__name__, list(value.shape), _array(coo.data, encode), _array(coo.row, encode),
                   _array(coo.col, encode)]}


def _array(array, encode):
    import base64

    import numpy as np

    if array.dtype.hasobject or array.dtype.names is not None:
        return {"ndo": [list(array.shape), [encode(item) for item in array.ravel().tolist()]]}
    data = base64.b64encode(np.ascontiguousarray(array).tobytes()).decode("ascii")
    return {"nd": [array.dtype.str, list(array.shape), data]}


def _values(holder, encode):
    """The values of a pandas Series or Index: numpy-typed ones as arrays, categorical ones as
    codes and categories, other extension types (nullable, tz-aware, string) as objects."""
    import numpy as np
    import pandas as pd

    if isinstance(holder.dtype, pd.CategoricalDtype):
        categorical = pd.Categorical(holder)
        return {"pdcat": [_array(np.asarray(categorical.codes), encode), _pandas(categorical.categories, encode),
                          bool(categorical.ordered)]}
    if isinstance(holder.dtype, np.dtype):
        return _array(holder.to_numpy(), encode)
    return _array(np.asarray(holder.array, dtype=object), encode)


def _pandas(value, encode):
    import pandas as pd

    if value is pd.NaT:
        return {"pdnat": []}
    if value is pd.NA:
        return {"pdna": []}
    if type(value) is pd.Timestamp:
        return {"pdts": [int(value.value), None if value.tz is None else str(value.tz)]}
    if type(value) is pd.Timedelta:
        return {"pdtd": [int(value.value)]}
    if type(value) is pd.RangeIndex:
        return {"pdi": ["range", value.start, value.stop, value.step, encode(value.name)]}
    if type(value) is pd.MultiIndex:
        return {"pdi": ["multi", [_pandas(level, encode) for level in value.levels],
                        [_array(codes, encode) for codes in value.codes], [encode(n) for n in value.names]]}
    if isinstance(value, pd.Index) and type(value).__module__.split(".")[0] == "pandas":
        freq = getattr(value, "freqstr", None) if isinstance(value, (pd.DatetimeIndex, pd.TimedeltaIndex)) else None
        return {"pdi": ["values", _values(value, encode), str(value.dtype), encode(value.name), freq]}
    if type(value) is pd.Series:
        return {"pds": [_values(value, encode), _pandas(value.index, encode), encode(value.name),
                        str(value.dtype)]}
    if type(value) is pd.DataFrame:
        columns = [_values(value.iloc[:, i], encode) for i in range(value.shape[1])]
        dtypes = [str(dtype) for dtype in value.dtypes]
        return {"pdf": [_pandas(value.columns, encode), _pandas(value.index, encode), columns, dtypes]}
    return None


# -- decoding (in the judge) -----------------------------------------------------------------------

def _shape(node):
    if type(node) is not list or not all(type(n) is int and n >= 0 for n in node):
        raise DataDecodeError("bad shape")
    return tuple(node)


def _decode_array(node, decode):
    import base64

    import numpy as np

    if type(node) is not dict or len(node) != 1:
        raise DataDecodeError("expected an array")
    (tag, body), = node.items()
    if tag == "ndo":
        if type(body) is not list or len(body) != 2 or type(body[1]) is not list:
            raise DataDecodeError("bad object array")
        shape = _shape(body[0])
        array = np.empty(len(body[1]), dtype=object)
        for i, item in enumerate(body[1]):
            array[i] = decode(item)
        return array.reshape(shape)
    if tag != "nd" or type(body) is not list or len(body) not in (3, 4) or type(body[0]) is not str \
            or type(body[2]) is not str or body[3:] not in ([], ["scalar"]):
        raise DataDecodeError("bad array")
    try:
        dtype = np.dtype(body[0])
    except (TypeError, ValueError):
        raise DataDecodeError("bad dtype")
    if dtype.hasobject or dtype.names is not None or dtype.str != body[0]:
        raise DataDecodeError("bad dtype")
    shape = _shape(body[1])
    data = base64.b64decode(body[2].encode("ascii"), validate=True)
    count = 1
    for n in shape:
        count *= n
    if len(data) != count * dtype.itemsize:
        raise DataDecodeError("array size does not match its shape")
    array = np.frombuffer(data, dtype=dtype).reshape(shape).copy()
    return array[()] if body[3:] == ["scalar"] else array


def _decode_values(node, decode):
    import pandas as pd

    if type(node) is dict and set(node) == {"pdcat"}:
        body = node["pdcat"]
        if type(body) is not list or len(body) != 3 or type(body[2]) is not bool:
            raise DataDecodeError("bad categorical")
        categories = _decode_index(body[1], decode)
        return pd.Categorical.from_codes(_decode_array(body[0], decode), categories=categories, ordered=body[2])
    return _decode_array(node, decode)


def _text(node):
    if type(node) is not str or len(node) > 200:
        raise DataDecodeError("bad dtype name")
    return node


def _decode_index(node, decode):
    if type(node) is not dict or set(node) != {"pdi"}:
        raise DataDecodeError("expected an index")
    return _decode_pandas("pdi", node["pdi"], decode)


def _decode_pandas(tag, body, decode):
    import pandas as pd

    if type(body) is not list:
        raise DataDecodeError("bad " + tag)
    if tag == "pdnat":
        return pd.NaT
    if tag == "pdna":
        return pd.NA
    if tag == "pdts" and len(body) == 2 and type(body[0]) is int and (body[1] is None or type(body[1]) is str):
        return pd.Timestamp(body[0], tz=body[1])
    if tag == "pdtd" and len(body) == 1 and type(body[0]) is int:
        return pd.Timedelta(body[0])
    if tag == "pdi" and body[:1] == ["range"] and len(body) == 5 and all(type(n) is int for n in body[1:4]):
        return pd.RangeIndex(body[1], body[2], body[3], name=decode(body[4]))
    if tag == "pdi" and body[:1] == ["multi"] and len(body) == 4 and all(type(p) is list for p in body[1:]):
        levels = [_decode_index(level, decode) for level in body[1]]
        codes = [_decode_array(c, decode) for c in body[2]]
        return pd.MultiIndex(levels=levels, codes=codes, names=[decode(n) for n in body[3]])
    if tag == "pdi" and body[:1] == ["values"] and len(body) == 5:
        index = pd.Index(_decode_values(body[1], decode), dtype=_text(body[2]), name=decode(body[3]))
        if body[4] is not None:  # a date or time-delta index's frequency (the checks compare it)
            index = type(index)(index, freq=_text(body[4])) if isinstance(index, (pd.DatetimeIndex,
                                                                                 pd.TimedeltaIndex)) else index
        return index
    if tag == "pds" and len(body) == 4:
        index = _decode_index(body[1], decode)
        return pd.Series(_decode_values(body[0], decode), index=index, name=decode(body[2]), dtype=_text(body[3]))
    if tag == "pdf" and len(body) == 4 and type(body[2]) is list and type(body[3]) is list \
            and len(body[2]) == len(body[3]):
        columns, index = _decode_index(body[0], decode), _decode_index(body[1], decode)
        if len(columns) != len(body[2]):
            raise DataDecodeError("frame columns do not match its data")
        series = [pd.Series(_decode_values(v, decode), index=index, dtype=_text(d)) for v, d in zip(body[2], body[3])]
        frame = pd.concat(series, axis=1) if series else pd.DataFrame(index=index)
        frame.columns = columns
        return frame
    raise DataDecodeError("bad " + tag)


def _decode_sparse(body, decode):
    import scipy.sparse as sparse

    if type(body) is not list or len(body) != 5 or type(body[0]) is not str:
        raise DataDecodeError("bad sparse matrix")
    kind = getattr(sparse, body[0], None)
    if not isinstance(kind, type) or body[0][:3] not in _SPARSE_FORMATS or not body[0].endswith(("_matrix", "_array")):
        raise DataDecodeError("bad sparse type")
    shape = _shape(body[1])
    data, row, col = (_decode_array(part, decode) for part in body[2:])
    return kind(sparse.coo_array((data, (row, col)), shape=shape))


def decode_data(tag, body, decode):
    """Rebuild a value from its tagged form (`tag` in DATA_TAGS); raises DataDecodeError."""
    try:
        if tag in ("nd", "ndo"):
            return _decode_array({tag: body}, decode)
        if tag == "th":
            import torch

            if type(body) is not list or len(body) != 2:
                raise DataDecodeError("bad tensor")
            dtype = getattr(torch, _text(body[1]), None)
            if not isinstance(dtype, torch.dtype):
                raise DataDecodeError("bad tensor dtype")
            return torch.from_numpy(_decode_array(body[0], decode)).to(dtype)
        if tag == "pdcat":
            return _decode_values({tag: body}, decode)
        if tag == "sp":
            return _decode_sparse(body, decode)
        return _decode_pandas(tag, body, decode)
    except DataDecodeError:
        raise
    except ImportError as exc:
        raise DataDecodeError("the judge cannot import " + str(exc.name))
    except (TypeError, ValueError, KeyError, IndexError, OverflowError) as exc:
        raise DataDecodeError(type(exc).__name__ + ": " + str(exc)[:200])
