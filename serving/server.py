"""Embedded TF-Serving-compatible model server (gRPC + REST) for gan_pkg exports.

    python serving/server.py --model_base_path export/gan

Speaks TF Serving's own API (PredictionService.Predict / GetModelMetadata,
ModelService.GetModelStatus, REST /v1/models/...) with tensorflow_model_server's
flag names, so a client written for one works unchanged against the other.
For machines without Docker; the Docker image (Dockerfile.serve) runs the real
tensorflow_model_server.

Behaviour worth knowing:
- each version is loaded and run the way tensorflow_model_server does it
  (gan_pkg.session_loader: MetaGraph import and restore op into one Session per
  version, signatures run by the tensor names in their SignatureDefs), so a version
  that TF Serving cannot run fails here too, at load or warmup, and is not served.
- serves the highest integer version under each base path (or what the model's
  version policy in --model_config_file asks for); a version appearing on disk is
  loaded, warmed up (assets.extra/tf_serving_warmup_requests) and then served
  without a restart; one deleted from disk is unloaded. Hidden (.tmp-*) folders
  and folders without saved_model.pb are never loaded.
- a request with an empty batch (dimension 0 of size 0) is rejected with
  INVALID_ARGUMENT: there is nothing to generate, and it cannot be batched.
- requests larger than --max_batch_size (and, with --enable_batching, larger
  than the batching max_batch_size) get RESOURCE_EXHAUSTED.
- non-finite float inputs get INVALID_ARGUMENT (a generator fed NaN returns NaN).
- binds 127.0.0.1 unless --host says otherwise (TF Serving binds 0.0.0.0).
- models load only from inside the allowed roots: by default the --model_base_path
  folder itself, or the folder holding --model_config_file (config entries may not
  point outside it, by `..` or by a symlink); --allowed_model_roots replaces that
  list. A version folder that is a symlink leading outside the roots is ignored, and a
  base path that does not exist is an error at start (export a model first).
- a version whose load or warmup fails is not served, and not retried until its files
  change; the next highest loadable version is served meanwhile.
- a gRPC request over --grpc_channel_arguments' grpc.max_receive_message_length
  (default here 64 MiB; TF Serving's is 2 GiB) gets RESOURCE_EXHAUSTED, and so does a
  REST body over the same size (HTTP 429); bytes that do not parse as the request
  message get INVALID_ARGUMENT; a REST client that stops sending mid-body is cut off
  after 30 s (HTTP 400).
- --port 0 picks a free gRPC port (the ready line names it); --rest_api_port 0 disables REST.
- --monitoring_config_file (MonitoringConfig, e.g. serving/monitoring.config) adds Prometheus
  request counts and latencies on the REST port; --ssl_config_file (SSLConfig) serves gRPC over TLS
  (server_key and server_cert required; client_verify needs custom_ca). As in TF Serving,
  REST stays plain HTTP: with TLS, keep REST on 127.0.0.1 or disable it (--rest_api_port 0).
- SIGTERM/SIGINT: stop accepting, finish in-flight requests (queued batches run at once), exit 0.
"""

from __future__ import annotations

import argparse
import base64
import collections
import json
import os
import re
import signal
import sys
import threading
import time
from concurrent import futures
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

_HERE = Path(__file__).resolve().parent
if str(_HERE) not in sys.path:
    sys.path.insert(0, str(_HERE))
if str(_HERE.parent) not in sys.path:
    sys.path.insert(0, str(_HERE.parent))

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import grpc  # noqa: E402
import numpy as np  # noqa: E402

from gan_pkg import contract  # noqa: E402
from gan_pkg.cli import ArgumentParser  # noqa: E402

# TF Serving sets both limits to kint32max; image batches easily pass gRPC's 4 MiB default.
# Requests are noise or seeds (a full batch of 1024 x 100 float32 is 400 KiB), so the
# receive side is capped lower: a 2 GiB request is an attack, not a workload.
MAX_MESSAGE_BYTES = 2**31 - 1
MAX_REQUEST_BYTES = 64 * 2**20
MAX_RECEIVE_OPTION = "grpc.max_receive_message_length"
GRPC_OPTIONS = [
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    (MAX_RECEIVE_OPTION, MAX_REQUEST_BYTES),
    # gRPC's Linux default lets a second server bind the same port silently.
    ("grpc.so_reuseport", 0),
]
DEFAULT_MAX_BATCH_SIZE = 1024
REST_BODY_TIMEOUT_S = 30.0  # TF Serving's --rest_api_timeout_in_ms default
PREDICT_METHOD = "tensorflow/serving/predict"

_STATE_AVAILABLE = "AVAILABLE"


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


def _tf():
    import tensorflow as tf

    return tf


# --------------------------------------------------------------------------- servables


class Servable:
    """One loaded version, loaded and run the way TF Serving does (gan_pkg.session_loader):
    MetaGraph import and restore into its own Session, signatures run by tensor name.
    So a version TF Serving cannot run fails here too, at load or warmup."""

    def __init__(self, name: str, version: int, path: Path):
        from gan_pkg.session_loader import SessionModel

        self.name, self.version, self.path = name, version, Path(path)
        session = SessionModel(path)
        self.signature_defs = session.signature_defs  # exactly what TF Serving reports
        self.inputs = session.inputs  # signature -> {key: (tf.DType, shape with None)}
        self.outputs = session.outputs  # signature -> [keys]
        self.run = session.run  # {key: ndarray} already validated -> {key: ndarray}


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


