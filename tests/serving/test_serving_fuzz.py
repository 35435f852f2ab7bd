"""Bad input, fuzzed: property-based Predict requests (gRPC) and REST bodies against one
embedded server (tiny DCGAN export, --max_batch_size 8, a 1 MiB receive limit).

Every request gets the documented status (INVALID_ARGUMENT, also over the batch limit;
NOT_FOUND, FAILED_PRECONDITION, RESOURCE_EXHAUSTED over the message size; REST 400/404/429),
never INTERNAL/UNKNOWN/500, and the server answers a valid request after each one. Example
counts are fixed (see EXAMPLES) and deadline=None, so the run is bounded by count, not by the
machine's speed.
"""

import http.client
import json
import math
import os
import socket
import urllib.parse

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import grpc
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import serving.client as client_mod
from gan_pkg import contract
from serving import main as server_main, rest_api, tensors
from serving_helpers import LATENT, export_tiny, quiet, server_args

MAX_BATCH = 8
RECEIVE_LIMIT = 2**20
EXAMPLES = int(os.environ.get("GAN_FUZZ_EXAMPLES", "120"))  # per property; about 10 ms each here
# Fixed examples in `make test`; GAN_FUZZ_RANDOM=1 GAN_FUZZ_EXAMPLES=5000 explores beyond them.
FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize=not os.environ.get("GAN_FUZZ_RANDOM"), database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])

GRPC_ALLOWED = {"OK", "INVALID_ARGUMENT", "NOT_FOUND", "FAILED_PRECONDITION", "RESOURCE_EXHAUSTED"}
REST_ALLOWED = {200, 400, 404, 429}

# signature -> (input key, numpy dtype, shape after the batch dimension)
SIGNATURES = {
    contract.SERVING_DEFAULT: (contract.NOISE, np.float32, (LATENT,)),
    contract.GENERATE: (contract.SEED, np.int64, ()),
    contract.GENERATE_PNG: (contract.SEED, np.int64, ()),
}
DTYPES = [np.float32, np.float64, np.float16, np.int64, np.int32, np.bool_, object]


@pytest.fixture(scope="module")
def fuzz_server(tmp_path_factory):
    base = tmp_path_factory.mktemp("fuzz-export")
    export_tiny(base)
    running = server_main.start(
        server_args(model_base_path=str(base / "gan"), max_batch_size=MAX_BATCH,
                    grpc_channel_arguments=f"grpc.max_receive_message_length={RECEIVE_LIMIT}"),
        log=quiet,
    )
    channel = grpc.insecure_channel(f"127.0.0.1:{running.grpc_port}", options=client_mod.CHANNEL_OPTIONS)
    yield running, channel
    channel.close()
    running.stop(grace=2)


def _predict_stub(channel):
    from tensorflow_serving.apis import prediction_service_pb2_grpc

    return prediction_service_pb2_grpc.PredictionServiceStub(channel)


def _call(channel, request):
    try:
        return "OK", _predict_stub(channel).Predict(request, timeout=30)
    except grpc.RpcError as error:
        return error.code().name, error.details()


def _still_serving(channel):
    request = client_mod.build_predict_request("gan", contract.GENERATE, seeds=[7])
    response = _predict_stub(channel).Predict(request, timeout=30)
    assert [d.size for d in response.outputs[contract.IMAGES].tensor_shape.dim] == [1, 28, 28, 1]


def _rest(port, method, path, body=b"", headers=None):
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        payload = response.read()
        return response.status, payload
    finally:
        connection.close()


def _rest_still_serving(port):
    status, payload = _rest(port, "POST", "/v1/models/gan:predict", json.dumps({"signature_name": "generate", "instances": [3]}).encode())
    assert status == 200 and len(json.loads(payload)["predictions"]) == 1


# --------------------------------------------------------------------------- gRPC Predict, with an oracle


@st.composite
def arrays(draw):
    dtype = draw(st.sampled_from(DTYPES))
    rank = draw(st.integers(0, 3))
    dims = [draw(st.sampled_from([0, 1, 2, 3, MAX_BATCH, MAX_BATCH + 1, LATENT, 7])) for _ in range(rank)]
    if math.prod(dims) > 20_000:
        dims = dims[:1] + [1] * (rank - 1)
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    if dtype is object:
        array = np.array([b"x" * int(n) for n in rng.integers(0, 5, math.prod(dims))], dtype=object).reshape(dims)
    elif dtype is np.bool_:
        array = rng.integers(0, 2, dims).astype(bool)
    elif np.issubdtype(dtype, np.integer):
        array = rng.integers(-(2**31), 2**31, dims).astype(dtype)
    else:
        array = rng.standard_normal(dims).astype(dtype)
        special = draw(st.sampled_from([None, None, np.nan, np.inf, -np.inf]))
        if special is not None and array.size:
            array.reshape(-1)[draw(st.integers(0, array.size - 1))] = special
    return array


