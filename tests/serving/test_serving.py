"""The embedded TF-Serving-compatible server and the client, end to end on loopback.

One tiny DCGAN export per module; servers run in-process on free 127.0.0.1 ports
(one subprocess test covers the CLI, the ready line and SIGTERM). Every wait is bounded.
"""

import base64
import concurrent.futures
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from types import SimpleNamespace

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import grpc
import numpy as np
import pytest
from PIL import Image

import serving.client as client_mod
from gan_pkg import contract
from serving import core, main as server_main, tensors
from serving_helpers import LATENT, REPO, export_tiny, free_port, quiet, server_args, wait_for


@pytest.fixture(scope="module")
def export_base(tmp_path_factory):
    base = tmp_path_factory.mktemp("export")
    export_tiny(base)
    return base


@pytest.fixture(scope="module")
def served(export_base):
    running = server_main.start(server_args(model_base_path=str(export_base / "gan")), log=quiet)
    yield running
    running.stop(grace=2)


@pytest.fixture(scope="module")
def client(served):
    with client_mod.GeneratorClient(f"127.0.0.1:{served.grpc_port}", retries=0, timeout=30) as c:
        yield c


@pytest.fixture(scope="module")
def stub(served):
    from tensorflow_serving.apis import prediction_service_pb2_grpc

    channel = grpc.insecure_channel(f"127.0.0.1:{served.grpc_port}")
    yield prediction_service_pb2_grpc.PredictionServiceStub(channel)
    channel.close()


def rest(port, path, body=None, raw=None):
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=data)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


# --------------------------------------------------------------------------- gRPC happy paths


def test_status_available(client):
    status = client.status()["model_version_status"]
    assert [(s["version"], s["state"]) for s in status] == [("1", "AVAILABLE")]
    assert status[0]["status"]["error_code"] == 0


def test_metadata_lists_signatures_with_dtypes(client):
    meta = client.metadata()
    assert set(meta) == {contract.SERVING_DEFAULT, contract.GENERATE, contract.GENERATE_PNG}
    assert meta[contract.SERVING_DEFAULT]["inputs"] == {contract.NOISE: ("float32", [None, LATENT])}
    assert meta[contract.SERVING_DEFAULT]["outputs"] == {contract.IMAGES: ("float32", [None, 28, 28, 1])}
    assert meta[contract.GENERATE]["inputs"] == {contract.SEED: ("int64", [None])}
    assert set(meta[contract.GENERATE]["outputs"]) == {contract.IMAGES, contract.NOISE}
    assert meta[contract.GENERATE_PNG]["outputs"] == {contract.PNG: ("string", [None])}


def test_metadata_is_a_signature_def_map_in_an_any(stub):
    from tensorflow_serving.apis import get_model_metadata_pb2

    request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
    request.model_spec.name = "gan"
    response = stub.GetModelMetadata(request, timeout=30)
    assert response.model_spec.version.value == 1
    signature_map = get_model_metadata_pb2.SignatureDefMap()
    assert response.metadata["signature_def"].Unpack(signature_map)
    assert signature_map.signature_def[contract.SERVING_DEFAULT].method_name == core.PREDICT_METHOD


def test_predict_serving_default_images(served, client):
    noise = np.random.default_rng(0).standard_normal((3, LATENT)).astype(np.float32)
    images = client.generate(noise)
    assert images.shape == (3, 28, 28, 1) and images.dtype == np.float32
    assert 0.0 <= images.min() and images.max() <= 1.0
    direct = served.core.models["gan"].servables[1].run(contract.SERVING_DEFAULT, {contract.NOISE: noise})
    np.testing.assert_allclose(images, direct[contract.IMAGES], atol=1e-6)


def test_generate_is_deterministic_per_seed(client):
    both = client.generate(seeds=[5, 6])
    again = client.generate(seeds=[5, 6])
    alone = client.generate(seeds=[6])
    np.testing.assert_array_equal(both, again)
    np.testing.assert_allclose(both[1:], alone, atol=1e-6)
    assert not np.allclose(both[0], both[1])


def test_generate_png_decodes_to_right_size(client):
    pngs = client.generate_png([1, 2])
    assert len(pngs) == 2
    for data in pngs:
        image = Image.open(io.BytesIO(data))
        assert image.format == "PNG" and image.size == (28, 28)


