"""serving/*.config parse as the messages they claim; Dockerfile.serve passes only real
tensorflow_model_server flags and copies files that exist; the hand-built protos match
TF Serving's field numbers. No TensorFlow or Docker needed."""

import inspect
import re
import shlex
from pathlib import Path

import pytest
from google.protobuf import text_format

from gan_pkg import contract
from serving import protos

REPO = Path(__file__).resolve().parents[2]
SERVING = REPO / "serving"

# tensorflow_model_server's flags, copied from tensorflow_serving/model_servers/main.cc (2.20.0).
TF_SERVING_FLAGS = set(
    """port grpc_socket_path rest_api_port rest_api_num_threads rest_api_timeout_in_ms rest_api_enable_cors_support
    enable_batching allow_version_labels_for_unavailable_models batching_parameters_file
    enable_per_model_batching_parameters model_config_file model_config_file_poll_wait_seconds model_name
    model_base_path num_load_threads num_unload_threads max_num_load_retries load_retry_interval_micros
    file_system_poll_wait_seconds flush_filesystem_caches tensorflow_session_parallelism
    tensorflow_intra_op_parallelism tensorflow_inter_op_parallelism tensorflow_session_config_file
    ssl_config_file platform_config_file per_process_gpu_memory_fraction saved_model_tags grpc_channel_arguments
    grpc_max_threads enable_model_warmup num_request_iterations_for_warmup version monitoring_config_file
    remove_unused_fields_from_bundle_metagraph prefer_tflite_model num_tflite_pools
    num_tflite_interpreters_per_pool enable_signature_method_name_check xla_cpu_compilation_enabled
    xla_gpu_compilation_enabled enable_profiler thread_pool_factory_config_file mixed_precision
    skip_initialize_tpu enable_grpc_healthcheck_service enable_serialization_as_tensor_content""".split()
)
OUR_EXTRA_FLAGS = {"host", "max_batch_size", "allowed_model_roots"}  # embedded server only; documented in its --help


def _dockerfile():
    text = (REPO / "Dockerfile.serve").read_text()
    return re.sub(r"\\\n", " ", text)  # join continuation lines


def _instructions(name):
    return [line.split(None, 1)[1] for line in _dockerfile().splitlines() if line.startswith(name + " ")]


def test_models_config_is_a_model_server_config():
    from tensorflow_serving.config import model_server_config_pb2

    config = text_format.Parse((SERVING / "models.config").read_text(), model_server_config_pb2.ModelServerConfig())
    (model,) = config.model_config_list.config
    assert model.name == contract.DEFAULT_MODEL_NAME
    assert model.base_path == f"/models/{contract.DEFAULT_MODEL_NAME}"
    assert model.model_platform == "tensorflow"
    assert model.model_version_policy.WhichOneof("policy_choice") == "latest"


def test_batching_config_is_batching_parameters():
    params = text_format.Parse((SERVING / "batching.config").read_text(), protos.BatchingParameters())
    assert params.max_batch_size.value >= 1 and params.HasField("batch_timeout_micros")
    assert params.num_batch_threads.value >= 1


def test_monitoring_config_is_monitoring_config():
    config = text_format.Parse((SERVING / "monitoring.config").read_text(), protos.MonitoringConfig())
    assert config.prometheus_config.enable
    assert config.prometheus_config.path == "/monitoring/prometheus/metrics"


def test_protos_match_tf_serving_field_numbers():
    expected = {
        protos.BatchingParameters: {
            "max_batch_size": 1, "batch_timeout_micros": 2, "max_enqueued_batches": 3, "num_batch_threads": 4,
            "thread_pool_name": 5, "allowed_batch_sizes": 6, "pad_variable_length_inputs": 7,
        },
        protos.PrometheusConfig: {"enable": 1, "path": 2},
        protos.MonitoringConfig: {"prometheus_config": 1},
        protos.SSLConfig: {"server_key": 1, "server_cert": 2, "custom_ca": 3, "client_verify": 4},
    }
    for message, fields in expected.items():
        assert message.DESCRIPTOR.full_name.startswith("tensorflow.serving.")
        assert {f.name: f.number for f in message.DESCRIPTOR.fields} == fields
    assert protos.BatchingParameters.DESCRIPTOR.fields_by_name["max_batch_size"].message_type.full_name == "google.protobuf.Int64Value"
    # Wire-compatible: a serialized message round-trips.
    params = protos.BatchingParameters()
    params.max_batch_size.value = 32
    params.allowed_batch_sizes.extend([8, 32])
    assert protos.BatchingParameters.FromString(params.SerializeToString()) == params


def test_bad_config_is_reported_with_its_file(tmp_path):
    bad = tmp_path / "batching.config"
    bad.write_text("max_batch_size: 3\n")  # a wrapper message, not a scalar
    with pytest.raises(ValueError, match="batching.config"):
        protos.parse_text(bad, protos.BatchingParameters)


def test_dockerfile_from_is_pinned():
    (image,) = _instructions("FROM")
    name, _, tag = image.strip().partition(":")
    assert name == "tensorflow/serving" and re.fullmatch(r"\d+\.\d+\.\d+", tag), image


def test_dockerfile_copy_sources_exist_or_are_the_export():
    for args in _instructions("COPY"):
        *sources, _ = shlex.split(args)
        for source in sources:
            if source == f"{contract.DEFAULT_EXPORT_BASE}/{contract.DEFAULT_MODEL_NAME}":
                continue  # written by `python -m gan_pkg.fit` before `docker build`
            assert (REPO / source).exists(), source


def test_dockerfile_passes_only_real_flags_and_shipped_configs():
    text = _dockerfile()
    (entrypoint,) = _instructions("ENTRYPOINT")
    assert "tensorflow_model_server" in entrypoint
    flags = dict(re.findall(r"--([a-z_0-9]+)(?:=([^\"\s,]*))?", entrypoint))
    assert set(flags) <= TF_SERVING_FLAGS, set(flags) - TF_SERVING_FLAGS
    for needed in ("model_config_file", "enable_batching", "batching_parameters_file", "monitoring_config_file", "rest_api_port"):
        assert needed in flags
    assert flags["port"] == str(contract.GRPC_PORT) and flags["rest_api_port"] == str(contract.REST_PORT)
    copied = {Path(s).name for args in _instructions("COPY") for s in shlex.split(args)[:-1]}
    for key in ("model_config_file", "batching_parameters_file", "monitoring_config_file"):
        assert Path(flags[key]).name in copied
    assert re.search(r"EXPOSE\s+8500\s+8501", text)
    (health,) = _instructions("HEALTHCHECK")
    assert f"/v1/models/{contract.DEFAULT_MODEL_NAME}" in health and "8501" in health


def test_embedded_server_flags_are_tf_serving_flags():
    from serving import main

    source = inspect.getsource(main)
    flags = set(re.findall(r'add_argument\("--([a-z_0-9]+)"', source))
    assert flags - OUR_EXTRA_FLAGS <= TF_SERVING_FLAGS, flags - OUR_EXTRA_FLAGS - TF_SERVING_FLAGS
    assert {"port", "rest_api_port", "model_name", "model_base_path", "model_config_file", "file_system_poll_wait_seconds",
            "enable_batching", "batching_parameters_file"} <= flags
