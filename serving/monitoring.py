"""Request counts and latencies in Prometheus text (--monitoring_config_file)."""

from __future__ import annotations

import collections
import threading


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