def validate_inputs(servable: Servable, signature: str, inputs: dict, max_batch_size: int) -> int:
    """Check keys, dtypes, shapes, finiteness and batch size; return the batch size."""
    specs = servable.inputs[signature]
    _check_keys(signature, specs, inputs)
    batch = None
    for key, array in inputs.items():
        dtype, shape = specs[key]
        if not _dtype_ok(dtype, array):
            got = "string" if array.dtype == object or array.dtype.kind in "SU" else array.dtype.name
            raise _invalid(f"input '{key}' of signature '{signature}' expects {dtype.name}, got {got}")
        if shape is not None:
            if array.ndim != len(shape):
                raise _invalid(
                    f"input '{key}' of signature '{signature}' expects rank {len(shape)} "
                    f"(shape {_shape_text(shape)}), got shape {list(array.shape)}"
                )
            for i, (want, got) in enumerate(zip(shape, array.shape)):
                if want is not None and want != got:
                    raise _invalid(
                        f"input '{key}' of signature '{signature}' expects shape {_shape_text(shape)}, "
                        f"got {list(array.shape)} (dimension {i})"
                    )
        if array.ndim == 0:
            raise _invalid(f"input '{key}' must have a batch dimension (dimension 0)")
        if batch is None:
            batch = array.shape[0]
        elif array.shape[0] != batch:
            raise _invalid(f"inputs disagree on the batch size (dimension 0): {batch} vs {array.shape[0]} for '{key}'")
        if dtype.is_floating and not np.isfinite(array).all():
            raise _invalid(f"input '{key}' contains NaN or infinite values; send finite numbers")
    if batch == 0:
        raise _invalid("empty batch: dimension 0 of the inputs is 0; send at least one row")
    if batch > max_batch_size:
        raise ServingError(
            grpc.StatusCode.RESOURCE_EXHAUSTED,
            f"batch of {batch} rows is larger than the maximum batch size {max_batch_size}; split the request",
        )
    return batch


def check_input_protos(servable: Servable, signature: str, protos: dict, max_batch_size: int, max_elements: int) -> None:
    """Keys, dtypes and shapes from the TensorProtos' headers, before any decoding.

    make_ndarray fills a shape from a single value (or zeros), so a 20-byte request
    claiming [10**9, 100] would allocate 400 GB: nothing is materialized until the
    shape agrees with the signature and the batch limit.
    """
    tf = _tf()
    specs = servable.inputs[signature]
    _check_keys(signature, specs, protos)
    for key, proto in protos.items():
        dtype, shape = specs[key]
        if proto.dtype != dtype.as_datatype_enum:
            try:
                got = tf.dtypes.as_dtype(proto.dtype).name
            except (TypeError, ValueError):
                got = f"unknown DataType {proto.dtype}"
            raise _invalid(f"input '{key}' of signature '{signature}' expects {dtype.name}, got {got}")
        if proto.tensor_shape.unknown_rank:
            raise _invalid(f"input '{key}' must have a known shape")
        dims = [d.size for d in proto.tensor_shape.dim]
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
        if dims[0] > max_batch_size:
            raise ServingError(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"batch of {dims[0]} rows is larger than the maximum batch size {max_batch_size}; split the request",
            )
        if int(np.prod(dims, dtype=np.float64)) > max_elements:
            raise ServingError(grpc.StatusCode.RESOURCE_EXHAUSTED, f"input '{key}' of shape {dims} is too large")


def _shape_text(shape):
    return "[" + ", ".join("?" if d is None else str(d) for d in shape) + "]"


# --------------------------------------------------------------------------- batching


class _Task:
    __slots__ = ("servable", "signature", "inputs", "rows", "enqueued", "done", "outputs", "error")

    def __init__(self, servable, signature, inputs, rows):
        self.servable, self.signature, self.inputs, self.rows = servable, signature, inputs, rows
        self.enqueued = time.monotonic()
        self.done = threading.Event()
        self.outputs = self.error = None


