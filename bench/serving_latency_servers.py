"""The two ends of bench/serving_latency.py: serving/server.py in a subprocess, the lean
clients that call it (a prebuilt request per batch size, responses decoded without a Python
object per pixel), and what the server's own process shows (its CPU, its RSS)."""

from __future__ import annotations

import http.client
import json
import math
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

from gan_pkg.cli import import_tensorflow_quietly

import_tensorflow_quietly()

import grpc  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc  # noqa: E402

from gan_pkg import architectures, contract, export  # noqa: E402
from gan_pkg import config as config_lib  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
SERVER = ROOT / "serving" / "server.py"
BATCHING_CONFIG = ROOT / "serving" / "batching.config"
READY = re.compile(r"on [^ ]+:(?P<grpc>\d+) \(gRPC\)(?: and [^ ]+:(?P<rest>\d+) \(REST\))?")
CHANNEL_OPTIONS = [
    ("grpc.max_send_message_length", 2**31 - 1),
    ("grpc.max_receive_message_length", 2**31 - 1),
    # one connection per client: without this, channels to one target share a subchannel
    ("grpc.use_local_subchannel_pool", 1),
]
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
RPC_TIMEOUT = 60.0


def process_cpu_seconds(pid: int) -> float:
    """utime + stime of a process (all its threads), from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def export_default_generator(base: Path, assignments=()) -> tuple[Path, object, int]:
    cfg = config_lib.GANConfig.resolve("dcgan", config_lib.parse_assignments(assignments))
    generator, _ = architectures.build(cfg)
    export.export_generator(generator, cfg, base, contract.DEFAULT_MODEL_NAME)
    return base / contract.DEFAULT_MODEL_NAME, cfg, generator.count_params()


def free_port() -> int:
    # --rest_api_port 0 disables REST (TF Serving's meaning), so REST needs a real free port.
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServerProcess:
    """serving/server.py in a subprocess; the ready line on stdout names its ports."""

    def __init__(self, model_dir: Path, log_path: Path, batching: Path | None):
        self.rest_port_wanted = free_port()
        command = [
            sys.executable, str(SERVER),
            "--model_base_path", str(model_dir),
            "--host", "127.0.0.1",
            "--port", "0",
            "--rest_api_port", str(self.rest_port_wanted),
        ]
        if batching is not None:
            command += ["--enable_batching", "--batching_parameters_file", str(batching)]
        self.command = command
        self.log_path = log_path
        self._log = open(log_path, "w")  # noqa: SIM115  open for the server's lifetime; stop() closes it
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONUNBUFFERED="1")
        self.proc = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=self._log, text=True, env=env)
        self.grpc_port = self.rest_port = None
        self._ready = threading.Event()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self):
        for line in self.proc.stdout:  # keep draining, so the pipe never fills
            self._log.write(line)
            self._log.flush()
            match = READY.search(line)
            if match and not self._ready.is_set():
                self.grpc_port = int(match["grpc"])
                self.rest_port = int(match["rest"]) if match["rest"] else None
                self._ready.set()

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not self._ready.wait(0.2):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                tail = self.log_path.read_text()[-2000:]
                why = f"exited with {self.proc.returncode}" if self.proc.returncode is not None else f"not ready after {timeout:.0f}s"
                raise RuntimeError(f"server {why}: {' '.join(self.command)}\n{tail}")

    def cpu_seconds(self) -> float:
        return process_cpu_seconds(self.proc.pid)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self._log.close()


class Failure(Exception):
    pass


def decode_tensor(proto) -> np.ndarray:
    shape = [d.size for d in proto.tensor_shape.dim]
    if proto.tensor_content:
        return np.frombuffer(proto.tensor_content, np.float32).reshape(shape)
    return tf.make_ndarray(proto)


def check_images(images: np.ndarray, rows: int, image_shape) -> None:
    if images.shape != (rows, *image_shape):
        raise Failure(f"expected images of shape {(rows, *image_shape)}, got {images.shape}")


def predict_request(noise: np.ndarray) -> predict_pb2.PredictRequest:
    request = predict_pb2.PredictRequest()
    request.model_spec.name = contract.DEFAULT_MODEL_NAME
    request.model_spec.signature_name = contract.SERVING_DEFAULT
    request.inputs[contract.NOISE].CopyFrom(tf.make_tensor_proto(noise))
    return request


class GrpcCaller:
    """One client: its own channel, a prebuilt request per batch size."""

    def __init__(self, port: int, image_shape):
        self.channel = grpc.insecure_channel(f"127.0.0.1:{port}", options=CHANNEL_OPTIONS)
        grpc.channel_ready_future(self.channel).result(timeout=30)
        self.stub = prediction_service_pb2_grpc.PredictionServiceStub(self.channel)
        self.image_shape = image_shape

    def __call__(self, request, rows) -> np.ndarray:
        try:
            response = self.stub.Predict(request, timeout=RPC_TIMEOUT)
        except grpc.RpcError as error:
            raise Failure(f"{error.code().name}: {error.details()}") from None
        images = decode_tensor(response.outputs[contract.IMAGES])
        check_images(images, rows, self.image_shape)
        return images

    def close(self):
        self.channel.close()


class RestCaller:
    """One REST client on a keep-alive HTTP/1.1 connection."""

    def __init__(self, port: int, image_shape):
        self.port, self.image_shape = port, image_shape
        self.path = f"/v1/models/{contract.DEFAULT_MODEL_NAME}:predict"
        self.conn = self._connect()

    def _connect(self):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=RPC_TIMEOUT)
        conn.connect()
        # http.client writes the headers and the body in two sends; with Nagle on, the body
        # waits for the server's delayed ACK (the stall docs/BENCHMARKS.md, section 2, tells of).
        # curl and urllib3 set TCP_NODELAY too.
        conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return conn

    def __call__(self, body: bytes, rows) -> np.ndarray:
        try:
            self.conn.request("POST", self.path, body=body, headers={"Content-Type": "application/json"})
            response = self.conn.getresponse()
            payload = response.read()
        except (OSError, http.client.HTTPException) as error:
            self.conn.close()
            self.conn = self._connect()
            raise Failure(f"REST connection: {type(error).__name__}: {error}") from None
        if response.status != 200:
            raise Failure(f"HTTP {response.status}: {payload[:200]!r}")
        images = rest_images(payload, rows, self.image_shape)
        check_images(images, rows, self.image_shape)
        return images

    def close(self):
        self.conn.close()


def rest_images(payload: bytes, rows: int, image_shape) -> np.ndarray:
    """The columnar `{"outputs": [[...]]}` of one float output, parsed by NumPy's C parser.
    json.loads would build one Python float per pixel (50,000 at batch 64), and the garbage
    collector would walk them, on the cores the server needs (docs/BENCHMARKS.md, B4, has
    what that cost)."""
    start, end = payload.find(b"["), payload.rfind(b"]")
    if not payload.lstrip().startswith(b'{"outputs":') or start < 0:
        raise Failure(f"unexpected REST response: {payload[:200]!r}")
    flat = np.fromstring(payload[start : end + 1].translate(None, b"[]").decode("ascii"), dtype=np.float32, sep=",")
    if flat.size != rows * math.prod(image_shape):
        raise Failure(f"REST response holds {flat.size} values, expected {rows} images of {image_shape}")
    return flat.reshape(rows, *image_shape)


def rest_body(noise: np.ndarray) -> bytes:
    return json.dumps({"signature_name": contract.SERVING_DEFAULT, "inputs": {contract.NOISE: noise.tolist()}}).encode()


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def failed_request_memory(server: ServerProcess, count: int = 10, mib: int = 60) -> tuple[float, float]:
    """The server's RSS (MB) before and after `count` REST requests of `mib` MiB that it
    must parse and then refuse (fractional seeds for an int64 input): what a failed
    request leaves behind once it is answered, with no garbage collection asked for."""
    body = b'{"signature_name": "generate", "instances": [' + b"1.5," * (mib * 2**20 // 4 - 16) + b"1.5]}"
    before = rss_mb(server.proc.pid)
    for _ in range(count):
        connection = http.client.HTTPConnection("127.0.0.1", server.rest_port, timeout=120)
        try:
            connection.request("POST", "/v1/models/gan:predict", body=body, headers={"Content-Type": "application/json"})
            status = connection.getresponse().status
        finally:
            connection.close()
        if status != 400:
            raise Failure(f"a {mib} MiB request with fractional seeds got HTTP {status}, not 400")
    time.sleep(1.0)
    return before, rss_mb(server.proc.pid)


def batching_max_batch_size(path: Path) -> int:
    from serving import protos

    params = protos.parse_text(str(path), protos.BatchingParameters)
    return int(params.max_batch_size.value) if params.HasField("max_batch_size") else 1000
