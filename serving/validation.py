"""Inputs against a signature: one check of keys, dtype, rank, fixed dimensions and batch
size, used for decoded arrays (REST, warmup, and gRPC after decoding) and for TensorProto
headers (gRPC, before anything is decoded)."""

from __future__ import annotations

import math

import grpc
import numpy as np

from gan_pkg import contract
from serving.errors import ServingError, _invalid


def _tf():
    import tensorflow as tf

    return tf


def _shape_text(shape):
    return "[" + ", ".join("?" if d is None else str(d) for d in shape) + "]"


def _dtype_ok(expected, array: np.ndarray) -> bool:
    if expected.is_floating or expected.is_integer or expected == _tf().bool:
        return array.dtype == expected.as_numpy_dtype
    if expected == _tf().string:
        return array.dtype == object or array.dtype.kind in "SU"
    return False


def _check_keys(signature: str, specs: dict, inputs) -> None:
    sent, wanted = set(inputs), set(specs)
    if sent != wanted:
        raise _invalid(
            f"input keys do not match signature '{signature}': expected {sorted(wanted)}, got {sorted(sent)}"
            + (f"; missing {sorted(wanted - sent)}" if wanted - sent else "")
            + (f"; unknown {sorted(sent - wanted)}" if sent - wanted else "")
        )


def check_input(signature: str, key: str, spec: tuple, dims: list[int] | None, got_dtype: str | None = None) -> None:
    """One input against its (dtype, shape) spec, in this order: dtype (got_dtype is the name of
    what was sent, None when it matches), known rank (dims None: unknown), no negative
    dimension, rank and fixed dimensions, a batch dimension."""
    dtype, shape = spec
    if got_dtype is not None:
        raise _invalid(f"input '{key}' of signature '{signature}' expects {dtype.name}, got {got_dtype}")
    if dims is None:
        raise _invalid(f"input '{key}' must have a known shape")
    if any(d < 0 for d in dims):
        raise _invalid(f"input '{key}' has a negative dimension: {dims}")
    if shape is not None:
        if len(dims) != len(shape):
            raise _invalid(
                f"input '{key}' of signature '{signature}' expects rank {len(shape)} "
                f"(shape {_shape_text(shape)}), got shape {dims}"
            )
        for i, (want, got) in enumerate(zip(shape, dims)):
            if want is not None and want != got:
                raise _invalid(
                    f"input '{key}' of signature '{signature}' expects shape {_shape_text(shape)}, got {dims} (dimension {i})"
                )
    if not dims:
        raise _invalid(f"input '{key}' must have a batch dimension (dimension 0)")


def check_batch_size(rows: int, max_batch_size: int) -> None:
    if rows > max_batch_size:
        raise ServingError(
            grpc.StatusCode.INVALID_ARGUMENT,  # as TF Serving's batch scheduler: it can never succeed, so no retry
            f"batch of {rows} rows is larger than the maximum batch size {max_batch_size}; split the request",
        )


def validate_inputs(servable, signature: str, inputs: dict, max_batch_size: int) -> int:
    """Check keys, dtypes, shapes, finiteness and batch size; return the batch size."""
    specs = servable.inputs[signature]
    _check_keys(signature, specs, inputs)
    batch = None
    for key, array in inputs.items():
        dtype, _ = specs[key]
        got = None
        if not _dtype_ok(dtype, array):
            got = "string" if array.dtype == object or array.dtype.kind in "SU" else array.dtype.name
        check_input(signature, key, specs[key], list(array.shape), got)
        if batch is None:
            batch = array.shape[0]
        elif array.shape[0] != batch:
            raise _invalid(f"inputs disagree on the batch size (dimension 0): {batch} vs {array.shape[0]} for '{key}'")
        if dtype.is_floating and not np.isfinite(array).all():
            raise _invalid(f"input '{key}' contains NaN or infinite values; send finite numbers")
    if batch == 0:
        raise _invalid("empty batch: dimension 0 of the inputs is 0; send at least one row")
    classes = getattr(servable, "num_classes", 0)
    label = inputs.get(contract.LABEL)
    if classes and label is not None and label.dtype.kind in "iu":
        outside = (label < 0) | (label >= classes)
        if outside.any():
            raise _invalid(f"{contract.label_range_message(classes)}; got {label[outside].reshape(-1)[:5].tolist()}")
    check_batch_size(batch, max_batch_size)
    return batch


def check_input_protos(servable, signature: str, protos: dict, max_batch_size: int, max_elements: int) -> None:
    """Keys, dtypes and shapes from the TensorProtos' headers, before any decoding.

    make_ndarray fills a shape from a single value (or zeros), so a 20-byte request
    claiming [10**9, 100] would allocate 400 GB: nothing is materialized until the
    shape agrees with the signature and the batch limit.
    """
    tf = _tf()
    specs = servable.inputs[signature]
    _check_keys(signature, specs, protos)
    for key, proto in protos.items():
        dtype, _ = specs[key]
        got = None
        if proto.dtype != dtype.as_datatype_enum:
            try:
                got = tf.dtypes.as_dtype(proto.dtype).name
            except (TypeError, ValueError):
                got = f"unknown DataType {proto.dtype}"
        dims = None if proto.tensor_shape.unknown_rank else [d.size for d in proto.tensor_shape.dim]
        check_input(signature, key, specs[key], dims, got)
        check_batch_size(dims[0], max_batch_size)
        if math.prod(dims) > max_elements:
            raise ServingError(grpc.StatusCode.RESOURCE_EXHAUSTED, f"input '{key}' of shape {dims} is too large")
