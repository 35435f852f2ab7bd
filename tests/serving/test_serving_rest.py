"""The REST front end as a server left running: keep-alive stays in step after a refused
request, JSON numbers are taken exactly or refused, a failed request frees what it parsed,
metrics stay well formed and bounded whatever names clients send, and slow clients are cut
off. One tiny DCGAN export and one in-process server (127.0.0.1) for the module; every
request loop is bounded in count and every socket read in time.
"""

import http.client
import json
import os
import shutil
import socket
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import grpc
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import serving.client as client_mod
from gan_pkg import contract
from serving import main as server_main, rest_api
from serving_helpers import LATENT, REPO, export_tiny, quiet, server_args

MAX_BATCH = 8
RECEIVE_LIMIT = 32 * 2**20
EXAMPLES = int(os.environ.get("GAN_FUZZ_EXAMPLES", "120"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize=not os.environ.get("GAN_FUZZ_RANDOM"), database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
REST_ALLOWED = {200, 400, 404, 413, 429}
METRICS = "/monitoring/prometheus/metrics"
INT64 = (-(2**63), 2**63 - 1)
FLOAT32_MAX = float(np.finfo(np.float32).max)


@pytest.fixture(scope="module")
def rest_server(tmp_path_factory):
    base = tmp_path_factory.mktemp("rest-export")
    export_tiny(base)
    monitoring = base / "monitoring.config"
    shutil.copy(REPO / "serving" / "monitoring.config", monitoring)
    running = server_main.start(
        server_args(model_base_path=str(base / "gan"), max_batch_size=MAX_BATCH, monitoring_config_file=str(monitoring),
                    grpc_channel_arguments=f"grpc.max_receive_message_length={RECEIVE_LIMIT}"),
        log=quiet,
    )
    yield running
    running.stop(grace=2)


def _connection(running):
    return http.client.HTTPConnection("127.0.0.1", running.rest_port, timeout=30)


def _exchange(connection, method, path, body=None):
    """One request on a (possibly kept-alive) connection -> (status, JSON-decoded body or raw bytes, headers)."""
    headers = {"Content-Type": "application/json"} if body is not None else {}
    connection.request(method, path, body=body, headers=headers)
    response = connection.getresponse()
    payload = response.read()
    try:
        payload = json.loads(payload)
    except ValueError:
        pass
    return response.status, payload, response


def _post(running, path, body: bytes):
    connection = _connection(running)
    try:
        status, payload, _ = _exchange(connection, "POST", path, body)
        return status, payload
    finally:
        connection.close()


@pytest.mark.parametrize("head", [
    b"POST /v1/models/gan:predict HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n",
    b"POST /v1/models/gan:predict HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
    b"GET /v1/models/gan HTTP/9\r\n\r\n",
])
def test_malformed_http_gets_the_error_json_and_a_closed_connection(rest_server, head):
    with socket.create_connection(("127.0.0.1", rest_server.rest_port), timeout=10) as sock:
        sock.sendall(head)
        answer = _read_until_closed(sock)
    status_line, _, rest = answer.partition(b"\r\n")
    headers, _, body = rest.partition(b"\r\n\r\n")
    assert status_line.split()[1] == b"400", answer[:200]
    assert b"content-type: application/json" in headers.lower()
    assert set(json.loads(body)) == {"error"} and json.loads(body)["error"]


def _valid_status(connection):
    status, payload, _ = _exchange(connection, "GET", "/v1/models/gan")
    assert status == 200, (status, payload)
    assert payload["model_version_status"][0]["state"] == "AVAILABLE"


def _read_until_closed(sock, limit_s=10.0):
    """Everything the server sends until it closes the connection (AssertionError if it does not within limit_s)."""
    sock.settimeout(limit_s)
    answer = b""
    deadline = time.monotonic() + limit_s
    try:
        while time.monotonic() < deadline:
            chunk = sock.recv(65536)
            if not chunk:
                return answer
            answer += chunk
    except TimeoutError:
        pass
    raise AssertionError(f"connection still open after {limit_s}s; received {answer[:200]!r}")


# --------------------------------------------------------------------------- keep-alive


@pytest.mark.parametrize("path, expected", [("/v1/models/gan:classify", 400), ("/v1/models/gan/metadata", 400), ("/v2/whatever", 404)])
def test_refused_request_with_a_body_leaves_the_connection_in_step(rest_server, path, expected):
    """A refused request must still have its body consumed: otherwise the next request on the
    same keep-alive connection is parsed from the leftover body. (TF Serving's statuses:
    tests/serving/test_serving_rest_routing.py.)"""
    connection = _connection(rest_server)
    try:
        status, payload, _ = _exchange(connection, "POST", path, json.dumps({"instances": [1, 2, 3]}).encode())
        assert status == expected and isinstance(payload, dict) and payload["error"], (status, payload)
        _valid_status(connection)
    finally:
        connection.close()


# --------------------------------------------------------------------------- strict JSON numbers

NOISE_TAIL = [0.0] * (LATENT - 1)
REFUSED = {
    "seed 2**63": {"signature_name": "generate", "instances": [2**63]},
    "seed 2**64-1 columnar": {"signature_name": "generate", "inputs": {"seed": [2**64 - 1]}},
    "seed -2**63-1": {"signature_name": "generate", "instances": [-(2**63) - 1]},
    "seed 10**30": {"signature_name": "generate", "instances": [10**30]},
    "seed 1.5": {"signature_name": "generate", "instances": [1.5]},
    "seed 1.0": {"signature_name": "generate", "instances": [1.0]},
    "seed true": {"signature_name": "generate", "instances": [True]},
    "seed true among ints": {"signature_name": "generate", "instances": [True, 2]},
    "seed string": {"signature_name": "generate", "instances": ["3"]},
    "seed null": {"signature_name": "generate", "instances": [None, 1]},
    "noise true among floats": {"instances": [[True, *NOISE_TAIL]]},
    "noise beyond float32": {"instances": [[1e39, *NOISE_TAIL]]},
    "noise below -float32": {"instances": [[-3.5e38, *NOISE_TAIL]]},
    "noise int beyond float32": {"instances": [[10**39, *NOISE_TAIL]]},
}
RAW_REFUSED = {
    "seed of 5,000 digits": b'{"signature_name": "generate", "instances": [' + b"9" * 5000 + b"]}",
    "negative seed of 5,000 digits": b'{"signature_name": "generate", "inputs": {"seed": [-' + b"7" * 5000 + b"]}}",
    "noise 1e400": b'{"instances": [[1e400' + b", 0.0" * (LATENT - 1) + b"]]}",
    "noise NaN": b'{"instances": [[NaN' + b", 0.0" * (LATENT - 1) + b"]]}",
}


@pytest.mark.parametrize("body", [json.dumps(b).encode() for b in REFUSED.values()] + list(RAW_REFUSED.values()),
                         ids=list(REFUSED) + list(RAW_REFUSED))
def test_numbers_the_input_dtype_cannot_hold_exactly_are_400(rest_server, body):
    status, payload = _post(rest_server, "/v1/models/gan:predict", body)
    assert status == 400, (status, payload)
    assert isinstance(payload, dict) and isinstance(payload.get("error"), str) and payload["error"]


def test_int64_extremes_are_served_exactly(rest_server):
    """The int64 bounds are valid seeds and reach the model unchanged (no wrap, no rounding):
    the noise REST returns for them is the noise gRPC returns for the same int64 seeds."""
    seeds = [INT64[1], INT64[0], 0]
    status, payload = _post(rest_server, "/v1/models/gan:predict",
                            json.dumps({"signature_name": "generate", "instances": seeds}).encode())
    assert status == 200, payload
    rest_noise = np.array([row["noise"] for row in payload["predictions"]], np.float32)
    from tensorflow_serving.apis import prediction_service_pb2_grpc

    with grpc.insecure_channel(f"127.0.0.1:{rest_server.grpc_port}") as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        response = stub.Predict(client_mod.build_predict_request("gan", contract.GENERATE, seeds=seeds), timeout=30)
    grpc_noise = client_mod.parse_predict_response(response)[contract.NOISE]
    np.testing.assert_array_equal(rest_noise, grpc_noise)
    assert not np.array_equal(rest_noise[0], rest_noise[1])
    status, payload = _post(rest_server, "/v1/models/gan:predict",
                            json.dumps({"instances": [[1, -2, FLOAT32_MAX, *[0.5] * (LATENT - 3)]]}).encode())
    assert status == 200, payload  # integers and the float32 bounds are valid float32 noise


# --------------------------------------------------------------------------- memory after failures


def _rss_mb() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS in /proc/self/status")


def test_failed_large_requests_do_not_keep_their_bodies_alive(rest_server):
    """5 x ~20 MiB bodies that parse but are wrong (a 10-million-element nested list for `seed`;
    5 million noise values ending in a string): once each is answered, nothing of it stays
    referenced, so RSS stays near its baseline without a garbage collection (a traceback
    cycle kept every failed request's body and arrays before: +546 MB here)."""
    bodies = [b'{"signature_name": "generate", "instances": [[' + b"0," * (10 * 2**20 - 1) + b"0]]}",
              b'{"instances": [[' + b"0.5," * (5 * 2**20) + b'"x"]]}']
    for body in bodies:  # warm-up: allocator arenas, thread pool
        status, payload = _post(rest_server, "/v1/models/gan:predict", body)
        assert status == 400, payload
    baseline = _rss_mb()
    for i in range(5):
        status, payload = _post(rest_server, "/v1/models/gan:predict", bodies[i % 2])
        assert status == 400 and payload["error"], payload
    grown = _rss_mb() - baseline
    print(f"\nRSS {baseline:.0f} MB -> {baseline + grown:.0f} MB over 5 failed 20 MiB requests")
    assert grown < 150, f"RSS grew {grown:.0f} MB over 5 failed 20 MiB requests"


# --------------------------------------------------------------------------- limits and timeouts


def test_body_over_the_limit_is_413_unread_and_the_connection_closed(rest_server):
    with socket.create_connection(("127.0.0.1", rest_server.rest_port), timeout=30) as s:
        s.sendall(b"POST /v1/models/gan:predict HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % (RECEIVE_LIMIT + 1))
        answer = _read_until_closed(s, limit_s=5)
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert b"Connection: close" in answer and b'"error"' in answer, answer[:400]


def test_client_stalling_in_the_headers_is_cut_off(rest_server, monkeypatch):
    monkeypatch.setattr(rest_api, "REST_HEADER_TIMEOUT_S", 0.5, raising=False)
    with socket.create_connection(("127.0.0.1", rest_server.rest_port), timeout=30) as s:
        s.sendall(b"GET /v1/models/gan HTTP/1.1\r\nHost: x\r\n")  # the blank line never comes
        _read_until_closed(s, limit_s=5)
    connection = _connection(rest_server)
    try:
        _valid_status(connection)
    finally:
        connection.close()


# --------------------------------------------------------------------------- metrics


def _metrics(running) -> str:
    connection = _connection(running)
    try:
        connection.request("GET", METRICS)
        response = connection.getresponse()
        assert response.status == 200
        return response.read().decode()
    finally:
        connection.close()


def _model_names(text: str) -> set:
    from prometheus_client.parser import text_string_to_metric_families

    return {s.labels["model_name"] for family in text_string_to_metric_families(text) for s in family.samples
            if "model_name" in s.labels}


def _samples(text: str) -> dict:
    """{(sample name, sorted label items): value}, through prometheus_client's own parser."""
    from prometheus_client.parser import text_string_to_metric_families

    return {(s.name.removesuffix("_total"), tuple(sorted(s.labels.items()))): s.value  # the parser adds _total to counters
               for f in text_string_to_metric_families(text) for s in f.samples}


def test_metrics_count_unknown_models_under_one_label_and_cannot_be_injected(rest_server):
    connection = _connection(rest_server)
    try:
        for i in range(20):  # per-name series would grow with every name a client invents
            status, _, _ = _exchange(connection, "POST", f"/v1/models/nope{i}:predict", b'{"instances": [1]}')
            assert status == 404
        status, _, _ = _exchange(connection, "POST", "/v1/models/gan:predict", b'{"signature_name": "generate", "instances": [1]}')
        assert status == 200
    finally:
        connection.close()
    evil = 'x"} 1\n:tensorflow:serving:request_count{model_name="injected",status="OK"'
    from tensorflow_serving.apis import prediction_service_pb2_grpc

    with grpc.insecure_channel(f"127.0.0.1:{rest_server.grpc_port}") as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        with pytest.raises(grpc.RpcError) as caught:
            stub.Predict(client_mod.build_predict_request(evil, contract.GENERATE, seeds=[1]), timeout=30)
        assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    text = _metrics(rest_server)
    assert "injected" not in text
    assert _model_names(text) == {"gan", "<unknown>"}, sorted(_model_names(text))[:30]
    assert "# TYPE :tensorflow:serving:request_count counter" in text.splitlines()  # TF Serving's names: no _total
    assert "# TYPE :tensorflow:serving:request_latency histogram" in text.splitlines()
    samples = _samples(text)
    assert samples[(":tensorflow:serving:request_count", (("model_name", "<unknown>"), ("status", "NOT_FOUND")))] >= 20
    les = [dict(labels)["le"] for name, labels in samples if name.endswith("request_latency_bucket") and dict(labels)["model_name"] == "gan"]
    assert les == ["1000", "2500", "5000", "10000", "25000", "50000", "100000", "250000", "500000", "1e+06", "2.5e+06", "+Inf"]


def test_metrics_label_values_are_escaped():
    from serving.monitoring import Metrics

    metrics = Metrics()
    name = 'a"b\\c\nd'  # a served model's name may hold anything its config gave it
    metrics.record(name, "OK", 0.002)
    text = metrics.text()
    assert _model_names(text) == {name}
    assert all(line.startswith(("#", ":tensorflow:serving:")) for line in text.splitlines() if line), text


# --------------------------------------------------------------------------- property: any JSON body

BIG = "__big_integer__"
leaves = (st.none() | st.booleans() | st.integers() | st.integers(-(2**64), 2**64) | st.floats(allow_nan=False)
          | st.sampled_from([2**63, 2**63 - 1, -(2**63), -(2**63) - 1, 2**64, 1e39, -1e39, FLOAT32_MAX, BIG])
          | st.text(max_size=6))
json_values = st.recursive(leaves, lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
                           max_leaves=25)
seed_leaves = st.integers(-(2**64), 2**64) | st.sampled_from([2**63, -(2**63) - 1, True, False, 1.0, 2.5, None, "1"])
noise_leaves = (st.floats(width=32, allow_nan=False, allow_infinity=False) | st.integers(-(2**63), 2**64 - 1)
                | st.sampled_from([True, 1e39, -3.5e38, FLOAT32_MAX, -FLOAT32_MAX, "0"]))


def _encode(body) -> bytes:
    return json.dumps(body).replace(json.dumps(BIG), "9" * 5000).encode()  # an integer no 64-bit type holds


@st.composite
def predict_bodies(draw):
    """(path, body bytes, expected status or None when any 200/4xx is right)."""
    kind = draw(st.sampled_from(["any", "seeds", "seeds", "noise", "noise", "elsewhere"]))
    if kind == "any":
        path = draw(st.sampled_from(["/v1/models/gan:predict", "/v1/models/gan/versions/1:predict", "/v1/models/x:predict"]))
        return path, _encode(draw(json_values)), None
    if kind == "elsewhere":  # refused whatever the body: 400 under /v1/ (classify, regress: the body or the signature)
        path = draw(st.sampled_from(["/v1/models/gan:classify", "/v1/models/gan/metadata", "/v1/models/gan:regress", "/"]))
        return path, _encode(draw(json_values)), 404 if path == "/" else 400
    row_format = draw(st.booleans())
    if kind == "seeds":
        values = draw(st.lists(seed_leaves, max_size=MAX_BATCH + 2))
        good = all(type(v) is int and INT64[0] <= v <= INT64[1] for v in values)
        body = {"signature_name": "generate"} | ({"instances": values} if row_format else {"inputs": {"seed": values}})
    else:
        values = draw(st.lists(st.lists(noise_leaves, min_size=LATENT, max_size=LATENT), max_size=MAX_BATCH + 2))
        good = all(type(v) in (int, float) and abs(v) <= FLOAT32_MAX for row in values for v in row)
        body = {"instances": values} if row_format else {"inputs": values}
    expected = 400 if not good or not values or len(values) > MAX_BATCH else 200  # too many rows: INVALID_ARGUMENT, as TF Serving
    return "/v1/models/gan:predict", _encode(body), expected


@FUZZ
@given(case=predict_bodies())
def test_any_json_body_gets_200_or_a_4xx_error_and_the_connection_stays_usable(rest_server, case):
    path, body, expected = case
    connection = _connection(rest_server)
    try:
        status, payload, response = _exchange(connection, "POST", path, body)
        assert status in REST_ALLOWED, (status, str(payload)[:300])
        assert isinstance(payload, dict), payload[:300]
        if status != 200:
            assert isinstance(payload.get("error"), str) and payload["error"], payload
        if expected is not None:
            assert status == expected, (expected, status, str(payload)[:300], body[:200])
        if status == 200:
            assert len(payload.get("predictions", payload.get("outputs", ()))) >= 1
        if response.getheader("Connection", "").lower() != "close":
            _valid_status(connection)  # the same connection, still in step
    finally:
        connection.close()
