"""Request counts and latencies in TF Serving's Prometheus series (--monitoring_config_file),
exposed through prometheus_client from a registry of the server's own."""

from __future__ import annotations

import collections
import threading

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import HistogramMetricFamily, Metric

REQUEST_COUNT = ":tensorflow:serving:request_count"
REQUEST_LATENCY = ":tensorflow:serving:request_latency"
# Requests naming a model the server does not serve are counted under this one label value,
# so clients inventing names cannot grow the series (or the server's memory) without bound.
UNKNOWN_MODEL = "<unknown>"


class Metrics:
    """TF Serving's request_count counter and request_latency histogram (microseconds).

    A collector in its own CollectorRegistry (not prometheus_client's global one), so two
    servers in one process keep separate counts; label values are escaped by prometheus_client.
    """

    BUCKETS_US = (1e3, 2.5e3, 5e3, 1e4, 2.5e4, 5e4, 1e5, 2.5e5, 5e5, 1e6, 2.5e6)

    def __init__(self):
        self._lock = threading.Lock()
        self.counts = collections.Counter()  # (model, status) -> requests
        self.latency = {}  # model -> [cumulative bucket counts..., sum_us, count]
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(self)

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

    def collect(self):
        """The metric families, for prometheus_client's registry."""
        with self._lock:
            counts = sorted(self.counts.items())
            latency = sorted((model, list(row)) for model, row in self.latency.items())
        # A plain Metric, not CounterMetricFamily: TF Serving's counter sample has no `_total` suffix.
        counter = Metric(REQUEST_COUNT, "Requests by model and status (TF Serving).", "counter")
        for (model, status), n in counts:
            counter.add_sample(REQUEST_COUNT, {"model_name": model, "status": status}, n)
        yield counter
        histogram = HistogramMetricFamily(REQUEST_LATENCY, "Predict latency in microseconds (TF Serving).",
                                          labels=["model_name", "API"])
        for model, row in latency:
            buckets = [(f"{bound:g}", n) for bound, n in zip(self.BUCKETS_US, row)] + [("+Inf", row[-1])]
            histogram.add_metric([model, "predict"], buckets, row[-2])
        yield histogram

    def text(self) -> str:
        """Prometheus text format (version 0.0.4), as the metrics endpoint serves it."""
        text = generate_latest(self.registry).decode()
        # prometheus_client's text writer names a counter's HELP and TYPE lines `<name>_total`;
        # TF Serving's series (and the samples above) are `<name>`. These two lines come from the
        # constant above, never from a label value (those are escaped onto one line).
        for kind in ("HELP", "TYPE"):
            text = text.replace(f"# {kind} {REQUEST_COUNT}_total ", f"# {kind} {REQUEST_COUNT} ")
        return text