class Batcher:
    """Merges concurrent requests for one model/version/signature along dimension 0.

    A batch runs when it holds max_batch_size rows or its oldest request has
    waited batch_timeout_micros, like TF Serving's shared batch scheduler.
    """

    def __init__(self, params):
        def get(name, default):
            return getattr(params, name).value if params is not None and params.HasField(name) else default

        self.max_batch_size = int(get("max_batch_size", 1000))
        self.timeout = get("batch_timeout_micros", 0) / 1e6
        self.max_enqueued_batches = int(get("max_enqueued_batches", 10))
        threads = int(get("num_batch_threads", os.cpu_count() or 1))
        self.allowed = sorted(params.allowed_batch_sizes) if params is not None else []
        if self.allowed and self.allowed[-1] != self.max_batch_size:
            raise ValueError("batching parameters: the last allowed_batch_sizes entry must equal max_batch_size")
        self._queues: dict[tuple, collections.deque] = {}
        self._forming: set = set()
        self._cond = threading.Condition()
        self._stopping = False
        self._flushing = False  # shutting down: run batches at once, but still take in-flight requests
        self.batch_sizes = collections.deque(maxlen=1000)  # rows per executed batch, for tests and stats
        self._threads = [threading.Thread(target=self._work, name=f"batch-{i}", daemon=True) for i in range(max(1, threads))]
        for t in self._threads:
            t.start()

    def run(self, servable, signature, inputs, rows):
        task = _Task(servable, signature, inputs, rows)
        key = (servable.name, servable.version, signature)
        with self._cond:
            if self._stopping:
                raise ServingError(grpc.StatusCode.UNAVAILABLE, "the server is shutting down")
            queue = self._queues.setdefault(key, collections.deque())
            if sum(t.rows for t in queue) + rows > self.max_enqueued_batches * self.max_batch_size:
                raise ServingError(grpc.StatusCode.UNAVAILABLE, "the batch scheduling queue is full; retry later")
            queue.append(task)
            self._cond.notify_all()
        task.done.wait()
        if task.error is not None:
            raise task.error
        return task.outputs

    def _take(self):
        """Under the lock: wait for a batch to form and pop its tasks (None: stopped and drained)."""
        while True:
            ready = [(q[0].enqueued, k) for k, q in self._queues.items() if q and k not in self._forming]
            if not ready:
                if self._stopping:
                    return None
                self._cond.wait()
                continue
            _, key = min(ready)
            queue = self._queues[key]
            self._forming.add(key)
            try:
                deadline = queue[0].enqueued + self.timeout
                while not (self._stopping or self._flushing) and sum(t.rows for t in queue) < self.max_batch_size:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        break
                    self._cond.wait(left)
                tasks, total = [], 0
                while queue and (not tasks or total + queue[0].rows <= self.max_batch_size):
                    total += queue[0].rows
                    tasks.append(queue.popleft())
                if not queue:
                    del self._queues[key]
            finally:
                self._forming.discard(key)
                self._cond.notify_all()
            if tasks:
                return tasks

    def _work(self):
        while True:
            with self._cond:
                tasks = self._take()
            if tasks is None:
                return
            self._execute(tasks)

    def _execute(self, tasks):
        try:
            total = sum(t.rows for t in tasks)
            target = next((s for s in self.allowed if s >= total), total)
            merged = {}
            for key in tasks[0].inputs:
                parts = [t.inputs[key] for t in tasks]
                if target > total:  # pad to an allowed size with copies of the first row
                    parts.append(np.repeat(parts[0][:1], target - total, axis=0))
                merged[key] = parts[0] if len(parts) == 1 else np.concatenate(parts, axis=0)
            outputs = tasks[0].servable.run(tasks[0].signature, merged)
            self.batch_sizes.append(total)
            start = 0
            for t in tasks:
                t.outputs = {k: v[start : start + t.rows] for k, v in outputs.items()}
                start += t.rows
        except Exception as error:  # noqa: BLE001  every waiting request gets the error, none hangs
            failure = as_serving_error(error)
            for t in tasks:
                t.error = failure
        finally:
            for t in tasks:
                t.done.set()

    def flush(self):
        """From now on run each batch as soon as a worker is free: nothing waits for company during a drain."""
        with self._cond:
            self._flushing = True
            self._cond.notify_all()

    def stop(self):
        """Run what is queued at once (no more waiting for company), then end the workers."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        for t in self._threads:
            t.join(timeout=30)


# --------------------------------------------------------------------------- monitoring


class Metrics:
    """Prometheus text for --monitoring_config_file, named like TF Serving's own series."""

    BUCKETS_US = (1e3, 2.5e3, 5e3, 1e4, 2.5e4, 5e4, 1e5, 2.5e5, 5e5, 1e6, 2.5e6)

    def __init__(self):
        self._lock = threading.Lock()
        self.counts = collections.Counter()  # (model, status) -> requests
        self.latency = {}  # model -> [bucket counts..., sum_us, count]

    def record(self, model: str, status: str, seconds: float):
        micros = seconds * 1e6
        with self._lock:
            self.counts[(model, status)] += 1
            row = self.latency.setdefault(model, [0] * len(self.BUCKETS_US) + [0.0, 0])
            for i, bound in enumerate(self.BUCKETS_US):
                if micros <= bound:
                    row[i] += 1
            row[-2] += micros
            row[-1] += 1

    def text(self) -> str:
        with self._lock:
            lines = ["# TYPE :tensorflow:serving:request_count counter"]
            for (model, status), n in sorted(self.counts.items()):
                lines.append(f':tensorflow:serving:request_count{{model_name="{model}",status="{status}"}} {n}')
            lines.append("# TYPE :tensorflow:serving:request_latency histogram")
            for model, row in sorted(self.latency.items()):
                for bound, n in zip(self.BUCKETS_US, row):
                    lines.append(f':tensorflow:serving:request_latency_bucket{{model_name="{model}",API="predict",le="{bound:g}"}} {n}')
                lines.append(f':tensorflow:serving:request_latency_bucket{{model_name="{model}",API="predict",le="+Inf"}} {row[-1]}')
                lines.append(f':tensorflow:serving:request_latency_sum{{model_name="{model}",API="predict"}} {row[-2]:.0f}')
                lines.append(f':tensorflow:serving:request_latency_count{{model_name="{model}",API="predict"}} {row[-1]}')
        return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- models


