"""REST requests routed the way TF Serving routes them, against a table read from TF Serving's
source (tensorflow/serving at 9d981c5c), not from this server: which URLs reach the REST handler,
its two URL patterns (case-insensitive, matched in full against the path with its query), how it
decodes the model name, which methods and verbs get 400, 404 or 501; and chunked request bodies,
which libevent (TF Serving's HTTP server) decodes. Over real HTTP on 127.0.0.1 against the
module server of test_serving_rest.py; every loop is bounded in count and every read in time.

Sources, as repository paths (tensorflow/serving unless said otherwise):
  DISPATCH  tensorflow_serving/model_servers/http_server.cc, RestApiRequestDispatcher::Dispatch:
            RE2::FullMatch(req->uri_path(), kHTTPRestApiHandlerPathRegex = "(?i)/v1/.*")
            (http_rest_api_util.h), else net_http answers 404 (evhttp_server.cc DispatchEvRequest).
  URI_PATH  tensorflow_serving/util/net_http/server/internal/evhttp_request.cc: uri_path() is
            path_and_query: the raw path, then "?" and the query, then "#" and the fragment.
  PREDICT   tensorflow_serving/model_servers/http_rest_api_util.cc, kPredictionApiGegex (POST):
            (?i)/v1/models/([^/:]+)(?:(?:/versions/(\\d+))|(?:/labels/([^/:]+)))?:(classify|regress|predict)
  STATUS    same file, kModelStatusApiRegex (GET):
            (?i)/v1/models(?:/([^/:]+))?(?:(?:/versions/(\\d+))|(?:/labels/([^/:]+)))?(?:\\/(metadata))?
  PARSE     same file, ParseModelInfo: POST and GET only; the name and label through DecodeArg
            (curl_easy_unescape: %XX decoded, "+" kept), the version through absl::SimpleAtoi
            ("Failed to convert version: ... to numeric.", InvalidArgument).
  HANDLER   tensorflow_serving/model_servers/http_rest_api_handler.cc, ProcessRequest: starts from
            InvalidArgument("Malformed request: <method> <path>"); POST runs the captured verb only
            if it is exactly "classify", "regress" or "predict"; GET asks for metadata only if the
            group is exactly "metadata", else for status; ProcessModelStatusRequest and
            ProcessModelMetadataRequest: "Missing model name in request." (InvalidArgument).
  HTTPCODE  tensorflow_serving/model_servers/http_server.cc, ToHTTPStatusCode: InvalidArgument and
            FailedPrecondition 400, NotFound 404, Unimplemented 501.
  OPTIONS   http_server.cc, RestApiRequestDispatcher::ProcessRequest: OPTIONS is a CORS preflight,
            OK if the Origin header matches https?://, else FailedPrecondition; no JSON body.
  METHODS   tensorflow_serving/util/net_http/server/internal/evhttp_server.cc: allowed methods
            GET POST HEAD PUT DELETE OPTIONS PATCH; libevent/libevent http.c (release-2.1.12-stable,
            the version tensorflow_serving/workspace.bzl pins), evhttp_handle_request: any other
            (TRACE, CONNECT, an unknown or lowercase name) gets HTTP_NOTIMPLEMENTED (501).
  TARGET    evhttp_server.cc DispatchEvRequest: ParsedEvRequest::decode() fails -> 400; it calls
            evhttp_uri_parse, which (libevent http.c end_of_path) takes RFC 3986 characters and
            %XX escapes only.
  METRICS   evhttp_server.cc: a handler registered for the exact path (without the query) runs
            before any dispatcher, whatever the method; http_server.cc ProcessPrometheusRequest:
            "Unexpected path: ... Should be ..." (InvalidArgument) when the query makes
            uri_path() differ.
  CLASSIFY  http_rest_api_handler.cc ProcessClassifyRequest / ProcessRegressRequest: the body first
            (tensorflow_serving/util/json_tensor.cc FillClassifyRegressRequestFromJson: "When method
            is classify, key 'examples' is expected and was not found"), then the model
            (GetServableHandle: NotFound), then the signature
            (tensorflow_serving/servables/tensorflow/classifier.cc GetClassificationSignatureDef,
            PreProcessClassification; regressor.cc the same for regress). The method_name check is
            off by default (--enable_signature_method_name_check, server.h: false), so a predict
            signature fails on its tensors: "No classification inputs found in SignatureDef",
            "Expected one output Tensor." (InvalidArgument, 400).
  CHUNKED   libevent http.c evhttp_get_body: "Transfer-Encoding: chunked" is read with
            evhttp_handle_chunked_read and handed over whole; http_server.cc ProcessRequest reads
            every body with ReadRequestBytes before routing.
"""