def well_formed(signature):
    key, dtype, tail = SIGNATURES[signature]
    return st.builds(
        lambda rows, seed: {key: np.random.default_rng(seed).standard_normal((rows, *tail)).astype(dtype)},
        st.integers(1, MAX_BATCH), st.integers(0, 1000),
    )


@st.composite
def predict_cases(draw):
    model = draw(st.sampled_from(["gan", "gan", "gan", "nope", ""]))
    version = draw(st.sampled_from([None, None, None, 1, 2, 0, 2**63 - 1]))
    signature = draw(st.sampled_from(["", contract.SERVING_DEFAULT, contract.GENERATE, contract.GENERATE_PNG, "nope"]))
    effective = signature or contract.SERVING_DEFAULT
    if effective in SIGNATURES and draw(st.booleans()):
        inputs = draw(well_formed(effective))  # half the cases start right, then maybe one thing goes wrong
        key = next(iter(inputs))
        mutation = draw(st.sampled_from(["none", "none", "dtype", "array", "extra", "missing", "rename"]))
        if mutation == "dtype":
            inputs[key] = draw(arrays())
        elif mutation == "array":
            inputs[key] = draw(arrays())
        elif mutation == "extra":
            inputs["extra"] = draw(arrays())
        elif mutation == "missing":
            inputs = {}
        elif mutation == "rename":
            inputs = {draw(st.sampled_from(["seed", "noise", "images", ""])): inputs[key]}
    else:
        keys = draw(st.lists(st.sampled_from([contract.NOISE, contract.SEED, "extra"]), unique=True, max_size=2))
        inputs = {k: draw(arrays()) for k in keys}
    return model, version, signature, inputs


def expected_code(model, version, signature, inputs):
    """What the server must answer, in the order it checks (server.py: resolve, signature, inputs)."""
    if model != "gan" or (version is not None and version != 1):
        return "NOT_FOUND"
    signature = signature or contract.SERVING_DEFAULT
    if signature not in SIGNATURES:
        return "FAILED_PRECONDITION"
    key, dtype, tail = SIGNATURES[signature]
    if set(inputs) != {key}:
        return "INVALID_ARGUMENT"
    array = inputs[key]
    if array.dtype != np.dtype(dtype) or array.ndim != 1 + len(tail) or tuple(array.shape[1:]) != tail:
        return "INVALID_ARGUMENT"
    if array.shape[0] > MAX_BATCH:
        return "INVALID_ARGUMENT"  # as TF Serving: too many rows can never succeed, so nothing invites a retry
    if array.shape[0] == 0 or (np.issubdtype(array.dtype, np.floating) and not np.isfinite(array).all()):
        return "INVALID_ARGUMENT"
    return "OK"


@FUZZ
@given(case=predict_cases())
def test_fuzzed_predict_gets_the_documented_status(fuzz_server, case):
    _, channel = fuzz_server
    model, version, signature, inputs = case
    from tensorflow_serving.apis import predict_pb2

    request = predict_pb2.PredictRequest()
    request.model_spec.name = model
    request.model_spec.signature_name = signature
    if version is not None:
        request.model_spec.version.value = version
    for key, array in inputs.items():
        request.inputs[key].CopyFrom(tensors.to_proto(array))
    code, detail = _call(channel, request)
    want = expected_code(model, version, signature, inputs)
    assert code == want, (want, code, detail, {k: (v.dtype, v.shape) for k, v in inputs.items()})
    if code == "OK":
        outputs = client_mod.parse_predict_response(detail)
        rows = next(iter(inputs.values())).shape[0]
        assert all(v.shape[0] == rows for v in outputs.values())
    _still_serving(channel)


# --------------------------------------------------------------------------- gRPC: hand-made TensorProtos and raw bytes