class Model:
    """One model name: its base path, version policy and loaded versions."""

    def __init__(self, name, base_path, policy=("latest", 1), labels=None, log=print, roots=None):
        self.name, self.base_path, self.policy = name, Path(base_path), policy
        self.roots = roots  # None: anywhere (in-process use); else version folders must resolve inside
        self._refused: set = set()
        self.labels = dict(labels or {})
        self.servables: dict[int, Servable] = {}
        self.states: dict[int, tuple[str, grpc.StatusCode, str]] = {}
        self._failed: dict[int, tuple] = {}  # version -> fingerprint when its load failed
        self._lock = threading.Lock()
        self._log = log
        self.warmup = None  # set by ModelServer: callable(servable) that replays warmup records

    def on_disk(self) -> dict[int, Path]:
        """Complete version folders: integer names, not hidden, saved_model.pb present."""
        found = {}
        try:
            entries = list(os.scandir(self.base_path))
        except OSError:
            return found
        for entry in entries:
            if entry.name.isdigit() and entry.is_dir() and (Path(entry.path) / "saved_model.pb").is_file():
                if self.roots is not None and not _inside(Path(entry.path), self.roots):
                    if entry.path not in self._refused:  # say it once, not every poll
                        self._refused.add(entry.path)
                        self._log(f"error: {self.name}: ignoring {entry.path}: it resolves to {os.path.realpath(entry.path)}, "
                                  f"outside the allowed model roots", file=sys.stderr)
                    continue
                found[int(entry.name)] = Path(entry.path)
        return found

    def aspired(self, available: dict) -> set:
        kind = self.policy[0]
        if kind == "all":
            return set(available)
        if kind == "specific":
            return set(self.policy[1]) & set(available)
        return set(sorted(available)[-max(1, self.policy[1]) :])

    @staticmethod
    def _fingerprint(path: Path):
        """Size and mtime of every file a load reads: a failed load is retried once any of them changes,
        so a version a non-atomic writer is still copying gets loaded when the copy completes."""
        stamps = []
        for part in ("saved_model.pb", "variables", contract.ASSETS_EXTRA):
            root = path / part
            try:
                if root.is_file():
                    stat = root.stat()
                    stamps.append((part, stat.st_size, stat.st_mtime_ns))
                    continue
                for folder, _, files in os.walk(root):
                    for name in sorted(files):
                        stat = os.stat(os.path.join(folder, name))
                        stamps.append((os.path.join(folder, name), stat.st_size, stat.st_mtime_ns))
            except OSError:
                stamps.append((part, None))
        return tuple(stamps)

    def poll(self):
        """Load aspired versions (new before old goes, so one is always served), unload the rest.

        Versions whose load failed (and whose files have not changed since) are not aspired:
        a broken newest version leaves the next highest one served, not nothing.
        """
        disk = self.on_disk()
        for version in [v for v in self._failed if v not in disk]:
            del self._failed[version]
        failed_now = set()  # tried once per poll: a folder still being written is retried next poll, not in a loop
        while True:
            loadable = {
                v: p for v, p in disk.items()
                if v in self.servables or (v not in failed_now and self._failed.get(v) != self._fingerprint(p))
            }
            aspired = self.aspired(loadable)
            missing = sorted(aspired - set(self.servables), reverse=True)
            failed_now.update(v for v in missing if not self._load(v, disk[v]))
            if not failed_now & set(missing):
                break  # every aspired version is served; otherwise aspire again without the failed ones
        for version in sorted(set(self.servables) - aspired):
            # keep an old version until a newer one is actually serving
            if version in disk and not (set(self.servables) & aspired):
                continue
            self._unload(version)

    def _load(self, version, path) -> bool:
        self.states[version] = ("LOADING", grpc.StatusCode.OK, "")
        try:
            servable = Servable(self.name, version, path)
            if self.warmup is not None:
                self.warmup(servable)
        except Exception as error:  # noqa: BLE001  a bad export must not take the server down
            from gan_pkg.session_loader import summary

            self._failed[version] = self._fingerprint(path)
            message = f"failed to load {path}: {summary(error)}"
            self.states[version] = ("END", grpc.StatusCode.UNKNOWN, message)
            self._log(f"error: {self.name} version {version}: {message}", file=sys.stderr)
            return False
        with self._lock:
            self.servables[version] = servable
        self.states[version] = (_STATE_AVAILABLE, grpc.StatusCode.OK, "")
        self._log(f"loaded {self.name} version {version} from {path}")
        return True

    def _unload(self, version):
        self.states[version] = ("UNLOADING", grpc.StatusCode.OK, "")
        with self._lock:
            self.servables.pop(version, None)
        self.states[version] = ("END", grpc.StatusCode.OK, "")
        self._log(f"unloaded {self.name} version {version}")

    def resolve(self, spec) -> Servable:
        with self._lock:
            servables = dict(self.servables)
        if spec.HasField("version"):
            version = spec.version.value
            request = f"Specific({self.name}, {version})"
        elif spec.version_label:
            if spec.version_label not in self.labels:
                raise ServingError(grpc.StatusCode.NOT_FOUND, f"unknown version label '{spec.version_label}' for model '{self.name}'")
            version = self.labels[spec.version_label]
            request = f"Specific({self.name}, {version}) (label '{spec.version_label}')"
        else:
            if not servables:
                raise ServingError(
                    grpc.StatusCode.NOT_FOUND,
                    f"Servable not found for request: Latest({self.name}): no version of '{self.name}' is loaded "
                    f"(looking under {self.base_path})",
                )
            return servables[max(servables)]
        if version not in servables:
            served = sorted(servables) or "none"
            raise ServingError(
                grpc.StatusCode.NOT_FOUND, f"Servable not found for request: {request}; versions served: {served}"
            )
        return servables[version]


def _policy_from_config(config) -> tuple:
    which = config.model_version_policy.WhichOneof("policy_choice")
    if which == "all":
        return ("all",)
    if which == "specific":
        return ("specific", tuple(config.model_version_policy.specific.versions))
    if which == "latest":
        return ("latest", config.model_version_policy.latest.num_versions or 1)
    return ("latest", 1)


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

    def stop(self):
        self._stop.set()
        if self._poller is not None:
            self._poller.join(timeout=30)
        if self.batcher is not None:
            self.batcher.stop()

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
            inputs = {k: tf.make_ndarray(v) for k, v in request.inputs.items()}
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
        """Run call() and count it (status, latency) under model_name."""
        started = time.perf_counter()
        code = grpc.StatusCode.OK
        try:
            return call()
        except Exception as error:
            code = as_serving_error(error).code
            raise
        finally:
            self.metrics.record(model_name, code.name, time.perf_counter() - started)

    def predict_arrays(self, spec, inputs: dict, output_filter=(), servable=None):
        """-> (servable, signature, {key: ndarray}). Raises ServingError."""
        servable = servable or self.servable(spec)
        signature = self.signature_of(servable, spec.signature_name)
        outputs_known = servable.outputs[signature]
        unknown = [k for k in output_filter if k not in outputs_known]
        if unknown:
            raise _invalid(f"output tensor alias not found in signature '{signature}': {unknown}; outputs: {outputs_known}")
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

        tf = _tf()
        servable = self.servable(request.model_spec)
        signature = self.signature_of(servable, request.model_spec.signature_name)
        check_input_protos(servable, signature, request.inputs, self.max_batch_size, self.max_elements)
        inputs = {}
        for key, proto in request.inputs.items():
            try:
                inputs[key] = tf.make_ndarray(proto)
            except Exception as error:  # noqa: BLE001
                raise _invalid(f"input '{key}' is not a valid TensorProto: {error}") from None
        servable, signature, outputs = self.predict_arrays(request.model_spec, inputs, list(request.output_filter), servable)
        response = predict_pb2.PredictResponse()
        response.model_spec.name = servable.name
        response.model_spec.version.value = servable.version
        response.model_spec.signature_name = signature
        for key, value in outputs.items():
            response.outputs[key].CopyFrom(tf.make_tensor_proto(value))
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
            version = spec.version.value if spec.HasField("version") else model.labels.get(spec.version_label)
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