def test_output_filter_and_explicit_version(stub):
    request = client_mod.build_predict_request("gan", contract.GENERATE, seeds=[1, 2], version=1, output_filter=[contract.NOISE])
    response = stub.Predict(request, timeout=30)
    assert set(response.outputs) == {contract.NOISE}
    assert response.model_spec.version.value == 1 and response.model_spec.signature_name == contract.GENERATE
    assert list(client_mod.parse_predict_response(response)[contract.NOISE].shape) == [2, LATENT]


# --------------------------------------------------------------------------- errors


def _noise_request(**changes):
    from tensorflow_serving.apis import predict_pb2

    request = client_mod.build_predict_request("gan", contract.SERVING_DEFAULT, noise=np.zeros((2, LATENT), np.float32))
    for key, value in changes.items():
        if key == "inputs":
            del request.inputs[contract.NOISE]
            for name, array in value.items():
                request.inputs[name].CopyFrom(tensors.to_proto(array))
        elif key == "version":
            request.model_spec.version.value = value
        elif key == "output_filter":
            request.output_filter.extend(value)
        else:
            setattr(request.model_spec, key, value)
    assert isinstance(request, predict_pb2.PredictRequest)
    return request


BAD_REQUESTS = {
    "wrong dtype": (dict(inputs={contract.NOISE: np.zeros((2, LATENT), np.float64)}), "INVALID_ARGUMENT", "float"),
    "wrong shape": (dict(inputs={contract.NOISE: np.zeros((2, 3), np.float32)}), "INVALID_ARGUMENT", "shape"),
    "wrong rank": (dict(inputs={contract.NOISE: np.zeros((LATENT,), np.float32)}), "INVALID_ARGUMENT", "rank"),
    "missing input": (dict(inputs={}), "INVALID_ARGUMENT", "missing"),
    "unknown input": (
        dict(inputs={contract.NOISE: np.zeros((2, LATENT), np.float32), "foo": np.zeros((2,), np.float32)}),
        "INVALID_ARGUMENT",
        "unknown",
    ),
    "non-finite noise": (dict(inputs={contract.NOISE: np.full((2, LATENT), np.nan, np.float32)}), "INVALID_ARGUMENT", "NaN"),
    "empty batch": (dict(inputs={contract.NOISE: np.zeros((0, LATENT), np.float32)}), "INVALID_ARGUMENT", "empty"),
    "unknown model": (dict(name="nope"), "NOT_FOUND", "nope"),
    "unknown version": (dict(version=99), "NOT_FOUND", "99"),
    "unknown signature": (dict(signature_name="nope"), "FAILED_PRECONDITION", "nope"),
    "unknown output_filter": (dict(output_filter=["nope"]), "INVALID_ARGUMENT", "nope"),
    # TF Serving's codes for what can never succeed: INVALID_ARGUMENT, not a code that invites a retry.
    "over max_batch_size": (dict(inputs={contract.NOISE: np.zeros((9, LATENT), np.float32)}), "INVALID_ARGUMENT", "9"),
    "unknown version label": (dict(version_label="nope"), "INVALID_ARGUMENT", "nope"),
    "duplicate output_filter": (dict(output_filter=[contract.IMAGES, contract.IMAGES]), "INVALID_ARGUMENT", "duplicate"),
}


@pytest.mark.parametrize("case", list(BAD_REQUESTS))
def test_bad_request_gets_status_and_server_keeps_serving(stub, case):
    changes, code, fragment = BAD_REQUESTS[case]
    with pytest.raises(grpc.RpcError) as caught:
        stub.Predict(_noise_request(**changes), timeout=30)
    assert caught.value.code().name == code, caught.value.details()
    assert fragment.lower() in caught.value.details().lower()
    good = stub.Predict(_noise_request(), timeout=30)
    assert list(good.outputs[contract.IMAGES].tensor_shape.dim[0:1])[0].size == 2


def test_malformed_tensor_proto_is_invalid_argument(stub):
    request = _noise_request()
    request.inputs[contract.NOISE].tensor_content = b"\x00" * 7  # not 2*100 float32s
    with pytest.raises(grpc.RpcError) as caught:
        stub.Predict(request, timeout=30)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_client_raises_serving_error_with_code(served):
    with client_mod.GeneratorClient(f"127.0.0.1:{served.grpc_port}", model_name="nope", retries=0) as c:
        with pytest.raises(client_mod.ServingError) as caught:
            c.generate(seeds=[1])
    assert caught.value.code == "NOT_FOUND"


