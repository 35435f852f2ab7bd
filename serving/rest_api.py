"""TF Serving's REST API (/v1/models/...) and the Prometheus metrics endpoint, served by aiohttp.

The server runs its own asyncio event loop in the thread that calls `serve_forever()`; decoding
JSON, running the model and encoding the answer happen in a thread pool, so the loop only
moves bytes. Every resource a client can hold is bounded:

- a body announced over the limit is refused unread (413) and the connection closed; chunked
  bodies (no Content-Length) are refused (400);
- a request head must be complete within REST_HEADER_TIMEOUT_S of its first byte (slowloris),
  a Predict body within REST_BODY_TIMEOUT_S; a connection idle for REST_KEEPALIVE_S (before
  its first request or between two) is closed;
- the body of a request refused by its URL is read and discarded by aiohttp, so the next
  request on a keep-alive connection is parsed from where it starts;
- a failed request keeps nothing of what it parsed (see `_forget`).

`build_rest_server` returns a `RestServer` with socketserver's calls, which serving.main uses:
`server_address`, `serve_forever()`, `shutdown()`, `drain(timeout)`, `server_close()`.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import re
import socket
import threading
import time
import traceback

import grpc
from aiohttp import web

from serving import rest_json
from serving.core import MAX_RECEIVE_OPTION, MAX_REQUEST_BYTES, ModelServer
from serving.errors import HTTP_STATUS, ServingError, _invalid, as_serving_error

REST_BODY_TIMEOUT_S = 30.0  # TF Serving's --rest_api_timeout_in_ms default
REST_HEADER_TIMEOUT_S = 30.0  # from a request head's first byte to its end (slowloris)
# An idle connection costs a socket, not a thread: long enough that clients (and proxies) close
# theirs first, which spares them a request sent on a connection the server is closing.
REST_KEEPALIVE_S = 300.0
REST_LINGER_S = 10.0  # reading and discarding the body of a request refused by its URL
REST_THREADS = 64  # requests decoded and run at once (as many as gRPC's workers)
METRICS_CONTENT_TYPE = "text/plain; version=0.0.4"

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


def _forget(error: BaseException) -> None:
    """Drop the frames an exception holds. Their locals hold the request (raw and parsed body,
    decoded arrays), and a frame that refers back to the exception makes a cycle that only the
    garbage collector frees: a failed 60 MiB request kept ~760 MB alive until it ran."""
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        traceback.clear_frames(error.__traceback__)  # skips the frame still running (ours)
        error.__traceback__ = None
        error = error.__cause__ or error.__context__


def _bind(host: str, port: int) -> socket.socket:
    """A listening socket on host:port (IPv4 first where the host has both); OSError if busy."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    family, kind, proto, _, address = next((i for i in infos if i[0] == socket.AF_INET), infos[0])
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(128)
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


def _closing_error(status: int, message: str) -> web.Response:
    """TF Serving's error JSON, with Connection: close."""
    response = web.Response(status=status, body=rest_json.dumps({"error": message}), headers={"Content-Type": "application/json"})
    response.force_close()
    return response