# --------------------------------------------------------------------------- gRPC


def as_serving_error(error: Exception) -> ServingError:
    """Any exception -> a status: ours as is, TensorFlow's by their (gRPC-numbered) code, the rest INTERNAL."""
    if isinstance(error, ServingError):
        return error
    tf = sys.modules.get("tensorflow")
    if tf is not None and isinstance(error, tf.errors.OpError):
        code = next((c for c in grpc.StatusCode if c.value[0] == error.error_code), grpc.StatusCode.INTERNAL)
        return ServingError(code, error.message.strip().splitlines()[0] if error.message else type(error).__name__)
    return ServingError(grpc.StatusCode.INTERNAL, f"{type(error).__name__}: {error}")


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


# --------------------------------------------------------------------------- REST

_REST_PATH = re.compile(
    r"^/v1/models/(?P<name>[^/:]+)(?:/versions/(?P<version>\d+)|/labels/(?P<label>[^/:]+))?"
    r"(?P<suffix>/metadata|:predict)?/?$"
)


def _spec(name, version=None, label=None, signature=""):
    from tensorflow_serving.apis import model_pb2

    spec = model_pb2.ModelSpec(name=name, signature_name=signature)
    if version is not None:
        if int(version) >= 2**63:
            raise _invalid(f"version {version} is not a 64-bit integer")
        spec.version.value = int(version)
    elif label:
        spec.version_label = label
    return spec


def _json_input(value, dtype, key):
    """A JSON value -> ndarray of the signature's dtype ({"b64": ...} for strings)."""
    tf = _tf()
    if dtype == tf.string:
        def decode(v):
            if isinstance(v, dict) and set(v) == {"b64"}:
                return base64.b64decode(v["b64"])
            if isinstance(v, str):
                return v.encode()
            if isinstance(v, list):
                return [decode(x) for x in v]
            raise _invalid(f"input '{key}' expects strings or {{\"b64\": ...}} objects")

        return np.array(decode(value), dtype=object)
    try:
        array = np.asarray(value)
    except ValueError as error:
        raise _invalid(f"input '{key}' is not a rectangular array: {error}") from None
    kind = array.dtype.kind
    if array.dtype == object or kind in "SUb" or (dtype.is_integer and kind == "f") or not (dtype.is_floating or dtype.is_integer):
        described = "non-rectangular or mixed values" if array.dtype == object else f"{array.dtype.name} values"
        raise _invalid(f"input '{key}' expects {dtype.name}, got {described}")
    return array.astype(dtype.as_numpy_dtype)


def _json_output(array: np.ndarray):
    if array.dtype == object or array.dtype.kind == "S":
        flat = [{"b64": base64.b64encode(bytes(v)).decode("ascii")} for v in array.reshape(-1)]
        return np.array(flat, dtype=object).reshape(array.shape).tolist()
    return array.tolist()


def rest_predict(core: ModelServer, spec, body: dict) -> dict:
    """TF Serving's REST predict: row ("instances") or columnar ("inputs") format."""
    if not isinstance(body, dict):
        raise _invalid("request body must be a JSON object with 'instances' or 'inputs'")
    signature_name = body.get("signature_name") or ""
    if not isinstance(signature_name, str):
        raise _invalid("'signature_name' must be a string")
    spec.signature_name = signature_name
    if ("instances" in body) == ("inputs" in body):
        raise _invalid("request body must have exactly one of 'instances' (row format) or 'inputs' (columnar format)")
    servable = core.servable(spec)
    signature = core.signature_of(servable, spec.signature_name)
    specs = servable.inputs[signature]
    row_format = "instances" in body
    payload = body["instances"] if row_format else body["inputs"]
    if row_format:
        if not isinstance(payload, list):
            raise _invalid("'instances' must be a list of rows")
        if payload and all(isinstance(r, dict) and "b64" not in r for r in payload):
            keys = set(payload[0])
            if any(set(r) != keys for r in payload):
                raise _invalid("every instance must name the same inputs")
            raw = {k: [r[k] for r in payload] for k in keys}
        elif len(specs) == 1:
            raw = {next(iter(specs)): payload}
        else:
            raise _invalid(f"signature '{signature}' has several inputs {sorted(specs)}: send each instance as an object")
    else:
        if isinstance(payload, dict) and not (set(payload) == {"b64"}):
            raw = payload
        elif len(specs) == 1:
            raw = {next(iter(specs)): payload}
        else:
            raise _invalid(f"signature '{signature}' has several inputs {sorted(specs)}: 'inputs' must be an object")
    inputs = {}
    for key, value in raw.items():
        if key not in specs:
            raise _invalid(f"unknown input '{key}' for signature '{signature}'; inputs: {sorted(specs)}")
        inputs[key] = _json_input(value, specs[key][0], key)
    spec.version.value = servable.version  # the exact version resolved above
    servable, signature, outputs = core.predict_arrays(spec, inputs)
    if row_format:
        if len(outputs) == 1:
            return {"predictions": _json_output(next(iter(outputs.values())))}
        columns = {k: _json_output(v) for k, v in outputs.items()}
        rows = len(next(iter(columns.values())))
        return {"predictions": [{k: columns[k][i] for k in columns} for i in range(rows)]}
    if len(outputs) == 1:
        return {"outputs": _json_output(next(iter(outputs.values())))}
    return {"outputs": {k: _json_output(v) for k, v in outputs.items()}}


