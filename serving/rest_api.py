"""TF Serving's REST API (/v1/models/...) and the Prometheus metrics endpoint, served by aiohttp.

Requests are routed as TF Serving routes them (tensorflow_serving/model_servers/http_server.cc,
http_rest_api_util.cc, http_rest_api_handler.cc; tests/serving/test_serving_rest_routing.py holds the
table): a path and query matching (?i)/v1/.* go to the REST handler, anything else is 404; the
handler matches its two patterns (POST: ...:classify|regress|predict, GET: status and metadata)
in full, case-insensitively, against the path *with* its query, decodes %XX in the model name and
label, and answers 400 "Malformed request" for whatever it does not match (a GET on a predict
URL, a POST on a status URL, an unknown verb, a trailing slash, other methods). Methods libevent
does not allow (TRACE, CONNECT, unknown ones) are 501; the metrics path answers any method.

The server runs its own asyncio event loop in the thread that calls `serve_forever()`; decoding
JSON, running the model and encoding the answer happen in a thread pool, so the loop only
moves bytes. Every resource a client can hold is bounded:

- a body announced over the limit is refused unread (413) and the connection closed; a chunked
  body is read until it ends or passes the limit (then 413 and the connection closed);
- a request head must be complete within REST_HEADER_TIMEOUT_S of its first byte (slowloris),
  a body (Content-Length or chunked) within REST_BODY_TIMEOUT_S; a connection idle for
  REST_KEEPALIVE_S (before its first request or between two) is closed;
- every body is read before the request is routed, as TF Serving reads it, so the next request
  on a keep-alive connection is parsed from where it starts; "Expect: 100-continue" gets its
  interim answer first, as libevent gives it;
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
import urllib.parse

import grpc
from aiohttp import web
from aiohttp.http_exceptions import BadHttpMethod

from serving import rest_json
from serving.core import MAX_RECEIVE_OPTION, MAX_REQUEST_BYTES, ModelServer
from serving.errors import HTTP_STATUS, ServingError, _invalid, as_serving_error

REST_BODY_TIMEOUT_S = 30.0  # TF Serving's --rest_api_timeout_in_ms default
REST_HEADER_TIMEOUT_S = 30.0  # from a request head's first byte to its end (slowloris)
# An idle connection costs a socket, not a thread: long enough that clients (and proxies) close
# theirs first, which spares them a request sent on a connection the server is closing.
REST_KEEPALIVE_S = 300.0
REST_LINGER_S = 10.0  # aiohttp discarding a body its handler left unread (one that failed mid-body)
REST_THREADS = 64  # requests decoded and run at once (as many as gRPC's workers)
METRICS_CONTENT_TYPE = "text/plain; version=0.0.4"

# TF Serving hands its REST handler every request whose path and query match this in full
# (kHTTPRestApiHandlerPathRegex, http_rest_api_util.h); the rest are 404.
_V1 = re.compile(r"/v1/.*", re.IGNORECASE | re.ASCII)
# The handler's patterns (kPredictionApiGegex, kModelStatusApiRegex in http_rest_api_util.cc): POST
# takes the first, GET the second, matched in full against the path with its query, as net_http
# hands it over. Only the pattern ignores case: the verb and "metadata" are then compared as
# written (http_rest_api_handler.cc), so ":PREDICT" is malformed and "/METADATA" asks for status.
_PREDICTION = re.compile(r"/v1/models/([^/:]+)(?:(?:/versions/(\d+))|(?:/labels/([^/:]+)))?:(classify|regress|predict)",
                         re.IGNORECASE | re.ASCII)
_STATUS = re.compile(r"/v1/models(?:/([^/:]+))?(?:(?:/versions/(\d+))|(?:/labels/([^/:]+)))?(?:/(metadata))?",
                     re.IGNORECASE | re.ASCII)
# What libevent's evhttp_uri_parse takes (RFC 3986 characters and %XX escapes): net_http answers
# any other request target 400 before routing it.
_CHARS = r"[\w\-.~!$&'()*+,;=:@/]|%[0-9A-Fa-f]{2}"
_TARGET = re.compile(rf"(?:{_CHARS})*(?:\?(?:{_CHARS}|\?)*)?(?:#(?:{_CHARS}|\?)*)?", re.ASCII)
# The methods net_http lets through (evhttp_set_allowed_methods, evhttp_server.cc); libevent
# answers any other 501.
_METHODS = {"GET", "POST", "HEAD", "PUT", "DELETE", "OPTIONS", "PATCH"}
_INT64_MAX = 2**63 - 1


class _TooLarge(Exception):
    """A chunked body that passed the size limit."""


def _spec(name: str, version: str | None, label: str | None):
    """A ModelSpec from the pattern's groups, decoded as ParseModelInfo decodes them: %XX escapes
    (curl_easy_unescape: "+" stays "+") in the name and label, the version as an int64."""
    from tensorflow_serving.apis import model_pb2

    spec = model_pb2.ModelSpec(name=urllib.parse.unquote(name or ""))
    if version is not None:
        if int(version) > _INT64_MAX:
            raise _invalid(f"Failed to convert version: {version} to numeric.")
        spec.version.value = int(version)
    elif label is not None:
        spec.version_label = urllib.parse.unquote(label)
    return spec


def _forget(error: BaseException) -> None:
    """Drop the frames an exception holds. Their locals hold the request (raw and parsed body,
    decoded arrays), and a frame that refers back to the exception makes a cycle that only the
    garbage collector frees, so a failed large request would keep many times its size alive
    until the collector runs (tests/serving/test_serving_rest.py checks RSS stays flat)."""
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
        if isinstance(exc, BadHttpMethod):  # "get", "FOO": libevent answers a method it does not know 501
            super().handle_error(request, 501, exc, message)
            return _closing_error(501, "method not implemented")
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
        if request.method not in _METHODS:
            return await self._refuse(request, 501, f"method {request.method} is not implemented")
        length = request.content_length
        if length is not None and length > self.max_body_bytes:
            return await self._refuse(request, 413, f"request body of {length} bytes is {self._over_limit}")
        target = request.raw_path
        if not _TARGET.fullmatch(target):
            return await self._refuse(request, 400, f"malformed request target: {target}")
        expect = request.headers.get("Expect")
        if expect is not None and request.body_exists and request.version >= (1, 1):  # libevent's evhttp_get_body
            if expect.lower() != "100-continue":
                return await self._refuse(request, 417, f"Expect: {expect} is not supported")
            await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")  # curl waits for it before a large body
        try:
            raw = await asyncio.wait_for(self._body(request), REST_BODY_TIMEOUT_S)  # (asyncio.timeout needs 3.11)
        except asyncio.TimeoutError:
            announced = "chunked" if length is None else f"{length} bytes announced"
            return await self._refuse(request, 400, f"request body not received within {REST_BODY_TIMEOUT_S:g} s ({announced})")
        except asyncio.IncompleteReadError:
            return await self._refuse(request, 400, "request body ended before its Content-Length")
        except _TooLarge:
            return await self._refuse(request, 413, f"chunked request body is {self._over_limit}")
        status, body, content_type = await asyncio.get_running_loop().run_in_executor(
            self._pool, self._answer, request.method, target, raw, request.headers.get("Origin", ""))
        del raw
        response = web.Response(status=status, body=body, headers={"Content-Type": content_type} if content_type else None)
        if not self._accepting:  # shutting down: the client should send its next request elsewhere
            response.force_close()
        return response

    @property
    def _over_limit(self) -> str:
        return f"larger than the limit of {self.max_body_bytes} (--grpc_channel_arguments={MAX_RECEIVE_OPTION}=...)"

    async def _body(self, request) -> bytes:
        """The whole body, read (like TF Serving) whatever the URL, so the connection stays in step.
        A chunked one is read as it comes, and given up as soon as it passes the limit."""
        if not request.body_exists:
            return b""
        if request.content_length is not None:
            return await request.content.readexactly(request.content_length)
        parts, size = [], 0
        async for part in request.content.iter_any():
            size += len(part)
            if size > self.max_body_bytes:
                raise _TooLarge
            parts.append(part)
        return b"".join(parts)

    async def _refuse(self, request, status: int, message: str):
        """Answer, then close the connection without reading the rest of the request."""
        response = _closing_error(status, message)
        await response.prepare(request)
        await response.write_eof()
        request.protocol.force_close()  # no lingering read of a body that was refused
        return response

    def _answer(self, method: str, target: str, raw: bytes, origin: str) -> tuple[int, bytes, str | None]:
        """(HTTP status, body, content type) for one request; runs in the pool, never raises."""
        try:
            path = target.partition("?")[0].partition("#")[0]
            if self.metrics_path and path == self.metrics_path:  # any method, as TF Serving's handler
                if target != path:
                    return 400, f"Unexpected path: {target}. Should be {path}".encode(), "text/plain"
                return 200, self.core.metrics.text().encode(), METRICS_CONTENT_TYPE
            if not _V1.fullmatch(target):
                raise ServingError(grpc.StatusCode.NOT_FOUND, f"Not Found: {method} {target} (the REST API is under /v1/)")
            if method == "OPTIONS":  # a CORS preflight; TF Serving writes no body either way
                return (200 if re.search("https?://", origin) else 400), b"", None
            return 200, rest_json.dumps(self._route(method, target, raw)), "application/json"
        except Exception as error:  # noqa: BLE001  a request never takes the server down
            failure = as_serving_error(error)
            status, message = HTTP_STATUS.get(failure.code, 500), failure.message
            _forget(error)
            del failure, raw
        return status, rest_json.dumps({"error": message}), "application/json"

    def _route(self, method: str, target: str, raw: bytes) -> dict:
        """TF Serving's HttpRestApiHandler::ProcessRequest."""
        from tensorflow_serving.apis import get_model_metadata_pb2, get_model_status_pb2

        pattern = {"POST": _PREDICTION, "GET": _STATUS}.get(method)
        match = pattern.fullmatch(target) if pattern else None
        malformed = _invalid(f"Malformed request: {method} {target}")
        if match is None:
            raise malformed
        name, version, label, what = match.groups()
        spec = _spec(name, version, label)
        if method == "GET":
            if not spec.name:
                raise _invalid("Missing model name in request.")
            if what == "metadata":
                request = get_model_metadata_pb2.GetModelMetadataRequest(model_spec=spec, metadata_field=["signature_def"])
                return rest_json.metadata_json(self.core.metadata(request))
            return rest_json.status_json(self.core.status(get_model_status_pb2.GetModelStatusRequest(model_spec=spec)))
        if what not in ("predict", "classify", "regress"):
            raise malformed
        body = [rest_json.loads(raw)]  # a list the call below empties, so only the callee holds the body
        if what == "predict":
            return self.core.metered(spec.name, lambda: rest_json.rest_predict(self.core, spec, body.pop()))
        return self.core.metered(spec.name, lambda: rest_json.classify_or_regress(self.core, spec, body.pop(), what))


def build_rest_server(core: ModelServer, host: str, port: int, metrics_path: str | None = None,
                      max_body_bytes: int = MAX_REQUEST_BYTES) -> RestServer:
    return RestServer(core, host, port, metrics_path, max_body_bytes)
