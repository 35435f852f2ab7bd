"""TF Serving config messages that the tensorflow-serving-api wheel does not ship.

`BatchingParameters`, `MonitoringConfig` (+ `PrometheusConfig`) and `SSLConfig`
are built here from descriptors, without protoc, so `serving/*.config` files
and the embedded server parse exactly what tensorflow_model_server parses.
Field names, numbers and types are copied from tensorflow/serving (tag 2.20.0);
each message names its source file. The package is `tensorflow.serving`, as
upstream, so text-format files are interchangeable.
"""

from __future__ import annotations

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf import wrappers_pb2  # noqa: F401  registers google/protobuf/wrappers.proto

_F = descriptor_pb2.FieldDescriptorProto
_PACKAGE = "tensorflow.serving"


def _field(name, number, type_, label=_F.LABEL_OPTIONAL, type_name=None):
    field = _F(name=name, number=number, type=type_, label=label)
    if type_name:
        field.type_name = type_name
    return field


def _build(file_name: str, messages: dict, dependencies=()) -> None:
    pool = descriptor_pool.Default()
    try:
        pool.FindFileByName(file_name)
        return  # already registered (module reloaded)
    except KeyError:
        pass
    proto = descriptor_pb2.FileDescriptorProto(name=file_name, package=_PACKAGE, syntax="proto3")
    proto.dependency.extend(dependencies)
    for name, fields in messages.items():
        proto.message_type.add(name=name, field=fields)
    pool.Add(proto)


def _message(name: str):
    return message_factory.GetMessageClass(descriptor_pool.Default().FindMessageTypeByName(f"{_PACKAGE}.{name}"))


_INT64 = ".google.protobuf.Int64Value"

# Source: tensorflow_serving/servables/tensorflow/session_bundle_config.proto
_build(
    "gan_pkg_serving/session_bundle_config.proto",
    {
        "BatchingParameters": [
            _field("max_batch_size", 1, _F.TYPE_MESSAGE, type_name=_INT64),
            _field("batch_timeout_micros", 2, _F.TYPE_MESSAGE, type_name=_INT64),
            _field("max_enqueued_batches", 3, _F.TYPE_MESSAGE, type_name=_INT64),
            _field("num_batch_threads", 4, _F.TYPE_MESSAGE, type_name=_INT64),
            _field("thread_pool_name", 5, _F.TYPE_MESSAGE, type_name=".google.protobuf.StringValue"),
            _field("allowed_batch_sizes", 6, _F.TYPE_INT64, label=_F.LABEL_REPEATED),
            _field("pad_variable_length_inputs", 7, _F.TYPE_BOOL),
        ]
    },
    dependencies=["google/protobuf/wrappers.proto"],
)

# Source: tensorflow_serving/config/monitoring_config.proto
_build(
    "gan_pkg_serving/monitoring_config.proto",
    {
        "PrometheusConfig": [
            _field("enable", 1, _F.TYPE_BOOL),
            _field("path", 2, _F.TYPE_STRING),
        ],
        "MonitoringConfig": [
            _field("prometheus_config", 1, _F.TYPE_MESSAGE, type_name=f".{_PACKAGE}.PrometheusConfig"),
        ],
    },
)

# Source: tensorflow_serving/config/ssl_config.proto
_build(
    "gan_pkg_serving/ssl_config.proto",
    {
        "SSLConfig": [
            _field("server_key", 1, _F.TYPE_STRING),
            _field("server_cert", 2, _F.TYPE_STRING),
            _field("custom_ca", 3, _F.TYPE_STRING),
            _field("client_verify", 4, _F.TYPE_BOOL),
        ]
    },
)

BatchingParameters = _message("BatchingParameters")
PrometheusConfig = _message("PrometheusConfig")
MonitoringConfig = _message("MonitoringConfig")
SSLConfig = _message("SSLConfig")


def parse_text(path, message_class):
    """Parse a text-format config file into `message_class` (ValueError with the file name on failure)."""
    from google.protobuf import text_format

    with open(path) as f:
        text = f.read()
    try:
        return text_format.Parse(text, message_class())
    except text_format.ParseError as error:
        raise ValueError(f"{path}: not a valid {message_class.DESCRIPTOR.full_name} text proto: {error}") from None