def _status_json(response) -> dict:
    from tensorflow_serving.apis import get_model_status_pb2

    return {
        "model_version_status": [
            {
                "version": str(s.version),
                "state": get_model_status_pb2.ModelVersionStatus.State.Name(s.state),
                "status": {"error_code": _code_name(s.status.error_code), "error_message": s.status.error_message},
            }
            for s in response.model_version_status
        ]
    }


def _code_name(value: int) -> str:
    for code in grpc.StatusCode:
        if code.value[0] == value:
            return code.name
    return str(value)


def _metadata_json(response) -> dict:
    from google.protobuf import json_format
    from tensorflow_serving.apis import get_model_metadata_pb2

    signature_map = get_model_metadata_pb2.SignatureDefMap()
    response.metadata["signature_def"].Unpack(signature_map)
    return {
        "model_spec": {"name": response.model_spec.name, "signature_name": "", "version": str(response.model_spec.version.value)},
        "metadata": {"signature_def": json_format.MessageToDict(signature_map, preserving_proto_field_name=True)},
    }


def build_rest_server(core: ModelServer, host: str, port: int, metrics_path: str | None = None, max_body_bytes: int = MAX_REQUEST_BYTES):
    from tensorflow_serving.apis import get_model_metadata_pb2, get_model_status_pb2

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "gan_pkg-serving"
        # Headers and body go out in two sends; with Nagle on, the body waits
        # ~40 ms for the client's delayed ACK (measured: batch-1 p50 48 -> 3.5 ms).
        disable_nagle_algorithm = True

        def log_message(self, *args):  # quiet: one line per request is noise at load
            pass

        def _send(self, code: int, payload: dict):
            body = json.dumps(payload).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            if self.close_connection:
                self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(body)

        def _route(self, method):
            try:
                if metrics_path and method == "GET" and self.path.split("?", 1)[0] == metrics_path:
                    body = core.metrics.text().encode()
                    self.send_response(200)
                    self.send_header("Content-Type", "text/plain; version=0.0.4")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                    return
                match = _REST_PATH.match(self.path.split("?", 1)[0])
                if match is None:
                    raise ServingError(grpc.StatusCode.NOT_FOUND, f"Malformed request: {method} {self.path}")
                suffix = match["suffix"] or ""
                spec = _spec(match["name"], match["version"], match["label"])
                if method == "GET" and suffix == "":
                    request = get_model_status_pb2.GetModelStatusRequest(model_spec=spec)
                    return self._send(200, _status_json(core.status(request)))
                if method == "GET" and suffix == "/metadata":
                    request = get_model_metadata_pb2.GetModelMetadataRequest(model_spec=spec, metadata_field=["signature_def"])
                    return self._send(200, _metadata_json(core.metadata(request)))
                if method == "POST" and suffix == ":predict":
                    raw = self._body()
                    try:
                        body = json.loads(raw)
                    except (json.JSONDecodeError, UnicodeDecodeError) as error:
                        raise _invalid(f"JSON parse error: {error}") from None
                    except RecursionError:
                        raise _invalid("JSON parse error: nested too deeply") from None
                    return self._send(200, core.metered(spec.name, lambda: rest_predict(core, spec, body)))
                raise ServingError(grpc.StatusCode.NOT_FOUND, f"Malformed request: {method} {self.path}")
            except (BrokenPipeError, ConnectionResetError):
                pass
            except Exception as error:  # noqa: BLE001  never crash on a request
                failure = as_serving_error(error)
                self._send(HTTP_STATUS.get(failure.code, 500), {"error": failure.message})

        def _body(self) -> bytes:
            """The request body, refused unread (and the connection closed) when its size is unknown or too large."""
            header = self.headers.get("Content-Length")
            if header is None:
                if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
                    self.close_connection = True
                    raise _invalid("chunked request bodies are not supported; send a Content-Length")
                return b""
            try:
                length = int(header)
                if length < 0:
                    raise ValueError
            except ValueError:
                self.close_connection = True
                raise _invalid(f"Content-Length '{header}' is not a non-negative integer") from None
            if length > max_body_bytes:
                self.close_connection = True
                raise ServingError(
                    grpc.StatusCode.RESOURCE_EXHAUSTED,
                    f"request body of {length} bytes is larger than the limit of {max_body_bytes} "
                    f"(--grpc_channel_arguments={MAX_RECEIVE_OPTION}=...)",
                )
            # A client that stops sending mid-body must not hold a handler thread forever.
            self.connection.settimeout(REST_BODY_TIMEOUT_S)
            try:
                return self.rfile.read(length)
            except TimeoutError:
                self.close_connection = True
                raise _invalid(f"request body not received within {REST_BODY_TIMEOUT_S:g} s ({length} bytes announced)") from None
            finally:
                self.connection.settimeout(None)

        def _tracked(self, method):
            with self.server.in_flight_lock:
                self.server.in_flight += 1
            try:
                self._route(method)
            finally:
                with self.server.in_flight_lock:
                    self.server.in_flight -= 1

        def do_GET(self):
            self._tracked("GET")

        def do_POST(self):
            self._tracked("POST")

    class Server(ThreadingHTTPServer):
        # Idle keep-alive connections must not hold shutdown: handler threads are daemons,
        # and stop() waits for `in_flight` requests (not connections) to finish instead.
        daemon_threads = True
        allow_reuse_address = True
        block_on_close = False
        in_flight = 0
        in_flight_lock = threading.Lock()

        def drain(self, timeout: float):
            deadline = time.monotonic() + timeout
            while self.in_flight and time.monotonic() < deadline:
                time.sleep(0.02)

    return Server((host, port), Handler)


