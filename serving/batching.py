"""Server-side batching: concurrent requests for one model, version and signature merged
along dimension 0, like TF Serving's shared batch scheduler (--enable_batching)."""

from __future__ import annotations

import collections
import os
import threading
import time

import grpc
import numpy as np

from serving.errors import ServingError, as_serving_error


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
        self._executing = 0  # batches taken by a worker and not finished yet
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
        if task.error is not None:  # a fresh exception per request: one shared object would chain every
            raise ServingError(task.error.code, task.error.message)  # waiter's frames (and requests) onto it
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
                self._executing += 1
                return tasks

    def _work(self):
        while True:
            with self._cond:
                tasks = self._take()
            if tasks is None:
                return
            try:
                self._execute(tasks)
            finally:
                with self._cond:
                    self._executing -= 1
                    self._cond.notify_all()

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

    def drain(self, deadline: float) -> int:
        """Shutting down: run what is queued at once, until `deadline` (time.monotonic()) at the latest.

        Requests still queued at the deadline are answered UNAVAILABLE (retry elsewhere) and new ones
        refused, so no batch starts for a call the server has stopped waiting for. Returns how many
        requests were refused that way. A batch already running is not interrupted.
        """
        self.flush()
        with self._cond:
            while any(self._queues.values()) or self._executing:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(left)
            abandoned = []
            if any(self._queues.values()):
                self._stopping = True  # refuse what still arrives: the grace period is over
                for queue in self._queues.values():
                    abandoned.extend(queue)
                    queue.clear()  # a worker forming a batch from this queue finds it empty
                self._cond.notify_all()
        failure = ServingError(grpc.StatusCode.UNAVAILABLE, "the server is shutting down: the grace period ended "
                               "before this request's batch could run; retry")
        for task in abandoned:
            task.error = failure
            task.done.set()
        return len(abandoned)

    def stop(self, timeout: float = 30.0):
        """Run what is queued at once (no more waiting for company), then end the workers
        (waiting at most about `timeout` seconds for each)."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        for t in self._threads:
            t.join(timeout=timeout)
