"""Serving latency and throughput of the DCGAN generator: in-process vs the embedded server.

    python bench/serving_latency.py [--batch-sizes 1 16 64] [--clients 16] [--requests 400] [--seconds 3] [--repeats 2]

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
import contextlib
import os
import sys
import tempfile
import time
from pathlib import Path

from gan_pkg.cli import import_tensorflow_quietly

import_tensorflow_quietly()

import numpy as np  # noqa: E402
import serving_latency_report as report  # noqa: E402  (bench/ is the script's directory, for these three)
import serving_latency_timing as timing  # noqa: E402
from serving_latency_servers import (  # noqa: E402
    BATCHING_CONFIG, Failure, GrpcCaller, RestCaller, ServerProcess, batching_max_batch_size, check_images,
    export_default_generator, predict_request, rest_body,
)

from gan_pkg import contract, export  # noqa: E402
from gan_pkg.session_loader import SessionModel  # noqa: E402


def parse_args(argv) -> tuple[argparse.Namespace, int]:
    """The options, checked, and the max_batch_size of the batching file."""
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
    p.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                   help="a config field of the exported generator, as in gan_pkg.fit (e.g. g_upsampled_conv=false: the seeds' layers)")
    args = p.parse_args(argv)
    if min(args.batch_sizes) < 1 or args.clients < 1 or args.requests < 1 or args.seconds <= 0 or args.repeats < 1:
        p.error("batch sizes, --clients, --requests, --seconds and --repeats must be positive")
    batch_limit = batching_max_batch_size(args.batching_config)
    too_big = [b for b in args.batch_sizes if b > batch_limit]
    if too_big:
        p.error(f"batch sizes {too_big} exceed max_batch_size {batch_limit} of {args.batching_config}; the batching server would refuse them")
    return args, batch_limit


@contextlib.contextmanager
def work_folder(keep: Path | None):
    """--keep, created if need be, or a temporary folder removed afterwards."""
    if keep:
        keep.mkdir(parents=True, exist_ok=True)
        yield keep
        return
    with tempfile.TemporaryDirectory(prefix="gan-serving-bench-") as name:
        yield Path(name)


def start_servers(args, batch_limit, workdir: Path, servers: dict):
    """Export the generator, start both servers (into `servers`, so the caller stops them
    whatever happens) and load the in-process session: -> (cfg, session)."""
    model_dir, cfg, params = export_default_generator(workdir / "export", args.set)
    image_shape = tuple(cfg.image_shape)
    version_dir = export.resolve_version(model_dir)
    # Both servers load while nothing is being timed; idle, they cost next to nothing.
    servers["plain"] = ServerProcess(model_dir, workdir / "server-plain.log", None)
    servers["batching"] = ServerProcess(model_dir, workdir / "server-batching.log", args.batching_config)
    session = SessionModel(version_dir)
    for server in servers.values():
        server.wait_ready(timeout=180)
    print(f"- model: `dcgan` preset generator{''.join(' --set ' + item for item in args.set)}, {params:,} parameters, noise [batch, {cfg.latent_dim}] -> images [batch, "
          f"{', '.join(map(str, image_shape))}], float32 SavedModel from gan_pkg.export")
    print(f"- servers: serving/server.py as subprocesses on 127.0.0.1, one plain, one with --enable_batching "
          f"--batching_parameters_file {args.batching_config.name} (max_batch_size {batch_limit})")
    print(f"- load: {args.requests} requests or {args.seconds:g} s per cell and round (whichever first), {args.warmup} warm-up "
          f"requests per caller, {args.repeats} interleaved rounds, {args.clients} concurrent clients (threads)\n", flush=True)
    return cfg, session


def measure_rounds(modes, args, servers, began) -> dict:
    """Every (mode, batch) cell, --repeats rounds interleaved: -> {(mode, batch): Cell}."""
    cells = {(m, b): timing.Cell(m, b) for m, _, _ in modes for b in args.batch_sizes}
    for round_ in range(args.repeats):
        for mode, server, plan in modes:
            for b in args.batch_sizes:
                fn, caller, arg = plan(b)
                timing.measured(cells[(mode, b)], server, list(servers.values()), fn, caller, arg, b, args.requests, args.seconds, args.warmup)
        print(f"round {round_ + 1}/{args.repeats} done at {time.monotonic() - began:.0f} s", file=sys.stderr, flush=True)
    return cells


def run(args, batch_limit, workdir: Path, servers: dict, callers: list, began: float) -> int:
    cfg, session = start_servers(args, batch_limit, workdir, servers)
    image_shape = tuple(cfg.image_shape)
    rng = np.random.default_rng(0)
    noise = {b: rng.standard_normal((b, cfg.latent_dim)).astype(np.float32) for b in args.batch_sizes}
    requests = {b: predict_request(noise[b]) for b in args.batch_sizes}
    bodies = {b: rest_body(noise[b]) for b in args.batch_sizes}

    def in_process(x, rows):
        images = session.run(contract.SERVING_DEFAULT, {contract.NOISE: x})[contract.IMAGES]
        check_images(images, rows, image_shape)
        return images

    def in_process_rate(rows):
        extra = timing.Cell("in-process", rows)
        x = rng.standard_normal((rows, cfg.latent_dim)).astype(np.float32)
        extra.add(*timing.run_serial(in_process, x, rows, args.requests, args.seconds, args.warmup), 0.0, 0.0)
        return extra.rate

    single = GrpcCaller(servers["plain"].grpc_port, image_shape)
    many = {kind: [GrpcCaller(servers[kind].grpc_port, image_shape) for _ in range(args.clients)] for kind in servers}
    rest = None if args.no_rest else RestCaller(servers["plain"].rest_port, image_shape)
    callers += [single, *many["plain"], *many["batching"]] + ([rest] if rest else [])

    # The servers answer what the signature computes: same noise, same images.
    reference = in_process(noise[args.batch_sizes[0]], args.batch_sizes[0])
    for kind in servers:
        served = many[kind][0](requests[args.batch_sizes[0]], args.batch_sizes[0])
        if not np.allclose(served, reference, atol=1e-5):
            raise Failure(f"{kind} server's images differ from the in-process signature's (max |diff| {np.abs(served - reference).max():.2g})")

    n = args.clients
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    modes = [
        ("in-process", None, lambda b: (timing.run_serial, in_process, noise[b])),
        # One caller leaves a core idle when TF cannot spread this small model over both:
        # one caller per core is what the machine can do, the mark for the concurrent modes.
        (f"in-process x{cores}", None, lambda b: (timing.run_concurrent, [in_process] * cores, noise[b])),
        ("grpc", servers["plain"], lambda b: (timing.run_serial, single, requests[b])),
        (f"grpc x{n}", servers["plain"], lambda b: (timing.run_concurrent, many["plain"], requests[b])),
        (f"grpc x{n} +batching", servers["batching"], lambda b: (timing.run_concurrent, many["batching"], requests[b])),
    ]
    if rest:
        modes.append(("rest", servers["plain"], lambda b: (timing.run_serial, rest, bodies[b])))
    cells = measure_rounds(modes, args, servers, began)

    report.print_tables(cells, modes, args.batch_sizes, cores)
    all_met = report.print_targets(cells, args.batch_sizes, n, batch_limit, servers["plain"] if rest else None, in_process_rate)
    print(f"\nruntime {time.monotonic() - began:.0f} s")
    return 1 if args.strict and not all_met else 0


def main(argv=None) -> int:
    args, batch_limit = parse_args(argv)
    began = time.monotonic()
    print("# Serving benchmark: DCGAN generator, in-process vs serving/server.py\n")
    for line in timing.machine_lines():
        print(f"- {line}")
    with work_folder(args.keep) as workdir:
        servers, callers = {}, []
        try:
            return run(args, batch_limit, workdir, servers, callers, began)
        except (Failure, RuntimeError, OSError) as error:
            print(f"error: {error}", file=sys.stderr)
            return 2
        finally:
            for caller in callers:
                caller.close()
            for server in servers.values():
                server.stop()


if __name__ == "__main__":
    sys.exit(main())
