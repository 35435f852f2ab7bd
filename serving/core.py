"""The protocol-independent server: models, version polling, warmup, batching and
Predict / GetModelMetadata / GetModelStatus, shared by the gRPC and REST front ends."""

from __future__ import annotations

import collections
import sys
import threading
import time

import grpc

from gan_pkg import contract
from serving import tensors
from serving.batching import Batcher
from serving.errors import ServingError, _invalid, as_serving_error
from serving.monitoring import UNKNOWN_MODEL, Metrics
from serving.repository import Model
from serving.servable import Servable
from serving.validation import _tf, check_input_protos, validate_inputs

# Requests are noise or seeds (a full batch of 1024 x 100 float32 is 400 KiB), so the
# receive side is capped: a 2 GiB request is an attack, not a workload. The same limit,
# named by gRPC's channel argument, caps REST bodies and the elements of one input.
MAX_REQUEST_BYTES = 64 * 2**20
MAX_RECEIVE_OPTION = "grpc.max_receive_message_length"
DEFAULT_MAX_BATCH_SIZE = 1024
PREDICT_METHOD = "tensorflow/serving/predict"


class ModelServer:
    """Everything protocol-independent: models, polling, warmup, batching, Predict."""

    def __init__(self, models: list[Model], max_batch_size=DEFAULT_MAX_BATCH_SIZE, batching_parameters=None,
                 enable_batching=False, poll_seconds=1.0, log=print, max_elements=MAX_REQUEST_BYTES):
        self.models = {m.name: m for m in models}
        self.batcher = Batcher(batching_parameters) if enable_batching else None
        self.max_batch_size = max_batch_size
        self.max_elements = max_elements
        if self.batcher is not None:
            self.max_batch_size = min(max_batch_size, self.batcher.max_batch_size)
        self.poll_seconds = poll_seconds
        self.metrics = Metrics()
        self._log = log
        self._stop = threading.Event()
        self._poller = None
        for m in models:
            m.warmup = self._warmup

    # -- lifecycle
    def load_now(self):
        for model in self.models.values():
            model.poll()

    def start_polling(self):
        def loop():
            while not self._stop.wait(self.poll_seconds):
                for model in self.models.values():
                    try:
                        model.poll()
                    except Exception as error:  # noqa: BLE001  the poller must survive a bad disk
                        self._log(f"error: polling {model.base_path}: {error}", file=sys.stderr)

        if self.poll_seconds > 0:
            self._poller = threading.Thread(target=loop, name="version-poller", daemon=True)
            self._poller.start()

    def stop(self, timeout: float = 30.0):
        """End polling and batching, waiting at most about `timeout` seconds for each."""
        self._stop.set()
        if self._poller is not None:
            self._poller.join(timeout=timeout)
        if self.batcher is not None:
            self.batcher.stop(timeout)

    def _warmup(self, servable: Servable):
        """Replay assets.extra/tf_serving_warmup_requests before the version is served."""
        path = servable.path / contract.ASSETS_EXTRA / contract.WARMUP_FILE
        if not path.is_file():
            return
        from tensorflow_serving.apis import prediction_log_pb2

        tf = _tf()
        for record in tf.data.TFRecordDataset(str(path)).as_numpy_iterator():
            log = prediction_log_pb2.PredictionLog.FromString(record)
            if log.WhichOneof("log_type") != "predict_log":
                continue  # only Predict warmup is meaningful for a generator
            request = log.predict_log.request
            signature = request.model_spec.signature_name or contract.SERVING_DEFAULT
            if signature not in servable.inputs:
                raise ValueError(f"warmup request names unknown signature '{signature}'")
            inputs = {k: tensors.to_ndarray(v) for k, v in request.inputs.items()}
            validate_inputs(servable, signature, inputs, DEFAULT_MAX_BATCH_SIZE * 1024)
            servable.run(signature, inputs)

    # -- lookups
    def model(self, name: str) -> Model:
        if name not in self.models:
            raise ServingError(
                grpc.StatusCode.NOT_FOUND, f"Servable not found for request: unknown model '{name}'; served: {sorted(self.models)}"
            )
        return self.models[name]

    def servable(self, spec) -> Servable:
        return self.model(spec.name).resolve(spec)

    @staticmethod
    def signature_of(servable: Servable, name: str) -> str:
        name = name or contract.SERVING_DEFAULT
        if name not in servable.inputs:
            raise ServingError(
                grpc.StatusCode.FAILED_PRECONDITION,
                f"Serving signature name: \"{name}\" not found in signature def; "
                f"signatures of {servable.name} version {servable.version}: {sorted(servable.inputs)}",
            )
        return name

    # -- Predict, shared by gRPC and REST
    def metered(self, model_name: str, call):
        """Run call() and count it (status, latency) under model_name (one label for every unknown name)."""
        started = time.perf_counter()
        code = grpc.StatusCode.OK
        try:
            return call()
        except Exception as error:
            code = as_serving_error(error).code
            raise
        finally:
            label = model_name if model_name in self.models else UNKNOWN_MODEL
            self.metrics.record(label, code.name, time.perf_counter() - started)

    def predict_arrays(self, spec, inputs: dict, output_filter=(), servable=None):
        """-> (servable, signature, {key: ndarray}). Raises ServingError."""
        servable = servable or self.servable(spec)
        signature = self.signature_of(servable, spec.signature_name)
        outputs_known = servable.outputs[signature]
        unknown = [k for k in output_filter if k not in outputs_known]
        if unknown:
            raise _invalid(f"output tensor alias not found in signature '{signature}': {unknown}; outputs: {outputs_known}")
        repeated = sorted(k for k, n in collections.Counter(output_filter).items() if n > 1)
        if repeated:
            raise _invalid(f"duplicate output tensor alias: {', '.join(repeated)}")
        rows = validate_inputs(servable, signature, inputs, self.max_batch_size)
        if self.batcher is not None:
            outputs = self.batcher.run(servable, signature, inputs, rows)
        else:
            outputs = servable.run(signature, inputs)
        if output_filter:
            outputs = {k: outputs[k] for k in output_filter}
        return servable, signature, outputs

    def predict(self, request):
        return self.metered(request.model_spec.name, lambda: self._predict(request))

    def _predict(self, request):
        from tensorflow_serving.apis import predict_pb2

        servable = self.servable(request.model_spec)
        signature = self.signature_of(servable, request.model_spec.signature_name)
        check_input_protos(servable, signature, request.inputs, self.max_batch_size, self.max_elements)
        inputs = {}
        for key, proto in request.inputs.items():
            try:
                inputs[key] = tensors.to_ndarray(proto)
            except Exception as error:  # noqa: BLE001
                raise _invalid(f"input '{key}' is not a valid TensorProto: {error}") from None
        servable, signature, outputs = self.predict_arrays(request.model_spec, inputs, list(request.output_filter), servable)
        response = predict_pb2.PredictResponse()
        response.model_spec.name = servable.name
        response.model_spec.version.value = servable.version
        response.model_spec.signature_name = signature
        for key, value in outputs.items():
            response.outputs[key].CopyFrom(tensors.to_proto(value))
        return response

    def metadata(self, request):
        from tensorflow_serving.apis import get_model_metadata_pb2

        fields = list(request.metadata_field)
        if not fields:
            raise _invalid("GetModelMetadataRequest must name at least one metadata_field (e.g. 'signature_def')")
        unsupported = [f for f in fields if f != "signature_def"]
        if unsupported:
            raise _invalid(f"metadata field(s) {unsupported} not supported; only 'signature_def' is")
        servable = self.servable(request.model_spec)
        signature_map = get_model_metadata_pb2.SignatureDefMap()
        for key, value in servable.signature_defs.items():
            signature_map.signature_def[key].CopyFrom(value)
        response = get_model_metadata_pb2.GetModelMetadataResponse()
        response.model_spec.name = servable.name
        response.model_spec.version.value = servable.version
        response.metadata["signature_def"].Pack(signature_map)
        return response

    def status(self, request):
        from tensorflow_serving.apis import get_model_status_pb2

        model = self.model(request.model_spec.name)
        states = dict(model.states)
        spec = request.model_spec
        if spec.HasField("version") or spec.version_label:
            version = spec.version.value if spec.HasField("version") else model.version_for_label(spec.version_label)
            if version not in states:
                raise ServingError(grpc.StatusCode.NOT_FOUND, f"Could not find version {version} of model '{model.name}'")
            states = {version: states[version]}
        elif not states:
            raise ServingError(grpc.StatusCode.NOT_FOUND, f"Could not find any versions of model '{model.name}' under {model.base_path}")
        response = get_model_status_pb2.GetModelStatusResponse()
        for version in sorted(states):
            state, code, message = states[version]
            entry = response.model_version_status.add(version=version)
            entry.state = get_model_status_pb2.ModelVersionStatus.State.Value(state)
            entry.status.error_code = code.value[0]
            entry.status.error_message = message
        return response