@st.composite
def raw_tensor_protos(draw):
    """TensorProtos whose header and payload disagree: short/long tensor_content, huge claimed shapes
    filled from one value, negative or unknown dimensions, DataType numbers TF does not serve."""
    from tensorflow.core.framework import tensor_pb2, types_pb2

    proto = tensor_pb2.TensorProto()
    proto.dtype = draw(st.sampled_from([types_pb2.DT_FLOAT, types_pb2.DT_FLOAT, types_pb2.DT_INT64, types_pb2.DT_STRING,
                                        types_pb2.DT_VARIANT, types_pb2.DT_RESOURCE, types_pb2.DT_FLOAT_REF, 77]))
    if draw(st.integers(0, 9)) == 0:
        proto.tensor_shape.unknown_rank = True
    for _ in range(draw(st.integers(0, 3))):
        proto.tensor_shape.dim.add(size=draw(st.sampled_from([-1, 0, 1, 2, LATENT, MAX_BATCH + 1, 10**9, 2**62])))
    filler = draw(st.sampled_from(["content", "float_val", "int64_val", "string_val", "none"]))
    if filler == "content":
        proto.tensor_content = draw(st.binary(max_size=4 * LATENT * 3))
    elif filler == "float_val":
        proto.float_val.extend(draw(st.lists(st.floats(width=32), max_size=5)))
    elif filler == "int64_val":
        proto.int64_val.extend(draw(st.lists(st.integers(-(2**63), 2**63 - 1), max_size=5)))
    elif filler == "string_val":
        proto.string_val.extend(draw(st.lists(st.binary(max_size=8), max_size=5)))
    return proto


@FUZZ
@given(proto=raw_tensor_protos(), signature=st.sampled_from([contract.SERVING_DEFAULT, contract.GENERATE]))
def test_fuzzed_tensor_protos_never_internal_and_never_allocate_the_claimed_shape(fuzz_server, proto, signature):
    _, channel = fuzz_server
    from tensorflow_serving.apis import predict_pb2

    request = predict_pb2.PredictRequest()
    request.model_spec.name = "gan"
    request.model_spec.signature_name = signature
    request.inputs[SIGNATURES[signature][0]].CopyFrom(proto)
    code, detail = _call(channel, request)
    assert code in GRPC_ALLOWED, (code, detail)
    dims = [d.size for d in proto.tensor_shape.dim]
    if dims and dims[0] > MAX_BATCH and code != "OK" and not proto.tensor_shape.unknown_rank:
        assert code == "INVALID_ARGUMENT", (code, detail)
    _still_serving(channel)


@FUZZ
@given(data=st.binary(max_size=512), method=st.sampled_from(["Predict", "GetModelMetadata"]))
def test_fuzzed_raw_bytes_are_invalid_argument_not_internal(fuzz_server, data, method):
    _, channel = fuzz_server
    call = channel.unary_unary(f"/tensorflow.serving.PredictionService/{method}")  # bytes in, bytes out
    try:
        call(data, timeout=30)
        code = "OK"
    except grpc.RpcError as error:
        code = error.code().name
        assert code in GRPC_ALLOWED, (code, error.details())
    _still_serving(channel)


def test_unparsable_request_bytes_name_the_message(fuzz_server):
    _, channel = fuzz_server
    with pytest.raises(grpc.RpcError) as caught:
        channel.unary_unary("/tensorflow.serving.PredictionService/Predict")(b"\xff\xff\xff", timeout=30)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "tensorflow.serving.PredictRequest" in caught.value.details()
    with pytest.raises(grpc.RpcError) as caught:
        channel.unary_unary("/tensorflow.serving.PredictionService/Classify")(b"", timeout=30)
    assert caught.value.code() == grpc.StatusCode.UNIMPLEMENTED


def test_huge_claimed_shape_is_refused_without_allocating(fuzz_server):
    """20 bytes claiming [10**9, 100] float32 (400 GB once filled): refused from the header alone."""
    running, channel = fuzz_server
    from tensorflow.core.framework import tensor_pb2, types_pb2
    from tensorflow_serving.apis import predict_pb2

    request = predict_pb2.PredictRequest()
    request.model_spec.name = "gan"
    proto = tensor_pb2.TensorProto(dtype=types_pb2.DT_FLOAT, float_val=[0.5])
    proto.tensor_shape.dim.add(size=10**9)
    proto.tensor_shape.dim.add(size=LATENT)
    request.inputs[contract.NOISE].CopyFrom(proto)
    code, detail = _call(channel, request)
    assert code == "INVALID_ARGUMENT" and "maximum batch size" in detail
    request.inputs[contract.NOISE].tensor_shape.dim[0].size = 2  # right size, one value fills it: TF Serving accepts that too
    code, detail = _call(channel, request)
    assert code == "OK", detail
    _still_serving(channel)


def test_oversize_grpc_message_is_resource_exhausted(fuzz_server):
    _, channel = fuzz_server
    request = client_mod.build_predict_request("gan", contract.SERVING_DEFAULT, noise=np.zeros((2, LATENT), np.float32))
    request.model_spec.signature_name = "x" * (RECEIVE_LIMIT + 10)
    code, detail = _call(channel, request)
    assert code == "RESOURCE_EXHAUSTED", detail
    _still_serving(channel)


