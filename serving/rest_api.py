"""TF Serving's REST API (/v1/models/...) over a ModelServer, plus Prometheus metrics."""

from __future__ import annotations

import base64
import json
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import grpc
import numpy as np

from serving.core import MAX_RECEIVE_OPTION, MAX_REQUEST_BYTES, ModelServer
from serving.errors import HTTP_STATUS, ServingError, _invalid, as_serving_error
from serving.validation import _tf

REST_BODY_TIMEOUT_S = 30.0  # TF Serving's --rest_api_timeout_in_ms default


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


def _json_input(value, dtype, key):
    """A JSON value -> ndarray of the signature's dtype ({"b64": ...} for strings)."""
    tf = _tf()
    if dtype == tf.string:
        def decode(v):
            if isinstance(v, dict) and set(v) == {"b64"}:
                return base64.b64decode(v["b64"])
            if isinstance(v, str):
                return v.encode()
            if isinstance(v, list):
                return [decode(x) for x in v]
            raise _invalid(f"input '{key}' expects strings or {{\"b64\": ...}} objects")

        return np.array(decode(value), dtype=object)
    try:
        array = np.asarray(value)
    except ValueError as error:
        raise _invalid(f"input '{key}' is not a rectangular array: {error}") from None
    kind = array.dtype.kind
    if array.dtype == object or kind in "SUb" or (dtype.is_integer and kind == "f") or not (dtype.is_floating or dtype.is_integer):
        described = "non-rectangular or mixed values" if array.dtype == object else f"{array.dtype.name} values"
        raise _invalid(f"input '{key}' expects {dtype.name}, got {described}")
    return array.astype(dtype.as_numpy_dtype)


def _json_output(array: np.ndarray):
    if array.dtype == object or array.dtype.kind == "S":
        flat = [{"b64": base64.b64encode(bytes(v)).decode("ascii")} for v in array.reshape(-1)]
        return np.array(flat, dtype=object).reshape(array.shape).tolist()
    return array.tolist()


def rest_predict(core: ModelServer, spec, body: dict) -> dict:
    """TF Serving's REST predict: row ("instances") or columnar ("inputs") format."""
    if not isinstance(body, dict):
        raise _invalid("request body must be a JSON object with 'instances' or 'inputs'")
    signature_name = body.get("signature_name") or ""
    if not isinstance(signature_name, str):
        raise _invalid("'signature_name' must be a string")
    spec.signature_name = signature_name
    if ("instances" in body) == ("inputs" in body):
        raise _invalid("request body must have exactly one of 'instances' (row format) or 'inputs' (columnar format)")
    servable = core.servable(spec)
    signature = core.signature_of(servable, spec.signature_name)
    specs = servable.inputs[signature]
    row_format = "instances" in body
    payload = body["instances"] if row_format else body["inputs"]
    if row_format:
        if not isinstance(payload, list):
            raise _invalid("'instances' must be a list of rows")
        if payload and all(isinstance(r, dict) and "b64" not in r for r in payload):
            keys = set(payload[0])
            if any(set(r) != keys for r in payload):
                raise _invalid("every instance must name the same inputs")
            raw = {k: [r[k] for r in payload] for k in keys}
        elif len(specs) == 1:
            raw = {next(iter(specs)): payload}
        else:
            raise _invalid(f"signature '{signature}' has several inputs {sorted(specs)}: send each instance as an object")
    else:
        if isinstance(payload, dict) and not (set(payload) == {"b64"}):
            raw = payload
        elif len(specs) == 1:
            raw = {next(iter(specs)): payload}
        else:
            raise _invalid(f"signature '{signature}' has several inputs {sorted(specs)}: 'inputs' must be an object")
    inputs = {}
    for key, value in raw.items():
        if key not in specs:
            raise _invalid(f"unknown input '{key}' for signature '{signature}'; inputs: {sorted(specs)}")
        inputs[key] = _json_input(value, specs[key][0], key)
    spec.version.value = servable.version  # the exact version resolved above
    servable, signature, outputs = core.predict_arrays(spec, inputs)
    if row_format:
        if len(outputs) == 1:
            return {"predictions": _json_output(next(iter(outputs.values())))}
        columns = {k: _json_output(v) for k, v in outputs.items()}
        rows = len(next(iter(columns.values())))
        return {"predictions": [{k: columns[k][i] for k in columns} for i in range(rows)]}
    if len(outputs) == 1:
        return {"outputs": _json_output(next(iter(outputs.values())))}
    return {"outputs": {k: _json_output(v) for k, v in outputs.items()}}


def _status_json(response) -> dict:
    from tensorflow_serving.apis import get_model_status_pb2

    return {
        "model_version_status": [
            {
                "version": str(s.version),
                "state": get_model_status_pb2.ModelVersionStatus.State.Name(s.state),
                "status": {"error_code": _code_name(s.status.error_code), "error_message": s.status.error_message},
            }
            for s in response.model_version_status
        ]
    }


def _code_name(value: int) -> str:
    for code in grpc.StatusCode:
        if code.value[0] == value:
            return code.name
    return str(value)


