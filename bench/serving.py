"""Serving latency and throughput of the DCGAN generator: in-process vs the embedded server.

    python bench/serving.py [--batch-sizes 1 16 64] [--clients 16] [--requests 400] [--seconds 3] [--repeats 2]

Modes, each at every batch size (rows per request):
  in-process   the exported `serving_default` signature run through gan_pkg.session_loader
               (TF Serving's load path, what the server runs): the limit any server can
               reach on this machine, with one caller
  in-process xC   the same from C threads, C = usable cores: what the machine can do when
               one call leaves a core idle (not a target, a reference for the concurrent modes)
  grpc         Predict on serving/server.py (a subprocess, so the client's Python never
               shares the server's GIL), one client
  grpc xN      N concurrent clients, batching off
  grpc xN +batching   the same with --enable_batching --batching_parameters_file serving/batching.config
  rest         REST :predict (columnar JSON), one client on a keep-alive connection

The model is the default DCGAN generator, freshly built (weights do not matter for speed)
and exported with gan_pkg.export into a temporary folder. Every cell is bounded by a request
count and a time limit, preceded by untimed warm-up requests; rounds are interleaved over
--repeats so a noisy neighbour hits every mode alike, and samples are pooled across rounds.

Clients are lean on purpose, so the numbers measure the server: the PredictRequest and the
REST body are built once per batch size, and responses are decoded with np.frombuffer
(gRPC) or NumPy's own text parser (REST, no Python float per pixel). Concurrent clients are threads, each with its own
channel (its own TCP connection); the script reports the client's CPU per request so one
can see whether the client's GIL, rather than the server, is the limit.

"ratio" is images/s divided by the in-process images/s at the same rows per request.
Targets (on a 2-core CPU):
  1. gRPC Predict at batch 1: p50 within 1.3x of the in-process p50 at batch 1.
  2. REST :predict at batch 16 and above: at least 70% of the in-process images/s.
  3. N clients with batching on: at least 80% of the in-process images/s at the batching
     size, i.e. the batch the server can form, min(N x rows per request, max_batch_size of
     the batching file). Checked at every batch size.
  4. After 10 REST requests of 60 MiB that the server parses and refuses, its RSS is
     within 100 MB of where it started (no garbage collection asked for).
  5. No errors (failed RPCs, HTTP errors, wrong output shapes) anywhere in the run.
"""

from __future__ import annotations

import argparse
import datetime
import http.client
import itertools
import json
import math
import os
import platform
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if __name__ == "__main__":
    # Run as a script, bench/ is first on sys.path, where this file (serving.py) would shadow
    # the serving package: the checkout root takes its place.
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != ROOT / "bench"]
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))

from gan_pkg.cli import import_tensorflow_quietly  # noqa: E402

import_tensorflow_quietly()

import grpc  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc  # noqa: E402

from gan_pkg import architectures, contract, export, runtime  # noqa: E402
from gan_pkg.session_loader import SessionModel  # noqa: E402
from gan_pkg import config as config_lib  # noqa: E402

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


# --------------------------------------------------------------------------- machine


def machine_lines() -> list[str]:
    model = runtime.cpu_model_and_flags()[0] or platform.processor() or platform.machine()
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
    return [
        f"date: {now}",
        f"machine: nproc {usable}, {model}, load average {load}",
        f"software: Python {platform.python_version()}, TensorFlow {tf.__version__}, grpcio {grpc.__version__}, numpy {np.__version__}",
    ]


def machine_busy_seconds() -> float:
    """CPU seconds all processes on the machine have used (every core), from /proc/stat."""
    user, nice, system, _idle, _iowait, irq, softirq, steal = map(int, Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9])
    return (user + nice + system + irq + softirq + steal) / CLOCK_TICKS