import http.client
import json
import socket
import time
from typing import NamedTuple

import pytest
from test_serving_rest import (  # noqa: F401
    METRICS,
    RECEIVE_LIMIT,
    _connection,
    _read_until_closed,
    _valid_status,
    rest_server,
)

from serving import rest_api

PREDICT_BODY = b'{"signature_name": "generate", "instances": [1, 2]}'
EXAMPLES = b'{"examples": [{"x": 1.5}]}'
MALFORMED = "Malformed request"


class Row(NamedTuple):
    method: str
    path: str
    status: int
    fragment: str = ""  # in the error message, or a key of a 200 answer
    body: bytes | None = None
    headers: dict | None = None


def post(path, status, fragment="", body=PREDICT_BODY):
    return Row("POST", path, status, fragment, body)


def get(path, status, fragment=""):
    return Row("GET", path, status, fragment)


TABLE = [
    # DISPATCH: only a path and query matching (?i)/v1/.* reach the REST handler.
    get("/v2/models/gan", 404),
    get("/v1", 404),
    get("/", 404),
    get("/V1/models/gan", 200, "model_version_status"),
    post("/v1/foo", 400, "Malformed request: POST /v1/foo"),
    get("/v1/", 400, "Malformed request: GET /v1/"),
    # STATUS (GET): case-insensitive, in full; the name as written (and decoded, PARSE).
    get("/v1/models/gan", 200, "model_version_status"),
    get("/V1/MODELS/gan", 200, "model_version_status"),
    get("/v1/models/GAN", 404, "GAN"),
    get("/v1/models/gan/versions/1", 200, "model_version_status"),
    get("/v1/models/gan/VERSIONS/1", 200, "model_version_status"),
    get("/v1/models/gan/versions/01", 200, "model_version_status"),  # SimpleAtoi("01") == 1
    get("/v1/models/gan/versions/2", 404),
    get("/v1/models/gan/versions/9223372036854775807", 404),
    get("/v1/models/gan/versions/9223372036854775808", 400, "Failed to convert version: 9223372036854775808 to numeric."),
    get("/v1/models/gan/versions/abc", 400, MALFORMED),  # (\d+)
    get("/v1/models/gan/versions/-1", 400, MALFORMED),
    get("/v1/models/gan/versions", 400, MALFORMED),
    get("/v1/models/gan/labels/nope", 400, "nope"),
    get("/v1/models/gan/labels/x/versions/1", 400, MALFORMED),  # version or label, not both
    get("/v1/models/gan/metadata", 200, "metadata"),
    get("/v1/models/gan/versions/1/metadata", 200, "metadata"),
    get("/v1/models/gan/METADATA", 200, "model_version_status"),  # HANDLER: "METADATA" != "metadata": status
    get("/v1/models", 400, "Missing model name in request."),  # the name group is optional
    get("/V1/MODELS", 400, "Missing model name in request."),
    get("/v1/models/versions/1", 400, "Missing model name in request."),  # no name, version 1
    get("/v1/models/metadata", 404, "metadata"),  # the optional name group takes "metadata" first
    get("/v1/models/", 400, MALFORMED),  # trailing slashes: not in the pattern
    get("/v1/models/gan/", 400, MALFORMED),
    get("/v1/models/gan/metadata/", 400, MALFORMED),
    get("/v1/models/gan?x=1", 404, "gan?x=1"),  # URI_PATH: the query is part of what [^/:]+ matches
    get("/v1/models/gan/metadata?x=1", 400, MALFORMED),
    get("/v1/models/gan:predict", 400, "Malformed request: GET /v1/models/gan:predict"),  # predict is POST
    # PARSE: %XX in the name decoded, "+" kept, a decoded "/" or ":" does not split.
    get("/v1/models/%67an", 200, "model_version_status"),
    get("/v1/models/g%61n/metadata", 200, "metadata"),
    get("/v1/models/my%20model", 404, "my model"),
    get("/v1/models/my+model", 404, "my+model"),
    get("/v1/models/gan%2Fx", 404, "gan/x"),
    get("/v1/models/gan%3Apredict", 404, "gan:predict"),
    get("/v1/models/gan%25", 404, "gan%"),
    post("/v1/models/g%61n:predict", 200, "predictions"),
    post("/v1/models/gan/labels/my%20label:predict", 400, "my label"),
    # PREDICT (POST): the pattern ignores case, the verb is then compared as written (HANDLER).
    post("/v1/models/gan:predict", 200, "predictions"),
    post("/V1/MODELS/gan:predict", 200, "predictions"),
    post("/v1/models/gan/Versions/1:predict", 200, "predictions"),
    post("/v1/models/gan:PREDICT", 400, "Malformed request: POST /v1/models/gan:PREDICT"),
    post("/v1/models/gan:Predict", 400, MALFORMED),
    post("/v1/models/gan/versions/1:predict", 200, "predictions"),
    post("/v1/models/gan/versions/2:predict", 404),
    post("/v1/models/gan/versions/99999999999999999999:predict", 400, "Failed to convert version"),
    post("/v1/models/gan/versions/x:predict", 400, MALFORMED),
    post("/v1/models/gan/labels/nope:predict", 400, "nope"),
    post("/v1/models/gan/versions/1/labels/x:predict", 400, MALFORMED),
    post("/v1/models/nope:predict", 404, "nope"),
    post("/v1/models/gan:foo", 400, "Malformed request: POST /v1/models/gan:foo"),  # not one of the verbs
    post("/v1/models/gan", 400, "Malformed request: POST /v1/models/gan"),  # status is GET
    post("/v1/models/gan/metadata", 400, MALFORMED),
    post("/v1/models/gan:predict/", 400, MALFORMED),
    post("/v1/models/gan/:predict", 400, MALFORMED),
    post("/v1/models/:predict", 400, MALFORMED),
    post("/v1/models/gan:predict?x=1", 400, MALFORMED),  # URI_PATH: the query must match too
    # CLASSIFY / REGRESS: body, then model, then signature; a generator's signatures are refused.
    post("/v1/models/gan:classify", 400, "No classification inputs found in SignatureDef", EXAMPLES),
    post("/v1/models/gan:regress", 400, "No regression inputs found in SignatureDef", EXAMPLES),
    post("/v1/models/gan:regress", 400, "Expected one output Tensor.", b'{"signature_name": "generate", "examples": [{}]}'),
    post("/v1/models/gan:classify", 400, "No signature was found with the name: nope", b'{"signature_name": "nope", "examples": [{}]}'),
    post("/v1/models/gan:classify", 400, "key 'examples' is expected and was not found"),  # a predict body
    post("/v1/models/gan:regress", 400, "'examples' value is an empty array", b'{"examples": []}'),
    post("/v1/models/gan:classify", 400, "unexpected JSON type", b'{"examples": [{"x": [[1]]}]}'),
    post("/v1/models/gan:classify", 400, "JSON", b""),
    post("/v1/models/nope:classify", 404, "nope", EXAMPLES),
    post("/v1/models/nope:classify", 400, "examples"),  # the body is checked before the model
    post("/v1/models/gan/versions/2:regress", 404, "", EXAMPLES),
    post("/v1/models/gan:CLASSIFY", 400, MALFORMED, EXAMPLES),
    # METHODS: net_http's allowed methods other than GET and POST reach the handler: 400.
    Row("PUT", "/v1/models/gan", 400, "Malformed request: PUT /v1/models/gan", PREDICT_BODY),
    Row("DELETE", "/v1/models/gan", 400, "Malformed request: DELETE /v1/models/gan"),
    Row("PATCH", "/v1/models/gan:predict", 400, MALFORMED, PREDICT_BODY),
    Row("HEAD", "/v1/models/gan", 400),  # (no body to a HEAD)
    Row("PUT", "/v2/models/gan", 404),
    Row("TRACE", "/v1/models/gan", 501, "not implemented"),
    Row("FOO", "/v1/models/gan", 501, "not implemented"),
    Row("get", "/v1/models/gan", 501, "not implemented"),  # method names are case-sensitive
    # OPTIONS: a CORS preflight under /v1/, no JSON either way.
    Row("OPTIONS", "/v1/models/gan:predict", 200, headers={"Origin": "http://example.com"}),
    Row("OPTIONS", "/v1/models/gan", 400),
    Row("OPTIONS", "/v2/models/gan", 404, headers={"Origin": "https://example.com"}),
    # TARGET: what evhttp_uri_parse refuses is 400 before any routing.
    get("/v1/models/%zz", 400),
    get('/v1/models/a"b', 400),
    get("/v1/models/a<b>", 400),
    # METRICS: the exact path, any method; a query is 400; anything else is not the metrics path.
    get(METRICS, 200, "# TYPE"),
    post(METRICS, 200, "# TYPE", b"{}"),
    get(METRICS + "?x=1", 400, f"Unexpected path: {METRICS}?x=1. Should be {METRICS}"),
    get(METRICS.upper(), 404),
    get(METRICS + "/", 404),
]


