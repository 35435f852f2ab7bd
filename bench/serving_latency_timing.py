"""The timed part of bench/serving_latency.py: the machine it runs on, the loops that time
one caller or many, and the CPU each cell books (client, server, everyone else)."""

from __future__ import annotations

import datetime
import itertools
import os
import platform
import threading
import time
from pathlib import Path

from gan_pkg.cli import import_tensorflow_quietly

import_tensorflow_quietly()

import grpc  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from serving_latency_servers import CLOCK_TICKS, RPC_TIMEOUT, Failure  # noqa: E402  (bench/ is the script's directory)

from gan_pkg import runtime  # noqa: E402


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
