"""How close can a Python gRPC server get to an in-process call? The floors under bench/serving_latency.py's
two gRPC targets, measured part by part on this machine.

    python bench/grpc_floor.py [--requests 2000] [--clients 16]

Rows (each server a subprocess, clients in this process, 127.0.0.1 only, every loop bounded):
  echo, grpcio sync / grpc.aio   a handler that returns 3 KiB (one image's bytes) and does nothing
                    else: the round trip and the CPU per request of the gRPC framework itself,
                    one client serially, then 16 clients at once
  minimal Predict   PredictRequest in, session.run of the exported DCGAN generator, PredictResponse
                    out, nothing else (no validation, metrics, batching): the least a Predict server
                    in Python can do around the model; p50 at batch 1 against the in-process call
  batcher only      16 threads calling serving's ModelServer.predict_arrays with batching on, in one
                    process, no gRPC: what the batcher delivers of the in-process images/s at batch 16

Read with bench/serving_latency.py: if `minimal Predict` is already above 1.3x in-process at batch 1, no
handler code can meet target 1 with grpcio; `batcher only` bounds target 3 from above.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent

PAYLOAD = b"\0" * 3136  # one 28x28 float32 image
SERVICE, METHOD = "bench.Echo", "Call"


def _echo(request, context):
    return PAYLOAD


def serve_echo(port: int, ready, kind: str) -> None:
    """An echo server on 127.0.0.1:port; ready() once it listens."""
    import grpc

    if kind == "sync":
        handler = grpc.method_handlers_generic_handler(SERVICE, {METHOD: grpc.unary_unary_rpc_method_handler(_echo)})
        server = grpc.server(concurrent.futures.ThreadPoolExecutor(64), handlers=[handler], options=[("grpc.so_reuseport", 0)])
        server.add_insecure_port(f"127.0.0.1:{port}")
        server.start()
        ready()
        server.wait_for_termination()
        return

    async def main():
        async def echo(request, context):
            return PAYLOAD

        handler = grpc.method_handlers_generic_handler(SERVICE, {METHOD: grpc.unary_unary_rpc_method_handler(echo)})
        server = grpc.aio.server(handlers=[handler], options=[("grpc.so_reuseport", 0)])
        server.add_insecure_port(f"127.0.0.1:{port}")
        await server.start()
        ready()
        await server.wait_for_termination()

    asyncio.run(main())


def serve_minimal_predict(port: int, ready, version_dir: str) -> None:
    """The least a Predict server does, for the export in version_dir; ready() once it listens."""
    import grpc
    from tensorflow_serving.apis import predict_pb2

    from gan_pkg import contract
    from gan_pkg.session_loader import SessionModel
    from serving import tensors

    model = SessionModel(version_dir)

    def predict(request, context):
        noise = tensors.to_ndarray(request.inputs[contract.NOISE])
        images = model.run(contract.SERVING_DEFAULT, {contract.NOISE: noise})[contract.IMAGES]
        response = predict_pb2.PredictResponse()
        response.outputs[contract.IMAGES].CopyFrom(tensors.to_proto(images))
        return response

    handler = grpc.method_handlers_generic_handler("tensorflow.serving.PredictionService", {
        "Predict": grpc.unary_unary_rpc_method_handler(
            predict, request_deserializer=predict_pb2.PredictRequest.FromString,
            response_serializer=predict_pb2.PredictResponse.SerializeToString)})
    server = grpc.server(concurrent.futures.ThreadPoolExecutor(8), handlers=[handler], options=[("grpc.so_reuseport", 0)])
    server.add_insecure_port(f"127.0.0.1:{port}")
    server.start()
    ready()
    server.wait_for_termination()


SERVERS = {"sync": lambda port, ready, _: serve_echo(port, ready, "sync"), "aio": lambda port, ready, _: serve_echo(port, ready, "aio"),
           "predict": serve_minimal_predict}


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _process_cpu(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _own_cpu() -> float:
    times = os.times()
    return times.user + times.system


def p50_ms(call, count: int, warmup: int = 100) -> float:
    for _ in range(warmup):
        call()
    latencies = []
    for _ in range(count):
        started = time.perf_counter()
        call()
        latencies.append(time.perf_counter() - started)
    return float(np.median(latencies) * 1e3)


def concurrent_rate(calls, count: int, server_pid: int | None = None) -> tuple[float, float, float]:
    """(requests/s, server CPU ms per request, client CPU ms per request): each call in its own thread, `count` times."""
    for call in calls:
        call()
    server_before, client_before, started = _process_cpu(server_pid) if server_pid else 0.0, _own_cpu(), time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(len(calls)) as pool:
        list(pool.map(lambda call: [call() for _ in range(count)], calls))
    wall, total = time.perf_counter() - started, count * len(calls)
    server = (_process_cpu(server_pid) - server_before) if server_pid else 0.0
    return total / wall, server / total * 1e3, (_own_cpu() - client_before) / total * 1e3


def _start(kind: str, port: int, version_dir: str = "") -> subprocess.Popen:
    """This script as a server subprocess (its own interpreter and GIL); returns once it says ready."""
    command = [sys.executable, os.path.abspath(__file__), "--serve", kind, "--port", str(port), "--model", version_dir]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))
    line = process.stdout.readline()  # "ready", or "" if it died first
    if line.strip() != "ready":
        process.kill()
        raise RuntimeError(f"{kind} server did not start (exit {process.wait(10)})")
    return process


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000, help="serial requests per row")
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--per-client", type=int, default=150, help="requests per client in the concurrent rows")
    parser.add_argument("--serve", choices=sorted(SERVERS), help=argparse.SUPPRESS)  # the server subprocesses
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--model", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        SERVERS[args.serve](args.port, lambda: print("ready", flush=True), args.model)
        return 0

    import grpc

    from gan_pkg import architectures, contract, export
    from gan_pkg import config as config_lib
    from gan_pkg.runtime import cpu_model_and_flags
    from gan_pkg.session_loader import SessionModel
    from serving import tensors
    from serving.core import ModelServer
    from serving.protos import BatchingParameters, parse_text
    from serving.repository import Model

    model_name, flags = cpu_model_and_flags()
    print(f"# gRPC floors: {model_name}; ISA: {' '.join(f for f in ('avx2', 'avx512f', 'avx512_bf16', 'amx_bf16') if f in flags)}; "
          f"{len(os.sched_getaffinity(0))} usable cores; grpcio {grpc.__version__}\n")
    print("| row | p50 ms (1 client) | requests/s (16 clients) | server CPU ms/request | client CPU ms/request |")
    print("|---|---:|---:|---:|---:|")
    for kind in ("sync", "aio"):
        port = _free_port()
        process = _start(kind, port)
        try:
            channels = [grpc.insecure_channel(f"127.0.0.1:{port}") for _ in range(args.clients)]
            for channel in channels:
                grpc.channel_ready_future(channel).result(timeout=30)
            calls = [lambda c=c.unary_unary(f"/{SERVICE}/{METHOD}"): c(b"\0" * 400, timeout=30) for c in channels]
            p50 = p50_ms(calls[0], args.requests)
            rate, server_cpu, client_cpu = concurrent_rate(calls, args.per_client, process.pid)
            print(f"| echo, grpcio {kind} | {p50:.3f} | {rate:.0f} | {server_cpu:.3f} | {client_cpu:.3f} |", flush=True)
        finally:
            process.kill()
            process.wait(10)

    with tempfile.TemporaryDirectory(prefix="grpc-floor-") as scratch:
        cfg = config_lib.preset("dcgan")
        generator, _ = architectures.build(cfg)
        export.export_generator(generator, cfg, Path(scratch), contract.DEFAULT_MODEL_NAME)
        version_dir = Path(scratch) / contract.DEFAULT_MODEL_NAME / "1"
        noise = np.random.default_rng(0).standard_normal((1, cfg.latent_dim)).astype(np.float32)

        from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

        port = _free_port()
        process = _start("predict", port, str(version_dir))
        try:
            channel = grpc.insecure_channel(f"127.0.0.1:{port}")
            grpc.channel_ready_future(channel).result(timeout=30)
            stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
            request = predict_pb2.PredictRequest()
            request.inputs[contract.NOISE].CopyFrom(tensors.to_proto(noise))
            served = p50_ms(lambda: stub.Predict(request, timeout=30), args.requests)
        finally:
            process.kill()
            process.wait(10)
        session = SessionModel(version_dir)
        local = p50_ms(lambda: session.run(contract.SERVING_DEFAULT, {contract.NOISE: noise}), args.requests)
        print(f"| minimal Predict, batch 1 | {served:.3f} ({served / local:.2f}x in-process {local:.3f}) | | | |")

        batch = np.repeat(noise, 16, axis=0)
        in_process_16 = 16 / (p50_ms(lambda: session.run(contract.SERVING_DEFAULT, {contract.NOISE: batch}), 200, 20) / 1e3)
        params = parse_text(ROOT / "serving" / "batching.config", BatchingParameters)
        models = [Model(contract.DEFAULT_MODEL_NAME, version_dir.parent, roots=[Path(scratch).resolve()], log=lambda *a, **k: None)]
        core = ModelServer(models, enable_batching=True, batching_parameters=params, poll_seconds=0, log=lambda *a, **k: None)
        core.load_now()
        from tensorflow_serving.apis import model_pb2

        spec = model_pb2.ModelSpec(name=contract.DEFAULT_MODEL_NAME, signature_name=contract.SERVING_DEFAULT)
        try:
            rate, _, _ = concurrent_rate([lambda: core.predict_arrays(spec, {contract.NOISE: noise})] * args.clients, args.per_client)
        finally:
            core.stop(5)
        print(f"| batcher only, {args.clients} threads x 1 row | | {rate:.0f} images/s ({rate / in_process_16:.0%} of in-process "
              f"batch 16: {in_process_16:.0f}) | | |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