def process_cpu_seconds(pid: int) -> float:
    """utime + stime of a process (all its threads), from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


# --------------------------------------------------------------------------- model and server


def export_default_generator(base: Path) -> tuple[Path, object, int]:
    cfg = config_lib.preset("dcgan")
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


# --------------------------------------------------------------------------- callers


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
        # waits for the server's delayed ACK (~40 ms). curl and urllib3 set TCP_NODELAY too.
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
    json.loads would build one Python float per pixel (50,000 at batch 64): ~35 ms, and
    ~440 ms whenever the garbage collector walks them, on the cores the server needs."""
    start, end = payload.find(b"["), payload.rfind(b"]")
    if not payload.lstrip().startswith(b'{"outputs":') or start < 0:
        raise Failure(f"unexpected REST response: {payload[:200]!r}")
    flat = np.fromstring(payload[start : end + 1].translate(None, b"[]").decode("ascii"), dtype=np.float32, sep=",")
    if flat.size != rows * math.prod(image_shape):
        raise Failure(f"REST response holds {flat.size} values, expected {rows} images of {image_shape}")
    return flat.reshape(rows, *image_shape)


def rest_body(noise: np.ndarray) -> bytes:
    return json.dumps({"signature_name": contract.SERVING_DEFAULT, "inputs": {contract.NOISE: noise.tolist()}}).encode()


# --------------------------------------------------------------------------- measurement


class Cell:
    """Pooled samples of one (mode, batch) cell across rounds."""

    def __init__(self, mode, batch):
        self.mode, self.batch = mode, batch
        self.latencies: list[float] = []
        self.images = 0
        self.wall = 0.0
        self.errors: list[str] = []
        self.client_cpu = 0.0
        self.server_cpu = 0.0
        self.other_cpu = 0.0
        self.requests = 0

    def add(self, latencies, images, wall, errors, client_cpu, server_cpu, other_cpu=0.0):
        self.latencies += latencies
        self.images += images
        self.wall += wall
        self.errors += errors
        self.client_cpu += client_cpu
        self.server_cpu += server_cpu
        self.other_cpu += other_cpu
        self.requests += len(latencies) + len(errors)

    def p(self, q):
        return float(np.percentile(self.latencies, q)) * 1e3 if self.latencies else float("nan")

    @property
    def rate(self):
        return self.images / self.wall if self.wall else 0.0


def _no_mark():
    pass


def run_serial(call, arg, rows, count, seconds, warmup, mark=_no_mark):
    """One caller, back to back: -> (latencies, images, wall, errors). mark() is called
    when the timed part starts and when it ends (warm-up excluded)."""
    errors = []
    for _ in range(warmup):
        try:
            call(arg, rows)
        except Failure as error:
            errors.append(str(error))
    latencies = []
    mark()
    started = time.perf_counter()
    deadline = started + seconds
    for _ in range(count):
        t0 = time.perf_counter()
        if t0 > deadline:
            break
        try:
            call(arg, rows)
        except Failure as error:
            errors.append(str(error))
        else:
            latencies.append(time.perf_counter() - t0)
    wall = time.perf_counter() - started
    mark()
    return latencies, rows * len(latencies), wall, errors


def run_concurrent(callers, arg, rows, count, seconds, warmup, mark=_no_mark):
    """len(callers) threads, each back to back, sharing a request budget and a deadline.
    Images/s counts until the last request in flight at the deadline has come back."""
    budget = itertools.count()
    latencies, errors = [], []
    lock = threading.Lock()
    start_line = threading.Barrier(len(callers) + 1)
    timed = threading.Event()
    deadline = [0.0]

    def client(call):
        mine, failed = [], []
        for _ in range(warmup):
            try:
                call(arg, rows)
            except Failure as error:
                failed.append(str(error))
        start_line.wait()
        timed.wait()
        while next(budget) < count and time.perf_counter() < deadline[0]:
            t0 = time.perf_counter()
            try:
                call(arg, rows)
            except Failure as error:
                failed.append(str(error))
            else:
                mine.append(time.perf_counter() - t0)
        with lock:
            latencies.extend(mine)
            errors.extend(failed)

    threads = [threading.Thread(target=client, args=(c,), daemon=True) for c in callers]
    for t in threads:
        t.start()
    start_line.wait()  # every client warmed up
    mark()
    started = time.perf_counter()
    deadline[0] = started + seconds
    timed.set()
    for t in threads:
        t.join(timeout=seconds + 2 * RPC_TIMEOUT)
    wall = time.perf_counter() - started
    mark()
    if any(t.is_alive() for t in threads):
        errors.append("a client thread did not finish")
    return latencies, rows * len(latencies), wall, errors