def test_client_does_not_retry_what_can_never_succeed(served, monkeypatch):
    slept = []
    monkeypatch.setattr(client_mod, "time", SimpleNamespace(sleep=slept.append))  # the client's backoff only
    with client_mod.GeneratorClient(f"127.0.0.1:{served.grpc_port}", retries=3) as c:
        for call in (lambda: c.generate(seeds=list(range(9))), lambda: c.predict(seeds=[1], output_filter=[contract.IMAGES] * 2)):
            with pytest.raises(client_mod.ServingError) as caught:
                call()
            assert caught.value.code == "INVALID_ARGUMENT", caught.value.message
    assert slept == []


# --------------------------------------------------------------------------- REST


def test_rest_status_and_metadata(served):
    code, body = rest(served.rest_port, "/v1/models/gan")
    assert code == 200
    assert body == {"model_version_status": [{"version": "1", "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}}]}
    code, body = rest(served.rest_port, "/v1/models/gan/metadata")
    assert code == 200 and body["model_spec"]["version"] == "1"
    noise = body["metadata"]["signature_def"]["signature_def"][contract.SERVING_DEFAULT]["inputs"][contract.NOISE]
    assert noise["dtype"] == "DT_FLOAT"


def test_rest_predict_row_and_columnar(served, client):
    expected = client.generate(seeds=[3, 4])
    code, body = rest(served.rest_port, "/v1/models/gan:predict", {"signature_name": "generate", "instances": [3, 4]})
    assert code == 200 and len(body["predictions"]) == 2
    np.testing.assert_allclose(np.array([row[contract.IMAGES] for row in body["predictions"]]), expected, atol=1e-6)
    code, body = rest(served.rest_port, "/v1/models/gan/versions/1:predict", {"signature_name": "generate", "inputs": {"seed": [3, 4]}})
    assert code == 200
    np.testing.assert_allclose(np.array(body["outputs"][contract.IMAGES]), expected, atol=1e-6)
    code, body = rest(served.rest_port, "/v1/models/gan:predict", {"instances": np.zeros((1, LATENT)).tolist()})
    assert code == 200 and np.array(body["predictions"]).shape == (1, 28, 28, 1)


def test_rest_png_is_b64_and_rest_client(served, client):
    c = client_mod.RestGeneratorClient(f"127.0.0.1:{served.rest_port}", retries=0)
    pngs = c.generate_png([1])
    assert Image.open(io.BytesIO(pngs[0])).size == (28, 28)
    assert c.generate(seeds=[1, 2]).shape == (2, 28, 28, 1)
    assert c.status()["model_version_status"][0]["state"] == "AVAILABLE"
    assert c.metadata() == client.metadata()


def test_rest_png_bytes_is_b64_as_tf_serving_writes_it(served):
    """TF Serving's REST API base64-encodes a string output only when its name ends in
    `_bytes`: generate_png's `png_bytes` comes back as {"b64": ...} in both formats."""
    for body, found in ((
        {"signature_name": contract.GENERATE_PNG, "instances": [3]}, lambda b: b["predictions"][0]),
        ({"signature_name": contract.GENERATE_PNG, "inputs": {contract.SEED: [3]}}, lambda b: b["outputs"][0]),
    ):
        code, answer = rest(served.rest_port, "/v1/models/gan:predict", body)
        assert code == 200 and set(found(answer)) == {"b64"}
        assert Image.open(io.BytesIO(base64.b64decode(found(answer)["b64"]))).format == "PNG"


def test_a_contract_1_export_png_is_read_over_grpc_and_refused_clearly_over_rest(tmp_path, monkeypatch):
    """Exports written before png_bytes name the output `png`: TF Serving's REST API sends it as
    text (not `_bytes`), so the client reads it over gRPC and says what to do over REST."""
    from gan_pkg import contract as contract_mod

    monkeypatch.setattr(contract_mod, "PNG", contract_mod.LEGACY_PNG)
    export_tiny(tmp_path)
    monkeypatch.undo()
    running = server_main.start(server_args(model_base_path=str(tmp_path / "gan")), log=quiet)
    try:
        with client_mod.GeneratorClient(f"127.0.0.1:{running.grpc_port}", retries=0, timeout=30) as grpc_client:
            (png,) = grpc_client.generate_png([1])
        assert Image.open(io.BytesIO(png)).size == (28, 28)
        code, answer = rest(running.rest_port, "/v1/models/gan:predict", {"signature_name": contract.GENERATE_PNG, "instances": [1]})
        assert code == 200 and isinstance(answer["predictions"][0], str)  # text, as TF Serving writes it
        with pytest.raises(client_mod.ServingError, match="export contract 1.*use gRPC, or re-export"):
            client_mod.RestGeneratorClient(f"127.0.0.1:{running.rest_port}", retries=0).generate_png([1])
    finally:
        running.stop(grace=2)


@pytest.mark.parametrize(
    "path, body, code",
    [
        ("/v1/models/gan:predict", b"{not json", 400),
        ("/v1/models/gan:predict", b'{"instances": [[1, 2]]}', 400),
        ("/v1/models/gan:predict", b'{"instances": [["a"]]}', 400),
        ("/v1/models/gan:predict", b'{"inputs": {"foo": [1]}}', 400),
        ("/v1/models/gan:predict", b'{"signature_name": "nope", "instances": [1]}', 400),
        ("/v1/models/gan:predict", b'{"signature_name": "generate", "instances": [1.5]}', 400),
        ("/v1/models/nope:predict", b'{"instances": [1]}', 404),
        ("/v1/models/gan/versions/9:predict", b'{"instances": [1]}', 404),
        ("/v1/models/gan:predict", json.dumps({"signature_name": "generate", "instances": list(range(9))}).encode(), 400),
        ("/v1/models/gan/labels/nope:predict", b'{"instances": [1]}', 400),
        ("/v2/whatever", b"{}", 404),
    ],
)
def test_rest_errors(served, path, body, code):
    got, payload = rest(served.rest_port, path, raw=body)
    assert got == code and payload["error"]
    assert rest(served.rest_port, "/v1/models/gan")[0] == 200


# --------------------------------------------------------------------------- versions on disk


def test_new_version_picked_up_half_written_ignored_deleted_unloaded(tmp_path, export_base):
    base = tmp_path / "export"
    shutil.copytree(export_base / "gan", base / "gan")
    running = server_main.start(server_args(model_base_path=str(base / "gan")), log=quiet)
    try:
        core = running.core.models["gan"]
        # A staging folder (complete, but hidden) and a version folder with no saved_model.pb yet.
        shutil.copytree(base / "gan" / "1", base / "gan" / ".tmp-export-abc")
        (base / "gan" / "50" / "variables").mkdir(parents=True)
        new = export_tiny(base)  # next integer version, renamed into place atomically
        version = int(new.name)
        assert version == 51
        wait_for(lambda: core.states.get(version, ("",))[0] == "AVAILABLE", timeout=60, what=f"version {version} AVAILABLE")
        with client_mod.GeneratorClient(f"127.0.0.1:{running.grpc_port}", retries=0) as c:
            response = c._call(c.prediction.Predict, client_mod.build_predict_request("gan", contract.GENERATE, seeds=[1]))
            assert response.model_spec.version.value == version
            wait_for(lambda: 1 not in core.servables, what="version 1 unloaded")
            assert set(core.servables) == {version} and 50 not in core.states
            shutil.rmtree(new)  # deleted from disk: unloaded, and the latest left (1) is served again
            wait_for(lambda: set(core.servables) == {1}, what="fallback to version 1")
            # The servable leaves the table before its state reads END: wait for the state too.
            wait_for(lambda: core.states[version][0] == "END", what=f"version {version} END")
            assert c.generate(seeds=[1]).shape == (1, 28, 28, 1)
    finally:
        running.stop(grace=2)


# --------------------------------------------------------------------------- batching


def test_batching_merges_concurrent_requests(tmp_path, export_base, client):
    params = tmp_path / "batching.config"
    params.write_text("max_batch_size { value: 16 }\nbatch_timeout_micros { value: 1000000 }\nnum_batch_threads { value: 1 }\n")
    running = server_main.start(
        server_args(model_base_path=str(export_base / "gan"), enable_batching=True, batching_parameters_file=str(params), max_batch_size=64),
        log=quiet,
    )
    try:
        batcher = running.core.batcher
        assert running.core.max_batch_size == 16
        seeds = [[10 * i, 10 * i + 1] for i in range(4)]
        expected = [client.generate(seeds=s) for s in seeds]  # unbatched server
        barrier = threading.Barrier(len(seeds))
        batcher.batch_sizes.clear()

        def call(s):
            with client_mod.GeneratorClient(f"127.0.0.1:{running.grpc_port}", retries=0) as c:
                barrier.wait(timeout=30)
                return c.generate(seeds=s)

        with concurrent.futures.ThreadPoolExecutor(len(seeds)) as pool:
            results = list(pool.map(call, seeds, timeout=60))
        for got, want in zip(results, expected):
            np.testing.assert_allclose(got, want, atol=1e-5)
        assert max(batcher.batch_sizes) > 2, list(batcher.batch_sizes)  # at least two requests shared a batch
        assert sum(batcher.batch_sizes) == 8
        with client_mod.GeneratorClient(f"127.0.0.1:{running.grpc_port}", retries=0) as c:
            with pytest.raises(client_mod.ServingError) as caught:
                c.generate(seeds=list(range(17)))
            assert caught.value.code == "INVALID_ARGUMENT"
    finally:
        running.stop(grace=2)


# --------------------------------------------------------------------------- model config file, 1-D preset


def test_model_config_file_serves_every_model(tmp_path, export_base):
    shutil.copytree(export_base / "gan", tmp_path / "models" / "gan")
    export_tiny(tmp_path / "models", preset="dist1d", model_name="dist")
    config = tmp_path / "models.config"
    config.write_text(
        'model_config_list {\n'
        '  config { name: "gan" base_path: "models/gan" model_platform: "tensorflow" }\n'
        '  config { name: "dist" base_path: "models/dist" model_platform: "tensorflow"\n'
        '           model_version_policy { specific { versions: 1 } } }\n'
        '}\n'
    )
    running = server_main.start(server_args(model_config_file=str(config)), log=quiet)
    try:
        target = f"127.0.0.1:{running.grpc_port}"
        with client_mod.GeneratorClient(target, model_name="dist", retries=0) as dist, client_mod.GeneratorClient(target, retries=0) as gan:
            assert set(dist.metadata()) == {contract.SERVING_DEFAULT, contract.GENERATE}
            latent = client_mod.latent_dim_of(dist.metadata())
            samples = dist.generate(np.random.default_rng(0).uniform(size=(4, latent)).astype(np.float32))
            assert samples.shape == (4, 100)
            assert dist.generate(seeds=[1, 2]).shape == (4 // 2, 100)
            assert gan.generate(seeds=[1]).shape == (1, 28, 28, 1)
    finally:
        running.stop(grace=2)


# --------------------------------------------------------------------------- client pure functions


def test_client_request_building_and_parsing():
    request = client_mod.build_predict_request("m", "generate", seeds=[1, 2, 3], version=4, output_filter=["noise"])
    assert request.model_spec.name == "m" and request.model_spec.version.value == 4
    assert request.model_spec.signature_name == "generate" and list(request.output_filter) == ["noise"]
    seed = request.inputs[contract.SEED]
    assert seed.dtype == 9 and [d.size for d in seed.tensor_shape.dim] == [3]  # DT_INT64

    from tensorflow_serving.apis import predict_pb2

    response = predict_pb2.PredictResponse()
    images = np.linspace(0, 1, 2 * 4 * 4, dtype=np.float32).reshape(2, 4, 4, 1)
    response.outputs[contract.IMAGES].CopyFrom(tensors.to_proto(images))
    parsed = client_mod.parse_predict_response(response)
    np.testing.assert_array_equal(client_mod.pick_output(parsed), images)

    assert client_mod.build_rest_body("generate", seeds=np.array([1, 2])) == {"signature_name": "generate", "inputs": {"seed": [1, 2]}}
    assert client_mod.default_signature(noise=np.zeros((1, 2))) == contract.SERVING_DEFAULT
    assert client_mod.default_signature(seeds=[1]) == contract.GENERATE
    with pytest.raises(ValueError):
        client_mod.default_signature()
    noise = np.zeros((1, LATENT))
    assert client_mod.generate_signature(contract.GENERATE, noise=noise) == contract.SERVING_DEFAULT
    assert client_mod.generate_signature(contract.SERVING_DEFAULT, seeds=[1]) == contract.GENERATE
    assert client_mod.generate_signature(contract.GENERATE_PNG, seeds=[1]) == contract.GENERATE
    assert client_mod.generate_signature("custom", seeds=[1]) == "custom"


def test_client_rest_parsing_and_backoff():
    parsed = client_mod.parse_rest_response({"predictions": [{"b64": "iVBO"}, {"b64": "iVBO"}]})
    assert parsed["output"].tolist() == [b"\x89PN", b"\x89PN"]
    rows = client_mod.parse_rest_response({"predictions": [{"images": [[0.5]], "noise": [1.0]}]})
    assert rows["images"].shape == (1, 1, 1) and rows["noise"].dtype == np.float32
    assert client_mod.parse_rest_response({"outputs": [[1.0, 2.0]]})["output"].shape == (1, 2)
    with pytest.raises(client_mod.ServingError):
        client_mod.parse_rest_response({"error": "bad"})
    assert client_mod.backoff_delays(5, base=0.25, cap=1.0) == [0.25, 0.5, 1.0, 1.0, 1.0]
    assert client_mod.backoff_delays(0) == []


def test_client_retries_unavailable_then_gives_a_clear_error():
    port = free_port()  # nothing listens here
    started = time.monotonic()
    with client_mod.GeneratorClient(f"127.0.0.1:{port}", retries=2, timeout=5) as c:
        with pytest.raises(client_mod.ServingError) as caught:
            c.status()
    assert caught.value.code == "UNAVAILABLE" and "after 3 attempts" in caught.value.message
    assert 0.7 <= time.monotonic() - started < 20  # slept 0.25 + 0.5 between attempts


# --------------------------------------------------------------------------- the scripts


def test_server_and_client_scripts(tmp_path, export_base):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    grpc_port, rest_port = free_port(), free_port()
    server = subprocess.Popen(
        [sys.executable, str(REPO / "serving" / "server.py"), "--model_base_path", str(export_base / "gan"),
         f"--port={grpc_port}", f"--rest_api_port={rest_port}"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env, cwd=REPO,
    )
    try:
        ready = []
        reader = threading.Thread(target=lambda: ready.append(server.stdout.readline()), daemon=True)
        reader.start()
        reader.join(timeout=90)
        assert ready and ready[0].startswith("serving gan version 1 on 127.0.0.1:"), ready
        assert f"127.0.0.1:{grpc_port} (gRPC)" in ready[0] and f"127.0.0.1:{rest_port} (REST)" in ready[0]

        out = tmp_path / "grid.png"
        done = subprocess.run(
            [sys.executable, str(REPO / "serving" / "client.py"), "--server", f"127.0.0.1:{grpc_port}", "--num", "4", "--out", str(out)],
            capture_output=True, text=True, env=env, timeout=120, cwd=REPO,
        )
        assert done.returncode == 0, done.stderr[-2000:]
        assert str(out) in done.stdout and Image.open(out).format == "PNG"

        server.send_signal(signal.SIGTERM)
        assert server.wait(timeout=30) == 0
    finally:
        if server.poll() is None:
            server.kill()
            server.wait(timeout=10)


@pytest.mark.parametrize("transport", [["--server"], ["--rest", "--rest-server"]], ids=["grpc", "rest"])
def test_client_script_unreachable_server_fails_with_one_line(tmp_path, transport):
    done = subprocess.run(
        [sys.executable, str(REPO / "serving" / "client.py"), *transport, f"127.0.0.1:{free_port()}",
         "--retries", "0", "--out", str(tmp_path / "x.png")],
        capture_output=True, text=True, timeout=120, cwd=REPO, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
    )
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: UNAVAILABLE") and "cannot reach" in lines[0], done.stderr
    assert not (tmp_path / "x.png").exists()


def test_version_failing_warmup_is_not_served_and_old_one_stays(tmp_path, export_base):
    base = tmp_path / "gan"
    shutil.copytree(export_base / "gan", base)
    running = server_main.start(server_args(model_base_path=str(base), rest_api_port=0), log=quiet)
    try:
        core = running.core.models["gan"]
        staging = tmp_path / "staging"
        shutil.copytree(base / "1", staging)
        (staging / contract.ASSETS_EXTRA / contract.WARMUP_FILE).write_bytes(b"not a TFRecord")
        staging.rename(base / "2")
        wait_for(lambda: core.states.get(2, ("",))[0] == "END", what="version 2 to fail")
        state, code, message = core.states[2]
        assert code != grpc.StatusCode.OK and "failed to load" in message
        assert set(core.servables) == {1}
        with client_mod.GeneratorClient(f"127.0.0.1:{running.grpc_port}", retries=0) as c:
            assert c.generate(seeds=[1]).shape == (1, 28, 28, 1)
    finally:
        running.stop(grace=2)


def test_stop_drains_in_flight_requests(tmp_path, export_base):
    params = tmp_path / "batching.config"
    params.write_text("max_batch_size { value: 8 }\nbatch_timeout_micros { value: 1000000 }\n")  # holds a lone request 1 s
    running = server_main.start(
        server_args(model_base_path=str(export_base / "gan"), enable_batching=True, batching_parameters_file=str(params), rest_api_port=0),
        log=quiet,
    )
    with client_mod.GeneratorClient(f"127.0.0.1:{running.grpc_port}", retries=0) as c:
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            pending = pool.submit(c.generate, None, [1, 2])
            wait_for(lambda: running.core.batcher._queues, timeout=30, interval=0.01, what="request queued")
            running.stop(grace=10)
            assert pending.result(timeout=30).shape == (2, 28, 28, 1)
        with pytest.raises(client_mod.ServingError) as caught:
            c.status()
    assert caught.value.code == "UNAVAILABLE"


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs openssl to make a test certificate")
def test_ssl_config_file_serves_tls(tmp_path, export_base):
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "1",
         "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost"],
        check=True, capture_output=True, timeout=60,
    )
    ssl = tmp_path / "ssl.config"
    ssl.write_text(f"server_key: {json.dumps(key.read_text())}\nserver_cert: {json.dumps(cert.read_text())}\nclient_verify: false\n")
    running = server_main.start(server_args(model_base_path=str(export_base / "gan"), ssl_config_file=str(ssl), rest_api_port=0), log=quiet)
    try:
        from tensorflow_serving.apis import prediction_service_pb2_grpc

        credentials = grpc.ssl_channel_credentials(root_certificates=cert.read_bytes())
        with grpc.secure_channel(f"localhost:{running.grpc_port}", credentials) as channel:
            response = prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict(_noise_request(), timeout=30)
        assert response.model_spec.version.value == 1
    finally:
        running.stop(grace=2)


def test_prometheus_metrics_on_rest_port(tmp_path, export_base):
    monitoring = tmp_path / "monitoring.config"
    shutil.copy(REPO / "serving" / "monitoring.config", monitoring)
    running = server_main.start(server_args(model_base_path=str(export_base / "gan"), monitoring_config_file=str(monitoring)), log=quiet)
    try:
        assert rest(running.rest_port, "/v1/models/gan:predict", {"signature_name": "generate", "instances": [1]})[0] == 200
        assert rest(running.rest_port, "/v1/models/gan:predict", {"signature_name": "nope", "instances": [1]})[0] == 400
        with urllib.request.urlopen(f"http://127.0.0.1:{running.rest_port}/monitoring/prometheus/metrics", timeout=30) as response:
            text = response.read().decode()
        from prometheus_client.parser import text_string_to_metric_families

        samples = {(s.name.removesuffix("_total"), tuple(sorted(s.labels.items()))): s.value  # the parser adds _total to counters
               for f in text_string_to_metric_families(text) for s in f.samples}
        assert samples[(":tensorflow:serving:request_count", (("model_name", "gan"), ("status", "OK")))] == 1
        assert samples[(":tensorflow:serving:request_count", (("model_name", "gan"), ("status", "FAILED_PRECONDITION")))] == 1
        assert samples[(":tensorflow:serving:request_latency_count", (("API", "predict"), ("model_name", "gan")))] == 2
    finally:
        running.stop(grace=2)
