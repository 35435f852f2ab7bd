"""serving.tensors, the Predict hot path's TensorProto codec: what it writes TensorFlow reads
back exactly, what TensorFlow writes it reads back exactly, and a tensor_content whose
length disagrees with its shape is refused rather than read past or padded."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import pytest
import tensorflow as tf
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from serving import tensors

NUMERIC = [np.float32, np.float64, np.float16, np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16, np.uint32, np.uint64, np.bool_]


def test_datatype_numbers_are_tensorflows():
    for dtype, enum in tensors._ENUMS.items():
        assert tf.as_dtype(dtype).as_datatype_enum == enum, dtype
    assert tf.string.as_datatype_enum == tensors.DT_STRING


@settings(max_examples=60, deadline=None, derandomize=True, database=None)
@given(hnp.arrays(st.sampled_from(NUMERIC), hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=5)))
def test_numbers_round_trip_through_tensorflows_own_codec(array):
    ours = tensors.to_proto(array)
    for proto in (ours, tf.make_tensor_proto(array)):
        back = tensors.to_ndarray(proto)
        assert back.dtype == array.dtype and back.shape == array.shape
        np.testing.assert_array_equal(back, array)
    read_by_tf = tf.make_ndarray(ours)
    assert read_by_tf.dtype == array.dtype
    np.testing.assert_array_equal(read_by_tf, array)


def test_strings_round_trip():
    array = np.array([b"\x89PNG\r\n", b"", "ok"], dtype=object)
    proto = tensors.to_proto(array)
    assert list(tensors.to_ndarray(proto)) == [b"\x89PNG\r\n", b"", b"ok"] == list(tf.make_ndarray(proto))


@pytest.mark.parametrize("cut", [-1, 1])
def test_a_tensor_content_that_disagrees_with_its_shape_is_refused(cut):
    proto = tensors.to_proto(np.zeros((2, 3), np.float32))
    proto.tensor_content = proto.tensor_content[:-1] if cut < 0 else proto.tensor_content + b"\0"
    with pytest.raises(ValueError, match="needs 24"):
        tensors.to_ndarray(proto)
