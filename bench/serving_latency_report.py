"""What bench/serving_latency.py prints once the cells are measured: the latency table, where
the CPU went, and each target met or not (its module docstring lists them)."""

from __future__ import annotations

import math
import os

from serving_latency_servers import CLOCK_TICKS, failed_request_memory  # bench/ is the script's directory


def fmt(x, digits=1):
    return "n/a" if math.isnan(x) else f"{x:.{digits}f}"


def print_tables(cells, modes, batch_sizes, cores) -> None:
    """The latency table, then the CPU table, then how much of the machine others took."""
    base = {b: cells[("in-process", b)] for b in batch_sizes}
    print("| mode | batch | p50 ms | p99 ms | images/s | ratio vs in-process |")
    print("|---|---:|---:|---:|---:|---:|")
    for mode, _, _ in modes:
        for b in batch_sizes:
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
        for b in batch_sizes:
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


def print_targets(cells, batch_sizes, clients, batch_limit, rest_server, in_process_rate) -> bool:
    """Each target, met or not, one line each; True when all are met. rest_server is the plain
    server when REST was measured (else None); in_process_rate(rows) measures the in-process
    images/s at a batch size the table lacks."""
    print("\n## Targets\n")
    base = {b: cells[("in-process", b)] for b in batch_sizes}
    results = [_grpc_latency(cells, base, batch_sizes)]
    if rest_server:
        results.append(_rest_throughput(cells, base, batch_sizes))
    results.append(_batching_throughput(cells, base, batch_sizes, clients, batch_limit, in_process_rate))
    if rest_server:
        results.append(_memory_after_failed_requests(rest_server))
    results.append(_no_errors(cells))
    return all(met for met in results if met is not None)


def _grpc_latency(cells, base, batch_sizes) -> bool | None:
    if 1 not in batch_sizes:
        print("- gRPC Predict p50 at batch 1: not measured (batch 1 not in --batch-sizes)")
        return None
    g, ip = cells[("grpc", 1)], base[1]
    ratio = g.p(50) / ip.p(50)
    met = ratio <= 1.3
    print(f"- gRPC Predict p50 at batch 1 within 1.3x of in-process: {'met' if met else 'NOT met'} "
          f"(gRPC {g.p(50):.2f} ms vs in-process {ip.p(50):.2f} ms = {ratio:.2f}x; limit {1.3 * ip.p(50):.2f} ms)")
    return met


def _rest_throughput(cells, base, batch_sizes) -> bool:
    shares = {b: cells[("rest", b)].rate / base[b].rate for b in batch_sizes if b >= 16 and base[b].rate}
    met = bool(shares) and min(shares.values()) >= 0.7
    print(f"- REST images/s >= 70% of in-process at batch 16 and above: {'met' if met else 'NOT met'} ("
          + "; ".join(f"batch {b}: {100 * v:.0f}%" for b, v in shares.items()) + ")")
    return met


def _batching_throughput(cells, base, batch_sizes, n, batch_limit, in_process_rate) -> bool:
    parts, met_all = [], True
    for b in batch_sizes:
        formed = min(n * b, batch_limit)
        c = cells[(f"grpc x{n} +batching", b)]
        reference_rate = base[formed].rate if formed in base else None
        if reference_rate is None:  # the in-process rate at the formed size was not measured: measure it now
            reference_rate = in_process_rate(formed)
        share = c.rate / reference_rate if reference_rate else float("nan")
        met_all &= share >= 0.8
        parts.append(f"{b}-row requests: {c.rate:.0f} img/s vs in-process {reference_rate:.0f} img/s at batch {formed} "
                     f"= {100 * share:.0f}% {'met' if share >= 0.8 else 'NOT met'}")
    print(f"- {n} clients with batching >= 80% of in-process images/s at the batching size "
          f"(the batch the server can form: min({n} x rows per request, max_batch_size {batch_limit})): "
          f"{'met' if met_all else 'NOT met'} ({'; '.join(parts)})")
    return met_all


def _memory_after_failed_requests(server) -> bool:
    before, after = failed_request_memory(server)
    met = after - before <= 100
    print(f"- server RSS after 10 failed 60 MiB REST requests within 100 MB of where it started: "
          f"{'met' if met else 'NOT met'} ({before:.0f} MB -> {after:.0f} MB)")
    return met


def _no_errors(cells) -> bool:
    errors = [(key, e) for key, c in cells.items() for e in c.errors]
    total_requests = sum(c.requests for c in cells.values())
    if errors:
        first = errors[0]
        print(f"- no errors under load: NOT met ({len(errors)} failures, warm-ups included, besides {total_requests - len(errors)} "
              f"good timed requests; first: {first[0][0]} batch {first[0][1]}: {first[1]})")
    else:
        print(f"- no errors under load: met (no failure in {total_requests} timed requests nor in their warm-ups)")
    return not errors
