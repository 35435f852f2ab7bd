"""TF Serving's gRPC services (PredictionService, ModelService) over a ModelServer:
channel options, --grpc_channel_arguments, SSLConfig credentials and the server itself."""

from __future__ import annotations

from concurrent import futures

import grpc

from serving.core import MAX_RECEIVE_OPTION, MAX_REQUEST_BYTES, ModelServer
from serving.errors import as_serving_error

# TF Serving sets both limits to kint32max; image batches easily pass gRPC's 4 MiB default.
# The receive side is capped lower (serving.core.MAX_REQUEST_BYTES).
MAX_MESSAGE_BYTES = 2**31 - 1
GRPC_OPTIONS = [
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    (MAX_RECEIVE_OPTION, MAX_REQUEST_BYTES),
    # gRPC's Linux default lets a second server bind the same port silently.
    ("grpc.so_reuseport", 0),
]


class _Unparsable:
    """What the request deserializer hands over when the bytes are not the request message."""

    def __init__(self, what: str, error: Exception):
        self.message = f"request is not a valid {what}: {type(error).__name__}: {error}"


def _deserializer(message_class):
    # grpcio answers a deserializer exception with INTERNAL; a client sending junk is INVALID_ARGUMENT.
    def parse(data: bytes):
        try:
            return message_class.FromString(data)
        except Exception as error:  # noqa: BLE001  protobuf raises DecodeError, and RuntimeError for bad UTF-8
            return _Unparsable(message_class.DESCRIPTOR.full_name, error)

    return parse


def _grpc_call(method):
    def handler(request, context):
        if isinstance(request, _Unparsable):
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, request.message)
        try:
            return method(request)
        except Exception as error:  # noqa: BLE001  never crash on a request
            failure = as_serving_error(error)
            context.abort(failure.code, failure.message)

    return handler


def grpc_channel_arguments(text: str | None) -> list[tuple]:
    """TF Serving's --grpc_channel_arguments: "name=value,name=value" (integers where they parse)."""
    found = []
    for item in (text or "").split(","):
        if not item.strip():
            continue
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise ValueError(f"--grpc_channel_arguments: expected name=value, got '{item}'")
        value = value.strip()
        try:
            found.append((name.strip(), int(value)))
        except ValueError:
            found.append((name.strip(), value))
    return found


def server_options(channel_arguments=()) -> list[tuple]:
    """GRPC_OPTIONS with --grpc_channel_arguments applied on top."""
    options = dict(GRPC_OPTIONS)
    options.update(dict(channel_arguments))
    return list(options.items())


def max_request_bytes(options) -> int:
    value = dict(options).get(MAX_RECEIVE_OPTION, MAX_REQUEST_BYTES)
    return MAX_MESSAGE_BYTES if not isinstance(value, int) or value < 0 else value  # -1: unlimited, as in gRPC


def ssl_credentials(ssl_config):
    """SSLConfig -> grpc server credentials, refusing a config that would serve plain text or fail later."""
    missing = [name for name in ("server_key", "server_cert") if not getattr(ssl_config, name).strip()]
    if missing:
        raise ValueError(f"--ssl_config_file: {' and '.join(missing)} missing (PEM text inline); without them gRPC would not be encrypted")
    if ssl_config.client_verify and not ssl_config.custom_ca.strip():
        raise ValueError("--ssl_config_file: client_verify: true needs custom_ca (the PEM of the CA that signs client certificates)")
    for name in ("server_key", "server_cert", "custom_ca"):
        text = getattr(ssl_config, name)
        if text.strip() and "-----BEGIN " not in text:
            raise ValueError(f"--ssl_config_file: {name} is not PEM text (expected '-----BEGIN ...'); paste the file's contents, not its path")
    return grpc.ssl_server_credentials(
        [(ssl_config.server_key.encode(), ssl_config.server_cert.encode())],
        root_certificates=ssl_config.custom_ca.encode() or None,
        require_client_auth=ssl_config.client_verify,
    )


def build_grpc_server(core: ModelServer, host: str, port: int, ssl_config=None, max_workers=64, options=None):
    from tensorflow_serving.apis import get_model_metadata_pb2, get_model_status_pb2, predict_pb2

    def unary(method, request_class, response_class):
        return grpc.unary_unary_rpc_method_handler(
            _grpc_call(method), request_deserializer=_deserializer(request_class), response_serializer=response_class.SerializeToString
        )

    # The services TF Serving registers, by their proto names; methods not listed answer UNIMPLEMENTED.
    prediction = grpc.method_handlers_generic_handler(
        "tensorflow.serving.PredictionService",
        {
            "Predict": unary(core.predict, predict_pb2.PredictRequest, predict_pb2.PredictResponse),
            "GetModelMetadata": unary(
                core.metadata, get_model_metadata_pb2.GetModelMetadataRequest, get_model_metadata_pb2.GetModelMetadataResponse
            ),
        },
    )
    models = grpc.method_handlers_generic_handler(
        "tensorflow.serving.ModelService",
        {"GetModelStatus": unary(core.status, get_model_status_pb2.GetModelStatusRequest, get_model_status_pb2.GetModelStatusResponse)},
    )
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="grpc"),
        handlers=[prediction, models],
        options=options if options is not None else GRPC_OPTIONS,
    )
    address = f"{host}:{port}"
    if ssl_config is not None:
        bound = server.add_secure_port(address, ssl_credentials(ssl_config))
    else:
        bound = server.add_insecure_port(address)
    if not bound:
        raise OSError(f"cannot bind gRPC to {address} (port in use?)")
    return server, bound