class _Connection(web.RequestHandler):
    """aiohttp's connection handler, with the two clocks aiohttp does not keep: the head of a
    request (from its first byte) and idleness before the first request."""

    def connection_made(self, transport) -> None:
        self.timer, self.awaiting_head, self.head_started = None, True, False
        super().connection_made(transport)
        self._arm(REST_KEEPALIVE_S)

    def data_received(self, data: bytes) -> None:
        if self.awaiting_head and not self.head_started:
            self.head_started = True
            self._arm(REST_HEADER_TIMEOUT_S)
        super().data_received(data)

    def connection_lost(self, exc) -> None:
        self._disarm()
        super().connection_lost(exc)

    def request_started(self) -> None:
        self.awaiting_head = False
        self._disarm()

    def request_done(self) -> None:
        self.awaiting_head, self.head_started = True, False
        if self.transport is not None:
            self._arm(REST_KEEPALIVE_S)

    def handle_error(self, request, status: int = 500, exc=None, message=None):
        """aiohttp's own answers to malformed HTTP (a `Content-Length: abc`, a broken request
        line) and to failures outside a handler: TF Serving's {"error": ...} JSON, like every
        other refusal, instead of aiohttp's plain text. The connection still closes."""
        plain = super().handle_error(request, status, exc, message)  # logs; raises if an answer already began
        return _closing_error(status, "internal error while handling the request" if status >= 500 else (message or plain.reason))

    def _arm(self, seconds: float) -> None:
        self._disarm()
        self.timer = asyncio.get_running_loop().call_later(seconds, self._expire)

    def _disarm(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def _expire(self) -> None:
        self.timer = None
        if self.awaiting_head:
            self.force_close()


class RestServer:
    """The REST port. Bound at construction, so a busy port fails before the (slow) model load."""

    def __init__(self, core: ModelServer, host: str, port: int, metrics_path: str | None = None,
                 max_body_bytes: int = MAX_REQUEST_BYTES, threads: int = REST_THREADS):
        self.core, self.metrics_path, self.max_body_bytes = core, metrics_path, max_body_bytes
        self.socket = _bind(host, port)
        self.server_address = self.socket.getsockname()[:2]
        self._pool = concurrent.futures.ThreadPoolExecutor(threads, thread_name_prefix="rest")
        self._lock = threading.Lock()
        self.in_flight = 0  # requests received and not yet answered
        self._accepting = True
        self._loop = self._web = self._listener = self._stop = None
        self._running = threading.Event()
        self._finished = threading.Event()

    # -- lifecycle (serving.main.Running)
    def serve_forever(self, poll_interval: float | None = None) -> None:
        """Serve until server_close(). poll_interval: socketserver's argument, not needed here."""
        loop = asyncio.new_event_loop()
        try:
            loop.run_until_complete(self._serve(loop))
        finally:
            loop.close()
            self._finished.set()
            self._running.set()  # (for shutdown(), should the loop have failed to start)

    def shutdown(self) -> None:
        """Stop accepting connections and close idle ones; requests being handled go on."""
        self._accepting = False
        if self._running.wait(timeout=10) and not self._finished.is_set():
            asyncio.run_coroutine_threadsafe(self._stop_listening(), self._loop).result(timeout=10)

    def drain(self, timeout: float) -> None:
        """Wait (at most timeout seconds) for the requests being handled to be answered."""
        deadline = time.monotonic() + timeout
        while self.in_flight and time.monotonic() < deadline:
            time.sleep(0.02)

    def server_close(self) -> None:
        """Close every connection, end serve_forever(), release the port and the threads."""
        if self._running.is_set() and not self._finished.is_set():
            self._loop.call_soon_threadsafe(self._stop.set)
            self._finished.wait(timeout=10)
        self.socket.close()  # (asyncio closed it already where serve_forever ran)
        self._pool.shutdown(wait=False, cancel_futures=True)

    async def _serve(self, loop) -> None:
        self._stop = asyncio.Event()
        self._web = web.Server(self._handle)
        self._loop = loop
        self._listener = await loop.create_server(self._new_connection, sock=self.socket)
        self._running.set()
        try:
            await self._stop.wait()
        finally:
            self._listener.close()
            await self._web.shutdown(timeout=1.0)  # requests still running after drain() are cancelled

    async def _stop_listening(self) -> None:
        self._listener.close()
        # Idle keep-alive connections close now. A busy one closes after its answer, which says
        # Connection: close, so a client that pipelined more knows those were not run.
        for connection in list(self._web.connections):
            if connection.awaiting_head and not connection.head_started:
                connection.force_close()

    def _new_connection(self) -> _Connection:
        return _Connection(self._web, loop=self._loop, access_log=None, keepalive_timeout=REST_KEEPALIVE_S,
                           lingering_time=REST_LINGER_S, auto_decompress=False)

    # -- one request
    async def _handle(self, request):
        request.protocol.request_started()
        with self._lock:
            self.in_flight += 1
        try:
            return await self._respond(request)
        finally:
            with self._lock:
                self.in_flight -= 1
            request.protocol.request_done()

    async def _respond(self, request):
        if not self._accepting:
            return await self._refuse(request, 503, "the server is shutting down; retry on another replica")
        if "chunked" in request.headers.get("Transfer-Encoding", "").lower():
            return await self._refuse(request, 400, "chunked request bodies are not supported; send a Content-Length")
        length = request.content_length
        if length is not None and length > self.max_body_bytes:
            return await self._refuse(
                request, 413, f"request body of {length} bytes is larger than the limit of {self.max_body_bytes} "
                f"(--grpc_channel_arguments={MAX_RECEIVE_OPTION}=...)")
        path = request.raw_path.split("?", 1)[0]
        raw = None
        match = _REST_PATH.match(path)
        if request.method == "POST" and match is not None and match["suffix"] == ":predict":
            try:
                raw = await asyncio.wait_for(request.content.readexactly(length or 0), REST_BODY_TIMEOUT_S)
            except asyncio.TimeoutError:
                return await self._refuse(
                    request, 400, f"request body not received within {REST_BODY_TIMEOUT_S:g} s ({length} bytes announced)")
            except asyncio.IncompleteReadError:
                return await self._refuse(request, 400, "request body ended before its Content-Length")
        status, body, content_type = await asyncio.get_running_loop().run_in_executor(
            self._pool, self._answer, request.method, path, raw)
        del raw
        response = web.Response(status=status, body=body, headers={"Content-Type": content_type})
        if not self._accepting:  # shutting down: the client should send its next request elsewhere
            response.force_close()
        return response

    async def _refuse(self, request, status: int, message: str):
        """Answer, then close the connection without reading the rest of the request."""
        response = _closing_error(status, message)
        await response.prepare(request)
        await response.write_eof()
        request.protocol.force_close()  # no lingering read of a body that was refused
        return response

    def _answer(self, method: str, path: str, raw: bytes | None) -> tuple[int, bytes, str]:
        """(HTTP status, body, content type) for one request; runs in the pool, never raises."""
        try:
            if self.metrics_path and method == "GET" and path == self.metrics_path:
                return 200, self.core.metrics.text().encode(), METRICS_CONTENT_TYPE
            return 200, rest_json.dumps(self._route(method, path, raw)), "application/json"
        except Exception as error:  # noqa: BLE001  a request never takes the server down
            failure = as_serving_error(error)
            status, message = HTTP_STATUS.get(failure.code, 500), failure.message
            _forget(error)
            del failure, raw
        return status, rest_json.dumps({"error": message}), "application/json"

    def _route(self, method: str, path: str, raw: bytes | None) -> dict:
        from tensorflow_serving.apis import get_model_metadata_pb2, get_model_status_pb2

        match = _REST_PATH.match(path)
        if match is None:
            raise ServingError(grpc.StatusCode.NOT_FOUND, f"Malformed request: {method} {path}")
        suffix = match["suffix"] or ""
        spec = _spec(match["name"], match["version"], match["label"])
        if method == "GET" and suffix == "":
            request = get_model_status_pb2.GetModelStatusRequest(model_spec=spec)
            return rest_json.status_json(self.core.status(request))
        if method == "GET" and suffix == "/metadata":
            request = get_model_metadata_pb2.GetModelMetadataRequest(model_spec=spec, metadata_field=["signature_def"])
            return rest_json.metadata_json(self.core.metadata(request))
        if method == "POST" and suffix == ":predict":
            body = [rest_json.loads(raw)]  # a list the call below empties, so only rest_predict holds the body
            return self.core.metered(spec.name, lambda: rest_json.rest_predict(self.core, spec, body.pop()))
        raise ServingError(grpc.StatusCode.NOT_FOUND, f"Malformed request: {method} {path}")


def build_rest_server(core: ModelServer, host: str, port: int, metrics_path: str | None = None,
                      max_body_bytes: int = MAX_REQUEST_BYTES) -> RestServer:
    return RestServer(core, host, port, metrics_path, max_body_bytes)