def _request(port, method, path, body=None, headers=None):
    """One request on its own connection -> (status, body bytes)."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        connection.request(method, path, body=body, headers=dict(headers or {}))
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


@pytest.mark.parametrize("row", TABLE, ids=[f"{r.method} {r.path} {r.status}" for r in TABLE])
def test_rest_routing_matches_tf_serving(rest_server, row):  # noqa: F811
    status, payload = _request(rest_server.rest_port, row.method, row.path, row.body, row.headers)
    assert status == row.status, (row, payload[:300])
    if row.method == "HEAD" or (row.method == "OPTIONS" and status != 404):
        assert payload == b""  # no body to a HEAD; TF Serving writes none to a preflight
    elif row.path.startswith(METRICS):
        assert row.fragment in payload.decode()
    elif status == 200:
        assert row.fragment in json.loads(payload), (row, payload[:300])
    else:
        answer = json.loads(payload)
        assert set(answer) == {"error"} and answer["error"] and row.fragment in answer["error"], (row, answer)


def test_case_and_decoding_reach_the_same_model(rest_server):  # noqa: F811
    """The routes the table calls 200 are one model: the same predictions for the same seeds."""
    port = rest_server.rest_port
    answers = [json.loads(_request(port, "POST", path, PREDICT_BODY)[1])["predictions"]
               for path in ("/v1/models/gan:predict", "/V1/Models/g%61n/VERSIONS/1:predict")]
    assert answers[0] == answers[1]


# --------------------------------------------------------------------------- chunked bodies


def test_chunked_predict_gets_the_content_length_answer_and_keeps_the_connection(rest_server):  # noqa: F811
    """http.client's chunked encoding, in small pieces: the same answer as the same body with a
    Content-Length, and the connection is still in step for the next request."""
    port = rest_server.rest_port
    _, expected = _request(port, "POST", "/v1/models/gan:predict", PREDICT_BODY)
    pieces = [PREDICT_BODY[i:i + 7] for i in range(0, len(PREDICT_BODY), 7)]
    connection = _connection(rest_server)
    try:
        connection.request("POST", "/v1/models/gan:predict", body=iter(pieces), encode_chunked=True)
        response = connection.getresponse()
        assert response.status == 200 and response.read() == expected
        _valid_status(connection)
    finally:
        connection.close()


def test_chunked_body_with_extensions_and_trailers_over_a_raw_socket(rest_server):  # noqa: F811
    body = PREDICT_BODY
    chunked = b"%x;name=value\r\n%s\r\n%x\r\n%s\r\n0\r\nX-Trailer: 1\r\n\r\n" % (10, body[:10], len(body) - 10, body[10:])
    with socket.create_connection(("127.0.0.1", rest_server.rest_port), timeout=10) as sock:
        sock.sendall(b"POST /v1/models/gan:predict HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
                     b"Connection: close\r\n\r\n" + chunked)
        answer = _read_until_closed(sock)
    head, _, payload = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), answer[:300]
    assert len(json.loads(payload)["predictions"]) == 2


@pytest.mark.parametrize("path", ["/v1/models/gan/metadata", "/v1/models/gan:foo", "/v2/whatever"])
def test_chunked_body_of_a_refused_request_leaves_the_connection_in_step(rest_server, path):  # noqa: F811
    connection = _connection(rest_server)
    try:
        connection.request("POST", path, body=iter([b'{"instances":', b" [1, 2, 3]}"]), encode_chunked=True)
        response = connection.getresponse()
        assert response.status in (400, 404) and json.loads(response.read())["error"]
        _valid_status(connection)
    finally:
        connection.close()


def test_chunked_body_over_the_limit_is_413_and_not_read_on(rest_server):  # noqa: F811
    """A chunked body gives no size up front: the server counts what arrives, answers 413 once
    it passes the limit and closes; a client that goes on sending is cut off, not read."""
    piece = b"x" * 2**20
    chunk = b"%x\r\n%s\r\n" % (len(piece), piece)
    sent, answer = 0, b""
    with socket.create_connection(("127.0.0.1", rest_server.rest_port), timeout=10) as sock:
        sock.sendall(b"POST /v1/models/gan:predict HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
        try:
            for _ in range(3 * RECEIVE_LIMIT // len(piece)):  # an endless body, bounded here
                sock.sendall(chunk)
                sent += len(piece)
        except (BrokenPipeError, ConnectionResetError, TimeoutError):
            pass
        try:
            answer = _read_until_closed(sock)
        except ConnectionResetError:
            pass
    assert sent < 2 * RECEIVE_LIMIT, f"the server took {sent} bytes of a body limited to {RECEIVE_LIMIT}"
    assert answer.startswith(b"HTTP/1.1 413") and b"limit" in answer, answer[:300]


def test_chunked_body_stalling_is_cut_off(rest_server, monkeypatch):  # noqa: F811
    monkeypatch.setattr(rest_api, "REST_BODY_TIMEOUT_S", 0.5)
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", rest_server.rest_port), timeout=30) as sock:
        sock.sendall(b"POST /v1/models/gan:predict HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                     b"5\r\n{\"ins\r\n")  # the rest never comes
        answer = _read_until_closed(sock, limit_s=10)
    assert answer.startswith(b"HTTP/1.1 400") and b"not received within" in answer, answer[:300]
    assert time.monotonic() - started < 10


def test_broken_chunk_framing_is_400(rest_server):  # noqa: F811
    """libevent: DATA_CORRUPTED, 400 (http.c evhttp_handle_chunked_read)."""
    with socket.create_connection(("127.0.0.1", rest_server.rest_port), timeout=10) as sock:
        sock.sendall(b"POST /v1/models/gan:predict HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n")
        answer = _read_until_closed(sock)
    assert answer.split(b"\r\n", 1)[0].split()[1] == b"400", answer[:300]
    assert json.loads(answer.partition(b"\r\n\r\n")[2])["error"]


@pytest.mark.parametrize("framing", [b"Content-Length: %d" % len(PREDICT_BODY), b"Transfer-Encoding: chunked"])
def test_expect_100_continue_is_answered_before_the_body(rest_server, framing):  # noqa: F811
    """libevent sends "100 Continue" before reading a body announced with Expect: 100-continue
    (http.c evhttp_get_body); curl asks for it before a large body and otherwise waits."""
    body = PREDICT_BODY if framing.startswith(b"Content-Length") else b"%x\r\n%s\r\n0\r\n\r\n" % (len(PREDICT_BODY), PREDICT_BODY)
    with socket.create_connection(("127.0.0.1", rest_server.rest_port), timeout=10) as sock:
        sock.sendall(b"POST /v1/models/gan:predict HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nConnection: close\r\n%s\r\n\r\n" % framing)
        sock.settimeout(5)
        interim = sock.recv(4096)  # nothing of the body sent yet
        assert interim.startswith(b"HTTP/1.1 100 Continue\r\n\r\n"), interim
        sock.sendall(body)
        answer = interim[len(b"HTTP/1.1 100 Continue\r\n\r\n"):] + _read_until_closed(sock)
    assert answer.startswith(b"HTTP/1.1 200"), answer[:300]


def test_other_expectations_are_417(rest_server):  # noqa: F811
    with socket.create_connection(("127.0.0.1", rest_server.rest_port), timeout=10) as sock:
        sock.sendall(b"POST /v1/models/gan:predict HTTP/1.1\r\nHost: x\r\nExpect: something\r\nContent-Length: 2\r\n\r\n")
        answer = _read_until_closed(sock)
    assert answer.startswith(b"HTTP/1.1 417"), answer[:300]
