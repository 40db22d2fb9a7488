"""DS-1000's results cross from the program's process to the judge as checked parts: numpy,
pandas and torch values rebuilt as genuine objects, anything malformed refused."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tuner_eval.sandbox.codec import DecodeError, Opaque, decode, dumps, encode, loads


def roundtrip(value):
    return loads(dumps(encode(value)))


@pytest.mark.parametrize("array", [
    np.arange(12, dtype=np.int64).reshape(3, 4), np.linspace(0, 1, 5, dtype=np.float32), np.array([True, False]),
    np.array(["ab", "c"]), np.array(["2020-01-01", "NaT"], dtype="datetime64[ns]"), np.arange(6).reshape(2, 3).T,
    np.array([1 + 2j]), np.array([[1, "x"], [None, 2.5]], dtype=object), np.zeros((0, 3)), np.array(7),
])
def test_numpy_arrays_come_back_with_their_dtype_shape_and_values(array):
    back = roundtrip(array)
    assert type(back) is np.ndarray and back.dtype == array.dtype and back.shape == array.shape
    np.testing.assert_array_equal(back, array)


def test_numpy_scalars_and_torch_tensors_keep_their_types():
    for scalar in (np.int64(3), np.float32(0.5), np.bool_(True), np.datetime64("2021-03-04")):
        back = roundtrip(scalar)
        assert type(back) is type(scalar) and back == scalar
    tensor = torch.arange(6, dtype=torch.bfloat16).reshape(2, 3)
    back = roundtrip(tensor)
    assert type(back) is torch.Tensor and back.dtype == torch.bfloat16 and torch.equal(back, tensor)


def test_subclasses_and_unknown_objects_stay_opaque():
    class Always(np.ndarray):
        def __eq__(self, other):
            return True

    assert isinstance(roundtrip(np.zeros(2).view(Always)), Opaque)
    assert isinstance(roundtrip(np.ma.masked_array([1, 2], mask=[0, 1])), Opaque)


@pytest.mark.parametrize("node", [
    {"nd": ["|O", [1], ""]},                        # object arrays only as checked elements
    {"nd": ["<i8", [2], "AAAAAAAAAAA="]},           # 8 bytes for 2 int64
    {"nd": ["<i8", [-1], ""]},                      # bad shape
    {"nd": ["int64", [0], ""]},                     # only numpy's canonical dtype text
    {"th": [{"nd": ["<f4", [0], ""]}, "load"]},     # a torch attribute that is not a dtype
    {"ndo": [[2], [1]]},                            # element count does not match the shape
])
def test_malformed_data_is_refused(node):
    with pytest.raises(DecodeError):
        decode(node)


def test_pandas_frames_series_and_indexes_come_back_equal():
    pd = pytest.importorskip("pandas")
    frame = pd.DataFrame({"a": [1, 2, 3], "b": ["x", None, "z"], "c": pd.Categorical(["u", "v", "u"]),
                          "d": pd.to_datetime(["2020-01-01", "2020-01-02", None]).tz_localize("UTC"),
                          "e": pd.array([1, None, 3], dtype="Int64")},
                         index=pd.MultiIndex.from_tuples([("p", 1), ("p", 2), ("q", 1)], names=["k", "n"]))
    pd.testing.assert_frame_equal(roundtrip(frame), frame)
    series = pd.Series([0.5, 1.5], index=pd.Index(["r", "s"], name="idx"), name="val")
    pd.testing.assert_series_equal(roundtrip(series), series)
    daily = pd.Series(range(3), index=pd.date_range("2020-01-01", periods=3, freq="D"))
    pd.testing.assert_series_equal(roundtrip(daily), daily)
    pd.testing.assert_index_equal(roundtrip(pd.RangeIndex(2, 10, 3, name="r")), pd.RangeIndex(2, 10, 3, name="r"))
    assert roundtrip(pd.Timestamp("2021-01-01 12:00", tz="Europe/Paris")) == pd.Timestamp("2021-01-01 12:00",
                                                                                          tz="Europe/Paris")
    assert roundtrip(pd.NaT) is pd.NaT and roundtrip(pd.NA) is pd.NA


def test_scipy_sparse_matrices_and_arrays_come_back_in_their_format():
    sparse = pytest.importorskip("scipy.sparse")
    dense = np.array([[0, 1.5, 0], [2, 0, 0]])
    for value in (sparse.csr_matrix(dense), sparse.csc_array(dense), sparse.coo_matrix(dense),
                  sparse.lil_matrix(dense)):
        back = roundtrip(value)
        assert type(back) is type(value) and back.shape == value.shape
        np.testing.assert_array_equal(back.toarray(), dense)
    with pytest.raises(DecodeError):
        decode({"sp": ["issparse", [1, 1], {"nd": ["<f8", [0], ""]}, {"nd": ["<i4", [0], ""]},
                       {"nd": ["<i4", [0], ""]}]})