def measured(cell: Cell, server, all_servers, fn, *args):
    """Run one cell; also book the CPU of the client (this process), of the server, and of
    everything else on the machine (other people's work: the noise this run had to live with)."""
    marks = []

    def mark():
        marks.append((machine_busy_seconds(), time.process_time(), {id(x): x.cpu_seconds() for x in all_servers}))

    latencies, images, wall, errors = fn(*args, mark=mark)
    (m0, c0, ours0), (m1, c1, ours1) = marks
    client = c1 - c0
    servers = {key: ours1[key] - ours0[key] for key in ours0}
    other = max(0.0, m1 - m0 - client - sum(servers.values()))
    cell.add(latencies, images, wall, errors, client, servers[id(server)] if server else 0.0, other)


# --------------------------------------------------------------------------- report


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


def fmt(x, digits=1):
    return "n/a" if math.isnan(x) else f"{x:.{digits}f}"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 16, 64], help="rows per request")
    p.add_argument("--clients", type=int, default=16, help="concurrent clients (threads) in the concurrent modes")
    p.add_argument("--requests", type=int, default=400, help="at most this many timed requests per cell and round")
    p.add_argument("--seconds", type=float, default=3.0, help="at most this long per cell and round (the running request finishes)")
    p.add_argument("--warmup", type=int, default=3, help="untimed requests per caller before each cell")
    p.add_argument("--repeats", type=int, default=2, help="interleaved rounds; samples are pooled")
    p.add_argument("--batching-config", type=Path, default=BATCHING_CONFIG)
    p.add_argument("--no-rest", action="store_true", help="skip the REST mode")
    p.add_argument("--strict", action="store_true", help="exit 1 when a target is not met")
    p.add_argument("--keep", type=Path, help="export and server logs here (default: a temporary folder, removed)")
    args = p.parse_args(argv)
    if min(args.batch_sizes) < 1 or args.clients < 1 or args.requests < 1 or args.seconds <= 0 or args.repeats < 1:
        p.error("batch sizes, --clients, --requests, --seconds and --repeats must be positive")
    batch_limit = batching_max_batch_size(args.batching_config)
    too_big = [b for b in args.batch_sizes if b > batch_limit]
    if too_big:
        p.error(f"batch sizes {too_big} exceed max_batch_size {batch_limit} of {args.batching_config}; the batching server would refuse them")

    began = time.monotonic()
    print("# Serving benchmark: DCGAN generator, in-process vs serving/server.py\n")
    for line in machine_lines():
        print(f"- {line}")

    workdir_obj = None
    if args.keep:
        workdir = args.keep
        workdir.mkdir(parents=True, exist_ok=True)
    else:
        workdir_obj = tempfile.TemporaryDirectory(prefix="gan-serving-bench-")
        workdir = Path(workdir_obj.name)

    servers = {}
    callers = []
    try:
        model_dir, cfg, params = export_default_generator(workdir / "export")
        image_shape = tuple(cfg.image_shape)
        version_dir = export.resolve_version(model_dir)
        # Both servers load while nothing is being timed; idle, they cost next to nothing.
        servers["plain"] = ServerProcess(model_dir, workdir / "server-plain.log", None)
        servers["batching"] = ServerProcess(model_dir, workdir / "server-batching.log", args.batching_config)
        session = SessionModel(version_dir)
        for server in servers.values():
            server.wait_ready(timeout=180)
        print(f"- model: `dcgan` preset generator, {params:,} parameters, noise [batch, {cfg.latent_dim}] -> images [batch, "
              f"{', '.join(map(str, image_shape))}], float32 SavedModel from gan_pkg.export")
        print(f"- servers: serving/server.py as subprocesses on 127.0.0.1, one plain, one with --enable_batching "
              f"--batching_parameters_file {args.batching_config.name} (max_batch_size {batch_limit})")
        print(f"- load: {args.requests} requests or {args.seconds:g} s per cell and round (whichever first), {args.warmup} warm-up "
              f"requests per caller, {args.repeats} interleaved rounds, {args.clients} concurrent clients (threads)\n", flush=True)

        rng = np.random.default_rng(0)
        noise = {b: rng.standard_normal((b, cfg.latent_dim)).astype(np.float32) for b in args.batch_sizes}
        requests = {b: predict_request(noise[b]) for b in args.batch_sizes}
        bodies = {b: rest_body(noise[b]) for b in args.batch_sizes}

        def in_process(x, rows):
            images = session.run(contract.SERVING_DEFAULT, {contract.NOISE: x})[contract.IMAGES]
            check_images(images, rows, image_shape)
            return images

        single = GrpcCaller(servers["plain"].grpc_port, image_shape)
        many = {kind: [GrpcCaller(servers[kind].grpc_port, image_shape) for _ in range(args.clients)] for kind in servers}
        rest = None if args.no_rest else RestCaller(servers["plain"].rest_port, image_shape)
        callers = [single, *many["plain"], *many["batching"]] + ([rest] if rest else [])

        # The servers answer what the signature computes: same noise, same images.
        reference = in_process(noise[args.batch_sizes[0]], args.batch_sizes[0])
        for kind in servers:
            served = many[kind][0](requests[args.batch_sizes[0]], args.batch_sizes[0])
            if not np.allclose(served, reference, atol=1e-5):
                raise Failure(f"{kind} server's images differ from the in-process signature's (max |diff| {np.abs(served - reference).max():.2g})")

        n = args.clients
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        modes = [
            ("in-process", None, lambda b: (run_serial, in_process, noise[b])),
            # One caller leaves a core idle when TF cannot spread this small model over both:
            # one caller per core is what the machine can do, the mark for the concurrent modes.
            (f"in-process x{cores}", None, lambda b: (run_concurrent, [in_process] * cores, noise[b])),
            ("grpc", servers["plain"], lambda b: (run_serial, single, requests[b])),
            (f"grpc x{n}", servers["plain"], lambda b: (run_concurrent, many["plain"], requests[b])),
            (f"grpc x{n} +batching", servers["batching"], lambda b: (run_concurrent, many["batching"], requests[b])),
        ]
        if rest:
            modes.append(("rest", servers["plain"], lambda b: (run_serial, rest, bodies[b])))
        cells = {(m, b): Cell(m, b) for m, _, _ in modes for b in args.batch_sizes}
        for round_ in range(args.repeats):
            for mode, server, plan in modes:
                for b in args.batch_sizes:
                    fn, caller, arg = plan(b)
                    measured(cells[(mode, b)], server, list(servers.values()), fn, caller, arg, b, args.requests, args.seconds, args.warmup)
            print(f"round {round_ + 1}/{args.repeats} done at {time.monotonic() - began:.0f} s", file=sys.stderr, flush=True)

        # ----------------------------------------------------------------- table
        base = {b: cells[("in-process", b)] for b in args.batch_sizes}
        print("| mode | batch | p50 ms | p99 ms | images/s | ratio vs in-process |")
        print("|---|---:|---:|---:|---:|---:|")
        for mode, _, _ in modes:
            for b in args.batch_sizes:
                c = cells[(mode, b)]
                ratio = c.rate / base[b].rate if base[b].rate else float("nan")
                errs = f" ({len(c.errors)} errors)" if c.errors else ""
                print(f"| {mode}{errs} | {b} | {fmt(c.p(50), 2)} | {fmt(c.p(99), 2)} | {c.rate:.0f} | {fmt(ratio, 2)}x |")
        print("\nratio: images/s over in-process images/s at the same rows per request. "
              "Latency is per request as its client sees it (send to decoded images).")

        print(f"\nWhere the CPU goes ({cores} cores: at most {cores} CPU-seconds per second):\n")
        print("| mode | batch | requests | client CPU ms/req | server CPU ms/req | CPU ms per image | cores busy | other processes' cores |")
        print("|---|---:|---:|---:|---:|---:|---:|---:|")
        for mode, server, _ in modes:
            for b in args.batch_sizes:
                c = cells[(mode, b)]
                done = max(1, c.requests)
                total = c.client_cpu + c.server_cpu
                print(f"| {mode} | {b} | {c.requests} | {1e3 * c.client_cpu / done:.2f} | "
                      f"{(1e3 * c.server_cpu / done) if server else 0:.2f} | {1e3 * total / max(1, c.images):.2f} | "
                      f"{total / c.wall if c.wall else 0:.2f} | {c.other_cpu / c.wall if c.wall else 0:.2f} |")
        print("\n(timed requests only; /proc CPU times tick at "
              f"{1000 // CLOCK_TICKS} ms, so short cells are coarse. \"other processes' cores\": CPU that the rest of "
              "the machine used meanwhile, i.e. how much of the 2 cores this run did not have.)")
        others = sum(c.other_cpu for c in cells.values()) / sum(c.wall for c in cells.values())
        print(f"\nOther processes used {others:.2f} of {os.cpu_count()} cores on average during the measurements"
              + (": the numbers above are noisy; rerun on a quiet machine to compare." if others > 0.25 else "."))

        # ----------------------------------------------------------------- targets
        print("\n## Targets\n")
        all_met = True
        if 1 in args.batch_sizes:
            g, ip = cells[("grpc", 1)], base[1]
            ratio = g.p(50) / ip.p(50)
            met = ratio <= 1.3
            all_met &= met
            print(f"- gRPC Predict p50 at batch 1 within 1.3x of in-process: {'met' if met else 'NOT met'} "
                  f"(gRPC {g.p(50):.2f} ms vs in-process {ip.p(50):.2f} ms = {ratio:.2f}x; limit {1.3 * ip.p(50):.2f} ms)")
        else:
            print("- gRPC Predict p50 at batch 1: not measured (batch 1 not in --batch-sizes)")
        if rest:
            shares = {b: cells[("rest", b)].rate / base[b].rate for b in args.batch_sizes if b >= 16 and base[b].rate}
            met = bool(shares) and min(shares.values()) >= 0.7
            all_met &= met
            print(f"- REST images/s >= 70% of in-process at batch 16 and above: {'met' if met else 'NOT met'} ("
                  + "; ".join(f"batch {b}: {100 * v:.0f}%" for b, v in shares.items()) + ")")
        parts, met_all = [], True
        for b in args.batch_sizes:
            formed = min(n * b, batch_limit)
            c = cells[(f"grpc x{n} +batching", b)]
            reference_rate = base[formed].rate if formed in base else None
            if reference_rate is None:  # the in-process rate at the formed size was not measured: measure it now
                extra = Cell("in-process", formed)
                x = rng.standard_normal((formed, cfg.latent_dim)).astype(np.float32)
                extra.add(*run_serial(in_process, x, formed, args.requests, args.seconds, args.warmup), 0.0, 0.0)
                reference_rate = extra.rate
            share = c.rate / reference_rate if reference_rate else float("nan")
            met_all &= share >= 0.8
            parts.append(f"{b}-row requests: {c.rate:.0f} img/s vs in-process {reference_rate:.0f} img/s at batch {formed} "
                         f"= {100 * share:.0f}% {'met' if share >= 0.8 else 'NOT met'}")
        all_met &= met_all
        print(f"- {n} clients with batching >= 80% of in-process images/s at the batching size "
              f"(the batch the server can form: min({n} x rows per request, max_batch_size {batch_limit})): "
              f"{'met' if met_all else 'NOT met'} ({'; '.join(parts)})")
        if rest:
            before, after = failed_request_memory(servers["plain"])
            met = after - before <= 100
            all_met &= met
            print(f"- server RSS after 10 failed 60 MiB REST requests within 100 MB of where it started: "
                  f"{'met' if met else 'NOT met'} ({before:.0f} MB -> {after:.0f} MB)")
        errors = [(key, e) for key, c in cells.items() for e in c.errors]
        all_met &= not errors
        total_requests = sum(c.requests for c in cells.values())
        if errors:
            first = errors[0]
            print(f"- no errors under load: NOT met ({len(errors)} failures, warm-ups included, besides {total_requests - len(errors)} "
                  f"good timed requests; first: {first[0][0]} batch {first[0][1]}: {first[1]})")
        else:
            print(f"- no errors under load: met (no failure in {total_requests} timed requests nor in their warm-ups)")
        print(f"\nruntime {time.monotonic() - began:.0f} s")
        return 1 if args.strict and not all_met else 0
    except (Failure, RuntimeError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    finally:
        for caller in callers:
            caller.close()
        for server in servers.values():
            server.stop()
        if workdir_obj is not None:
            workdir_obj.cleanup()


if __name__ == "__main__":
    sys.exit(main())