# --------------------------------------------------------------------------- CLI


def _bool(text):
    if isinstance(text, bool):
        return text
    if text.lower() in ("1", "true", "yes", "on"):
        return True
    if text.lower() in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got '{text}'")


def parse_args(argv=None):
    p = ArgumentParser(
        description=__doc__.splitlines()[0],
        epilog="Security: binds 127.0.0.1 unless --host says otherwise; loads models only from inside "
        "--allowed_model_roots (default: the --model_base_path folder, or the folder holding "
        "--model_config_file); requests over grpc.max_receive_message_length (default 64 MiB) or "
        "--max_batch_size rows are refused with RESOURCE_EXHAUSTED.",
    )
    p.add_argument("--port", type=int, default=contract.GRPC_PORT, help="gRPC port (0: pick a free one)")
    p.add_argument("--rest_api_port", type=int, default=contract.REST_PORT, help="REST port; 0 disables REST")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (TF Serving binds 0.0.0.0)")
    p.add_argument("--model_name", default=contract.DEFAULT_MODEL_NAME)
    p.add_argument("--model_base_path", help="folder holding integer version subfolders, e.g. export/gan")
    p.add_argument("--model_config_file", help="ModelServerConfig text proto; serves every model it lists")
    p.add_argument("--file_system_poll_wait_seconds", type=float, default=1.0, help="0 or less: never look for new versions")
    p.add_argument("--enable_batching", type=_bool, nargs="?", const=True, default=False)
    p.add_argument("--batching_parameters_file", help="BatchingParameters text proto")
    p.add_argument("--max_batch_size", type=int, default=DEFAULT_MAX_BATCH_SIZE, help="larger requests get RESOURCE_EXHAUSTED")
    p.add_argument("--ssl_config_file", help="SSLConfig text proto (PEM contents inline, as TF Serving reads it)")
    p.add_argument("--monitoring_config_file", help="MonitoringConfig text proto; Prometheus metrics on the REST port")
    p.add_argument("--grpc_channel_arguments",
        help="comma-separated gRPC server arguments, as TF Serving reads them, e.g. "
        f"{MAX_RECEIVE_OPTION}=1048576 (default here {MAX_REQUEST_BYTES}; also caps REST bodies)",
    )
    p.add_argument("--allowed_model_roots",
        help="comma-separated folders that model base paths must lie inside (after resolving '..' and symlinks); "
        "default: the --model_base_path folder, or the folder holding --model_config_file. Not a TF Serving flag.",
    )
    args = p.parse_args(argv)
    if not args.model_base_path and not args.model_config_file:
        p.error("give --model_base_path (e.g. export/gan) or --model_config_file")
    if args.model_base_path and args.model_config_file:
        p.error("give either --model_base_path or --model_config_file, not both")
    for flag in ("port", "rest_api_port"):
        if not 0 <= getattr(args, flag) <= 65535:
            p.error(f"--{flag} {getattr(args, flag)} is not a port number (0-65535)")
    if args.max_batch_size < 1:
        p.error("--max_batch_size must be at least 1")
    if args.model_base_path and not Path(args.model_base_path).is_dir():
        p.error(f"--model_base_path {args.model_base_path}: no such folder; export a model first (python -m gan_pkg.fit)")
    for flag in ("model_config_file", "batching_parameters_file", "ssl_config_file", "monitoring_config_file"):
        value = getattr(args, flag)
        if value and not Path(value).is_file():
            p.error(f"--{flag} {value}: no such file")
    try:
        grpc_channel_arguments(args.grpc_channel_arguments)
    except ValueError as error:
        p.error(str(error))
    return args


def allowed_roots(args) -> list[Path]:
    """The folders models may be loaded from, resolved (see --allowed_model_roots)."""
    given = getattr(args, "allowed_model_roots", None)
    if given:
        roots = [Path(r.strip()) for r in given.split(",") if r.strip()]
    elif args.model_base_path:
        roots = [Path(args.model_base_path)]
    else:
        roots = [Path(args.model_config_file).parent]
    return [r.resolve() for r in roots]


def _inside(path: Path, roots) -> bool:
    resolved = Path(os.path.realpath(path))
    return any(resolved == root or root in resolved.parents for root in roots)


def check_base_path(name: str, base: Path, roots, source: str) -> Path:
    """A model's base path, refused when it (after '..' and symlinks) leaves the allowed roots or is missing."""
    if not _inside(base, roots):
        raise ValueError(
            f"{source}: model '{name}' base path {base} resolves to {os.path.realpath(base)}, outside the allowed "
            f"roots {[str(r) for r in roots]}; move the model there or pass --allowed_model_roots"
        )
    if not base.is_dir():
        raise ValueError(f"{source}: model '{name}' base path {base}: no such folder; export a model first (python -m gan_pkg.fit)")
    return base


