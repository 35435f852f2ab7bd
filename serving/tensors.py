"""ndarray <-> TensorProto for Predict, without TensorFlow's Python on the hot path.

Numbers travel as `tensor_content` (the raw little-endian bytes that TF Serving's own
C++ writes and reads), strings as `string_val`. `tf.make_tensor_proto` and
`tf.make_ndarray` spend tens of microseconds per call in Python checks, which is felt
when a whole batch-1 Predict takes a few milliseconds; anything they handle that the
fast path does not (bfloat16, values in the typed `*_val` fields) still goes through them.
"""

from __future__ import annotations

import math

import numpy as np

# tensorflow/core/framework/types.proto's DataType numbers, so importing this module does not
# import TensorFlow (the server parses its flags first, and answers a typo at once).
DT_STRING = 7
_ENUMS = {
    np.dtype(np.float32): 1,  # DT_FLOAT
    np.dtype(np.float64): 2,  # DT_DOUBLE
    np.dtype(np.int32): 3,  # DT_INT32
    np.dtype(np.uint8): 4,  # DT_UINT8
    np.dtype(np.int16): 5,  # DT_INT16
    np.dtype(np.int8): 6,  # DT_INT8
    np.dtype(np.int64): 9,  # DT_INT64
    np.dtype(np.bool_): 10,  # DT_BOOL
    np.dtype(np.uint16): 17,  # DT_UINT16
    np.dtype(np.float16): 19,  # DT_HALF
    np.dtype(np.uint32): 22,  # DT_UINT32
    np.dtype(np.uint64): 23,  # DT_UINT64
}
# tensor_content is little-endian whatever the host; '<' dtypes read it right on any host.
_DTYPES = {enum: dtype.newbyteorder("<") for dtype, enum in _ENUMS.items()}


def to_proto(array):
    """An ndarray (numbers, or bytes/str/object for DT_STRING) as a TensorProto."""
    from tensorflow.core.framework import tensor_pb2

    array = np.asarray(array)
    enum = _ENUMS.get(array.dtype.newbyteorder("="))
    if enum is not None:
        content = np.ascontiguousarray(array, array.dtype.newbyteorder("<")).tobytes()
        proto = tensor_pb2.TensorProto(dtype=enum, tensor_content=content)
    elif array.dtype == object or array.dtype.kind in "SU":
        values = [v.encode() if isinstance(v, str) else bytes(v) for v in array.reshape(-1).tolist()]
        proto = tensor_pb2.TensorProto(dtype=DT_STRING, string_val=values)
    else:
        import tensorflow as tf

        return tf.make_tensor_proto(array)
    for size in array.shape:
        proto.tensor_shape.dim.add(size=size)
    return proto


def to_ndarray(proto) -> np.ndarray:
    """A TensorProto's value (read-only when it is a view of tensor_content). Raises
    ValueError when tensor_content's length does not match the shape and dtype."""
    dtype = _DTYPES.get(proto.dtype)
    if dtype is None or not proto.tensor_content or proto.tensor_shape.unknown_rank:
        import tensorflow as tf

        return tf.make_ndarray(proto)
    dims = [d.size for d in proto.tensor_shape.dim]
    needed = math.prod(dims) * dtype.itemsize
    if len(proto.tensor_content) != needed:
        raise ValueError(f"tensor_content holds {len(proto.tensor_content)} bytes; shape {dims} of {dtype.name} needs {needed}")
    return np.frombuffer(proto.tensor_content, dtype).reshape(dims)
