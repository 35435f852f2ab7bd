"""Request failures as gRPC statuses: ServingError, the HTTP mapping REST uses, and
as_serving_error for anything else that escapes (TensorFlow's errors by their code)."""

from __future__ import annotations

import sys

import grpc


class ServingError(Exception):
    """A request that cannot be served: a gRPC status code and a message for the caller."""

    def __init__(self, code: grpc.StatusCode, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


def _invalid(message):
    return ServingError(grpc.StatusCode.INVALID_ARGUMENT, message)


# TF Serving's own mapping (http_rest_api_handler / status util).
HTTP_STATUS = {
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.FAILED_PRECONDITION: 400,
    grpc.StatusCode.OUT_OF_RANGE: 400,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
    grpc.StatusCode.UNIMPLEMENTED: 501,
}


def as_serving_error(error: Exception) -> ServingError:
    """Any exception -> a status: ours as is, TensorFlow's by their (gRPC-numbered) code, the rest INTERNAL."""
    if isinstance(error, ServingError):
        return error
    tf = sys.modules.get("tensorflow")
    if tf is not None and isinstance(error, tf.errors.OpError):
        code = next((c for c in grpc.StatusCode if c.value[0] == error.error_code), grpc.StatusCode.INTERNAL)
        from gan_pkg.session_loader import telling_line

        return ServingError(code, telling_line(error.message or "") or type(error).__name__)
    return ServingError(grpc.StatusCode.INTERNAL, f"{type(error).__name__}: {error}")