def models_from_args(args, log=print) -> list[Model]:
    roots = allowed_roots(args)
    if args.model_base_path:
        base = check_base_path(args.model_name, Path(args.model_base_path), roots, "--model_base_path")
        return [Model(args.model_name, base, log=log, roots=roots)]
    from tensorflow_serving.config import model_server_config_pb2

    import protos

    config = protos.parse_text(args.model_config_file, model_server_config_pb2.ModelServerConfig)
    if not config.HasField("model_config_list") or not config.model_config_list.config:
        raise ValueError(f"{args.model_config_file}: no model_config_list {{ config {{ ... }} }} entries")
    root = Path(args.model_config_file).resolve().parent
    models = []
    for entry in config.model_config_list.config:
        if entry.model_platform and entry.model_platform != "tensorflow":
            raise ValueError(f"{args.model_config_file}: model '{entry.name}' platform '{entry.model_platform}' is not supported")
        base = Path(entry.base_path)
        base = check_base_path(entry.name, base if base.is_absolute() else root / base, roots, args.model_config_file)
        models.append(Model(entry.name, base, _policy_from_config(entry), dict(entry.version_labels), log=log, roots=roots))
    return models


class Running:
    """A started server (in-process); `stop()` drains and shuts down."""

    def __init__(self, core, grpc_server, grpc_port, rest_server, rest_port):
        self.core, self.grpc_server, self.grpc_port = core, grpc_server, grpc_port
        self.rest_server, self.rest_port = rest_server, rest_port
        self._rest_thread = None
        if rest_server is not None:
            self._rest_thread = threading.Thread(target=rest_server.serve_forever, kwargs={"poll_interval": 0.2}, daemon=True)
            self._rest_thread.start()

    def stop(self, grace: float = 10.0):
        done = self.grpc_server.stop(grace)  # stops accepting, lets in-flight RPCs finish
        if self.core.batcher is not None:
            self.core.batcher.flush()  # in-flight requests queued for a batch run now, not after batch_timeout
        if self.rest_server is not None:
            self.rest_server.shutdown()  # stops accepting connections
            self.rest_server.drain(grace)  # requests already being handled finish
            self.rest_server.server_close()
        done.wait(grace + 1)
        self.core.stop()


def start(args, log=print) -> Running:
    import protos

    batching = protos.parse_text(args.batching_parameters_file, protos.BatchingParameters) if args.batching_parameters_file else None
    ssl_config = protos.parse_text(args.ssl_config_file, protos.SSLConfig) if args.ssl_config_file else None
    if ssl_config is not None:
        ssl_credentials(ssl_config)  # a bad config fails before the slow model load
    options = server_options(grpc_channel_arguments(getattr(args, "grpc_channel_arguments", None)))
    request_bytes = max_request_bytes(options)
    metrics_path = None
    if getattr(args, "monitoring_config_file", None):
        monitoring = protos.parse_text(args.monitoring_config_file, protos.MonitoringConfig)
        if monitoring.prometheus_config.enable:
            metrics_path = monitoring.prometheus_config.path or "/monitoring/prometheus/metrics"
    core = ModelServer(
        models_from_args(args, log),
        max_batch_size=args.max_batch_size,
        batching_parameters=batching,
        enable_batching=args.enable_batching,
        poll_seconds=args.file_system_poll_wait_seconds,
        log=log,
        max_elements=request_bytes,
    )
    if args.rest_api_port and args.rest_api_port == args.port:
        raise ValueError("--rest_api_port cannot be the same as --port")
    # Bind both ports before the (slow) model load, so a busy port fails at once.
    try:
        grpc_server, grpc_port = build_grpc_server(core, args.host, args.port, ssl_config, options=options)
    except RuntimeError as error:
        raise OSError(f"cannot bind gRPC to {args.host}:{args.port} ({error}); is another server using it? pick --port") from None
    rest_server = rest_port = None
    if args.rest_api_port:
        try:
            rest_server = build_rest_server(core, args.host, args.rest_api_port, metrics_path, request_bytes)
        except OSError as error:
            grpc_server.stop(0)
            raise OSError(
                f"cannot bind REST to {args.host}:{args.rest_api_port} ({error.strerror}); pick --rest_api_port (0 disables REST)"
            ) from None
        rest_port = rest_server.server_address[1]
        if ssl_config is not None and args.host not in ("127.0.0.1", "localhost", "::1"):
            log(f"warning: gRPC uses TLS but REST on {args.host}:{rest_port} is plain HTTP (as in TF Serving); "
                "pass --rest_api_port 0 to disable it", file=sys.stderr)
    core.load_now()
    grpc_server.start()
    core.start_polling()
    return Running(core, grpc_server, grpc_port, rest_server, rest_port)


def _log(*parts, file=None):
    print(*parts, file=file or sys.stderr, flush=True)


def main(argv=None) -> int:
    args = parse_args(argv)
    from gan_pkg.cli import import_tensorflow_quietly

    import_tensorflow_quietly()  # after the flags are good: a typo answers at once
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    try:
        running = start(args, log=_log)
    except (OSError, ValueError, RuntimeError) as error:
        print(f"error: {error}", file=sys.stderr, flush=True)
        return 1
    served = []
    for model in running.core.models.values():
        versions = sorted(model.servables)
        served.append(f"{model.name} version {versions[-1]}" if versions else f"{model.name} (no version yet under {model.base_path})")
    for model in running.core.models.values():
        if not model.servables:
            _log(f"warning: no loadable version under {model.base_path} yet (integer folders with saved_model.pb); "
                 f"watching it every {args.file_system_poll_wait_seconds}s. Export one with: python -m gan_pkg.fit")
    rest = f" and {args.host}:{running.rest_port} (REST)" if running.rest_port else ""
    print(f"serving {', '.join(served)} on {args.host}:{running.grpc_port} (gRPC){rest}", flush=True)
    while not stop.wait(0.5):
        pass
    _log("shutting down: draining in-flight requests")
    running.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