def _metadata_json(response) -> dict:
    from google.protobuf import json_format
    from tensorflow_serving.apis import get_model_metadata_pb2

    signature_map = get_model_metadata_pb2.SignatureDefMap()
    response.metadata["signature_def"].Unpack(signature_map)
    return {
        "model_spec": {"name": response.model_spec.name, "signature_name": "", "version": str(response.model_spec.version.value)},
        "metadata": {"signature_def": json_format.MessageToDict(signature_map, preserving_proto_field_name=True)},
    }


def build_rest_server(core: ModelServer, host: str, port: int, metrics_path: str | None = None, max_body_bytes: int = MAX_REQUEST_BYTES):
    from tensorflow_serving.apis import get_model_metadata_pb2, get_model_status_pb2

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "gan_pkg-serving"
        # Headers and body go out in two sends; with Nagle on, the body waits
        # ~40 ms for the client's delayed ACK (measured: batch-1 p50 48 -> 3.5 ms).
        disable_nagle_algorithm = True

        def log_message(self, *args):  # quiet: one line per request is noise at load
            pass

        def _send(self, code: int, payload: dict):
            body = json.dumps(payload).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            if self.close_connection:
                self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(body)

        def _route(self, method):
            try:
                if metrics_path and method == "GET" and self.path.split("?", 1)[0] == metrics_path:
                    body = core.metrics.text().encode()
                    self.send_response(200)
                    self.send_header("Content-Type", "text/plain; version=0.0.4")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                    return
                match = _REST_PATH.match(self.path.split("?", 1)[0])
                if match is None:
                    raise ServingError(grpc.StatusCode.NOT_FOUND, f"Malformed request: {method} {self.path}")
                suffix = match["suffix"] or ""
                spec = _spec(match["name"], match["version"], match["label"])
                if method == "GET" and suffix == "":
                    request = get_model_status_pb2.GetModelStatusRequest(model_spec=spec)
                    return self._send(200, _status_json(core.status(request)))
                if method == "GET" and suffix == "/metadata":
                    request = get_model_metadata_pb2.GetModelMetadataRequest(model_spec=spec, metadata_field=["signature_def"])
                    return self._send(200, _metadata_json(core.metadata(request)))
                if method == "POST" and suffix == ":predict":
                    raw = self._body()
                    try:
                        body = json.loads(raw)
                    except (json.JSONDecodeError, UnicodeDecodeError) as error:
                        raise _invalid(f"JSON parse error: {error}") from None
                    except RecursionError:
                        raise _invalid("JSON parse error: nested too deeply") from None
                    return self._send(200, core.metered(spec.name, lambda: rest_predict(core, spec, body)))
                raise ServingError(grpc.StatusCode.NOT_FOUND, f"Malformed request: {method} {self.path}")
            except (BrokenPipeError, ConnectionResetError):
                pass
            except Exception as error:  # noqa: BLE001  never crash on a request
                failure = as_serving_error(error)
                self._send(HTTP_STATUS.get(failure.code, 500), {"error": failure.message})

        def _body(self) -> bytes:
            """The request body, refused unread (and the connection closed) when its size is unknown or too large."""
            header = self.headers.get("Content-Length")
            if header is None:
                if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
                    self.close_connection = True
                    raise _invalid("chunked request bodies are not supported; send a Content-Length")
                return b""
            try:
                length = int(header)
                if length < 0:
                    raise ValueError
            except ValueError:
                self.close_connection = True
                raise _invalid(f"Content-Length '{header}' is not a non-negative integer") from None
            if length > max_body_bytes:
                self.close_connection = True
                raise ServingError(
                    grpc.StatusCode.RESOURCE_EXHAUSTED,
                    f"request body of {length} bytes is larger than the limit of {max_body_bytes} "
                    f"(--grpc_channel_arguments={MAX_RECEIVE_OPTION}=...)",
                )
            # A client that stops sending mid-body must not hold a handler thread forever.
            self.connection.settimeout(REST_BODY_TIMEOUT_S)
            try:
                return self.rfile.read(length)
            except TimeoutError:
                self.close_connection = True
                raise _invalid(f"request body not received within {REST_BODY_TIMEOUT_S:g} s ({length} bytes announced)") from None
            finally:
                self.connection.settimeout(None)

        def _tracked(self, method):
            with self.server.in_flight_lock:
                self.server.in_flight += 1
            try:
                self._route(method)
            finally:
                with self.server.in_flight_lock:
                    self.server.in_flight -= 1

        def do_GET(self):
            self._tracked("GET")

        def do_POST(self):
            self._tracked("POST")

    class Server(ThreadingHTTPServer):
        # Idle keep-alive connections must not hold shutdown: handler threads are daemons,
        # and stop() waits for `in_flight` requests (not connections) to finish instead.
        daemon_threads = True
        allow_reuse_address = True
        block_on_close = False
        in_flight = 0
        in_flight_lock = threading.Lock()

        def drain(self, timeout: float):
            deadline = time.monotonic() + timeout
            while self.in_flight and time.monotonic() < deadline:
                time.sleep(0.02)

    return Server((host, port), Handler)