# --------------------------------------------------------------------------- REST


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=6) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=30,
)


@st.composite
def rest_bodies(draw):
    kind = draw(st.sampled_from(["bytes", "json", "shaped", "shaped"]))
    if kind == "bytes":
        return draw(st.binary(max_size=300))
    if kind == "json":
        return json.dumps(draw(json_values)).encode()
    body = {}
    if draw(st.booleans()):
        body["signature_name"] = draw(st.sampled_from(["", "generate", "generate_png", "serving_default", "nope", 3, None]))
    payload = draw(st.one_of(
        json_values,
        st.lists(st.integers(-(2**63), 2**63 - 1), min_size=0, max_size=MAX_BATCH + 2),
        st.lists(st.lists(st.floats(width=32), min_size=LATENT, max_size=LATENT), max_size=MAX_BATCH + 1),
        st.lists(st.fixed_dictionaries({"seed": st.integers(0, 100)}), max_size=3),
    ))
    if draw(st.booleans()):
        body[draw(st.sampled_from(["instances", "inputs"]))] = payload
    if draw(st.integers(0, 5)) == 0:
        body["instances" if "inputs" in body else "inputs"] = payload
    return json.dumps(body, allow_nan=True).encode()


REST_PATHS = st.sampled_from([
    "/v1/models/gan:predict", "/v1/models/gan:predict", "/v1/models/gan:predict", "/v1/models/gan/versions/1:predict",
    "/v1/models/gan/versions/2:predict", "/v1/models/gan/versions/99999999999999999999999:predict",
    "/v1/models/gan/labels/stable:predict", "/v1/models/nope:predict", "/v1/models/gan", "/v1/models/gan/metadata",
    "/v1/models/gan:classify", "/", "/v1/models/%00:predict",
]) | st.text(max_size=12).map(lambda t: "/v1/models/" + urllib.parse.quote(t, safe="") + ":predict")


@FUZZ
@given(path=REST_PATHS, body=rest_bodies(), method=st.sampled_from(["POST", "POST", "POST", "GET"]))
def test_fuzzed_rest_gets_400_404_429_or_200(fuzz_server, path, body, method):
    running, _ = fuzz_server
    status, payload = _rest(running.rest_port, method, path, body if method == "POST" else None)
    assert status in REST_ALLOWED, (status, payload[:300])
    decoded = json.loads(payload)
    if status != 200:
        assert isinstance(decoded.get("error"), str) and decoded["error"]
    _rest_still_serving(running.rest_port)


def test_rest_body_limits_and_broken_headers(fuzz_server):
    running, _ = fuzz_server
    port = running.rest_port
    deep = b"[" * 100_000 + b"]" * 100_000  # Python's json recursion limit: must be 400, not 500
    status, payload = _rest(port, "POST", "/v1/models/gan:predict", deep[: RECEIVE_LIMIT])
    assert status == 400 and b"nested" in payload
    status, _ = _rest(port, "POST", "/v1/models/gan:predict", None, headers={"Content-Length": "abc"})
    assert status == 400
    status, _ = _rest(port, "POST", "/v1/models/gan/versions/99999999999999999999:predict", b'{"instances": [1]}')
    assert status == 400
    # A body claimed larger than the limit is refused from the header (413), unread, and the connection closed.
    with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
        s.sendall(b"POST /v1/models/gan:predict HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000000000\r\n\r\n")
        answer = b""
        while chunk := s.recv(65536):
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 413") and b"Connection: close" in answer, answer[:200]
    # A chunked body is read as TF Serving reads it (tests/serving/test_serving_rest_routing.py); one whose
    # chunk framing is junk is 400.
    with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
        s.sendall(b"POST /v1/models/gan:predict HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n")
        answer = b""
        while chunk := s.recv(65536):
            answer += chunk
    assert answer.split(b"\r\n", 1)[0].endswith(b" 400 Bad Request") and b"chunk size" in answer, answer[:200]
    _rest_still_serving(port)


def test_rest_client_stalling_mid_body_is_cut_off(fuzz_server, monkeypatch):
    running, _ = fuzz_server
    monkeypatch.setattr(rest_api, "REST_BODY_TIMEOUT_S", 0.5)
    with socket.create_connection(("127.0.0.1", running.rest_port), timeout=30) as s:
        s.sendall(b"POST /v1/models/gan:predict HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"instances\"")
        answer = b""
        while chunk := s.recv(65536):
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 400") and b"not received within" in answer, answer[:300]
    _rest_still_serving(running.rest_port)
