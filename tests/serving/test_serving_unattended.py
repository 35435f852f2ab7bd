"""A server you can leave running: what a model's folder may hold (version names, symlinks,
failed versions coming and going), a model config checked as TF Serving checks it, and a
shutdown that answers every call in flight within its grace period.

The repository tests drive serving.repository.Model and serving.core.ModelServer directly
(no ports, no polling thread): one tiny export is made once and linked or copied into each
layout, inside the allowed root. Every wait is bounded; the property test runs a fixed
handful of examples.
"""

import concurrent.futures
import json
import os
import re
import shutil
import socket
import tempfile
import threading
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import grpc
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import serving.client as client_mod
from gan_pkg import contract
from serving import main as server_main
from serving.core import ModelServer
from serving.errors import ServingError
from serving.repository import Model
from serving_helpers import export_tiny, quiet, server_args, wait_for

INT64_MAX = 2**63 - 1


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    """The allowed model root: src/gan/1 is the one real export every layout links to or copies."""
    root = Path(os.path.realpath(tmp_path_factory.mktemp("unattended")))
    export_tiny(root / "src")
    (root / "layouts").mkdir()
    return root


def _export(root) -> Path:
    return root / "src" / "gan" / "1"


class Log(list):
    """A Model/ModelServer log that keeps every line."""

    def __call__(self, *parts, file=None):
        self.append(" ".join(map(str, parts)))


def _model(base, root, warmup=True, **options):
    log = Log()
    model = Model("gan", base, log=log, roots=[root], **options)
    core = ModelServer([model], poll_seconds=0, log=log)
    if not warmup:
        model.warmup = None  # the property test loads many layouts: loading is what it checks
    return model, core, log


def _status(core, label=None) -> dict:
    """GetModelStatus -> {version: (state, error code, message)}."""
    from tensorflow_serving.apis import get_model_status_pb2

    request = get_model_status_pb2.GetModelStatusRequest()
    request.model_spec.name = "gan"
    if label is not None:
        request.model_spec.version_label = label
    response = core.status(request)
    state = get_model_status_pb2.ModelVersionStatus.State.Name
    return {s.version: (state(s.state), s.status.error_code, s.status.error_message) for s in response.model_version_status}


def _ignored(log, name) -> int:
    return sum(line.startswith(f"warning: gan: ignoring {name!r} under ") for line in log)


def _layout(root) -> Path:
    return Path(tempfile.mkdtemp(dir=root / "layouts"))


# --------------------------------------------------------------------------- version names


def test_version_names_are_ascii_digits_that_fit_int64(root):
    base = _layout(root)
    (base / "1").symlink_to(_export(root), target_is_directory=True)
    odd = ["²", "３", "٣", str(INT64_MAX + 1), "9" * 25]  # isdigit() says yes to all; int() to most
    for name in odd:
        (base / name).symlink_to(_export(root), target_is_directory=True)
    model, core, log = _model(base, root)
    core.load_now()
    model.poll()
    model.poll()
    assert set(model.servables) == {1}
    assert _status(core) == {1: ("AVAILABLE", 0, "")}
    assert [_ignored(log, name) for name in odd] == [1] * len(odd), log  # once each, not every poll


def test_a_failed_version_leaves_the_status_once_its_folder_is_gone(root):
    base = _layout(root)
    shutil.copytree(_export(root), base / "1")
    shutil.copytree(_export(root), base / "2")
    (base / "2" / "saved_model.pb").write_bytes(b"\x00" * 64)  # fails to load
    model, core, _ = _model(base, root, labels={"stable": 1})
    core.load_now()
    status = _status(core)
    assert status[1] == ("AVAILABLE", 0, "") and status[2][0] == "END" and status[2][1] != 0
    shutil.rmtree(base / "2")
    model.poll()
    assert _status(core) == {1: ("AVAILABLE", 0, "")}  # the error went with its folder
    (base / "2").symlink_to(_export(root), target_is_directory=True)  # a good version 2 this time
    model.poll()
    assert set(model.servables) == {2}
    assert {code for _, code, _ in _status(core).values()} == {0}
    assert _status(core, label="stable") == {1: ("END", 0, "")}
    with pytest.raises(ServingError) as caught:
        _status(core, label="nope")
    assert caught.value.code == grpc.StatusCode.INVALID_ARGUMENT and "nope" in caught.value.message


# --------------------------------------------------------------------------- symlinks inside a version


def test_a_symlink_inside_a_version_leading_outside_the_roots_refuses_that_version(root, tmp_path):
    outside = tmp_path / "outside"  # not under the allowed root
    shutil.copytree(_export(root) / "variables", outside / "variables")
    base = _layout(root)
    (base / "1").symlink_to(_export(root), target_is_directory=True)
    shutil.copytree(_export(root), base / "2", ignore=shutil.ignore_patterns("variables"))
    (base / "2" / "variables").symlink_to(outside / "variables", target_is_directory=True)  # a whole folder out
    shutil.copytree(_export(root), base / "3")
    index = base / "3" / "variables" / "variables.index"
    index.unlink()
    index.symlink_to(outside / "variables" / "variables.index")  # one file out
    shutil.copytree(_export(root), base / "4", ignore=shutil.ignore_patterns("variables"))
    (base / "4" / "variables").symlink_to(_export(root) / "variables", target_is_directory=True)  # inside: fine
    model, core, log = _model(base, root, policy=("all",))
    core.load_now()
    model.poll()
    assert set(model.servables) == {1, 4}
    assert set(_status(core)) == {1, 4}
    for version in (2, 3):
        lines = [line for line in log if f"ignoring {base / str(version)}:" in line]
        assert len(lines) == 1 and "outside the allowed model roots" in lines[0], log


# --------------------------------------------------------------------------- any layout, as a property

NAMES = st.one_of(
    st.integers(0, 30).map(str),
    st.tuples(st.integers(1, 2), st.integers(0, 30)).map(lambda t: "0" * t[0] + str(t[1])),  # leading zeros
    st.sampled_from([str(INT64_MAX), str(INT64_MAX + 1), "9" * 25, "²", "３", "٣", "1.5", "-3", "+4", "2-1", "1e3",
                     " 5", "5 ", "v1", ".7", ".tmp-export-ab12"]),
    st.text(alphabet="0123456789.-_ a²３", min_size=1, max_size=5),
).filter(lambda name: name not in (".", ".."))
KINDS = st.sampled_from(["export", "export", "broken", "empty", "file"])
LAYOUT_EXAMPLES = settings(max_examples=8, deadline=None, derandomize=True, database=None,
                           suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


def _expected(layout: dict) -> tuple:
    """(served version or None, versions that must show a load error, names that must be logged once),
    worked out independently of serving.repository."""
    names_of = {}
    for name, kind in layout.items():
        number = int(name) if re.fullmatch(r"[0-9]+", name) and int(name) <= INT64_MAX else None
        if not name.startswith(".") and number is not None and kind in ("export", "broken"):
            names_of.setdefault(number, []).append(name)
    chosen = {v: (str(v) if str(v) in names else min(names)) for v, names in names_of.items()}  # '7' over '007'
    served = max((v for v, name in chosen.items() if layout[name] == "export"), default=None)
    failed = {v for v, name in chosen.items() if layout[name] == "broken" and (served is None or v > served)}
    logged = {name for name, kind in layout.items()
              if not name.startswith(".") and (kind == "file" or not re.fullmatch(r"[0-9]+", name) or int(name) > INT64_MAX)}
    return served, failed, logged


@LAYOUT_EXAMPLES
@given(layout=st.dictionaries(NAMES, KINDS, min_size=1, max_size=6))
@example(layout={"1": "export", "²": "export", "３": "export", str(INT64_MAX + 1): "export", "0002": "broken"})
@example(layout={"007": "export", "7": "broken", str(INT64_MAX): "empty", "5": "file", ".tmp-export-x": "export"})
def test_any_layout_serves_the_highest_loadable_int64_version_and_reports_it(root, layout):
    base = _layout(root)
    try:
        for name, kind in layout.items():
            path = base / name
            if kind == "export":
                path.symlink_to(_export(root), target_is_directory=True)
            elif kind == "broken":
                path.mkdir()
                (path / "saved_model.pb").write_bytes(b"\x00 not a SavedModel")
            elif kind == "empty":
                path.mkdir()
            else:
                path.write_text("not a model\n")
        served, failed, logged = _expected(layout)
        model, core, log = _model(base, root, warmup=False)
        core.load_now()
        model.poll()  # a second look changes nothing and logs nothing new
        assert set(model.servables) == ({served} if served is not None else set()), (layout, log)
        expected = {v: "END" for v in failed} | ({served: "AVAILABLE"} if served is not None else {})
        if expected:
            status = _status(core)
            assert {v: s[0] for v, s in status.items()} == expected, (layout, status)
            assert all((code == 0) == (v not in failed) for v, (_, code, _) in status.items()), status
        else:
            with pytest.raises(ServingError) as caught:
                _status(core)
            assert caught.value.code == grpc.StatusCode.NOT_FOUND
        assert {name: _ignored(log, name) for name in layout} == {name: int(name in logged) for name in layout}, log
    finally:
        shutil.rmtree(base)


# --------------------------------------------------------------------------- the model config


def _config(tmp_path, *entries) -> Path:
    (tmp_path / "models" / "gan").mkdir(parents=True, exist_ok=True)
    path = tmp_path / "models.config"
    path.write_text("model_config_list {\n" + "".join(f"  config {{ {e} }}\n" for e in entries) + "}\n")
    return path


GOOD = 'name: "gan" base_path: "models/gan" model_platform: "tensorflow"'
BAD_CONFIGS = {
    "duplicate name": ([GOOD, GOOD], "Illegal to list model gan multiple times"),
    "empty base_path": (['name: "gan" base_path: "" model_platform: "tensorflow"'], "empty base_path"),
    "no name": (['base_path: "models/gan" model_platform: "tensorflow"'], "no name"),
    "no platform": (['name: "gan" base_path: "models/gan"'], "neither model_type (deprecated) nor model_platform"),
    "type and platform": (['name: "gan" base_path: "models/gan" model_type: TENSORFLOW model_platform: "tensorflow"'],
                          "Illegal setting both"),
    "other type": (['name: "gan" base_path: "models/gan" model_type: OTHER'], "not supported"),
    "other platform": (['name: "gan" base_path: "models/gan" model_platform: "tflite"'], "not supported"),
}


@pytest.mark.parametrize("case", list(BAD_CONFIGS))
def test_a_bad_model_config_refuses_to_start(tmp_path, case):
    entries, fragment = BAD_CONFIGS[case]
    try:
        running = server_main.start(server_args(model_config_file=str(_config(tmp_path, *entries)), rest_api_port=0), log=quiet)
    except ValueError as error:
        assert fragment in str(error) and "models.config" in str(error), error
    else:
        running.stop(grace=0)
        pytest.fail(f"started with a config TF Serving refuses ({case})")


def test_a_bad_model_config_is_one_line_and_a_failing_exit(tmp_path, monkeypatch, capsys):
    handlers = []  # main() would take over pytest's SIGTERM and SIGINT; a server it starts anyway is stopped by timer
    monkeypatch.setattr(server_main.signal, "signal", lambda sig, handler: handlers.append(handler))
    timer = threading.Timer(5.0, lambda: [handler() for handler in handlers])
    timer.daemon = True
    timer.start()
    config = _config(tmp_path, GOOD, GOOD.replace('"models/gan"', '"models/gan/"'))
    try:
        assert server_main.main(["--model_config_file", str(config), "--port=0", "--rest_api_port=0"]) != 0
    finally:
        timer.cancel()
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and "multiple times" in lines[0], lines


def test_a_relative_base_path_is_served_with_a_warning_that_tf_serving_refuses_it(root, tmp_path):
    log = Log()
    running = server_main.start(server_args(model_config_file=str(_config(tmp_path, GOOD)), rest_api_port=0), log=log)
    running.stop(grace=0)
    assert [line for line in log if "relative base_path 'models/gan'" in line and "TF Serving refuses it" in line]


@pytest.mark.parametrize("version, allow, starts", [(1, False, True), (7, False, False), (7, True, True)])
def test_version_labels_must_name_a_served_version_unless_allowed(root, tmp_path, version, allow, starts):
    """TF Serving refuses to assign a label to a version it is not serving (a typo would
    otherwise surface as NOT_FOUND on the first labelled request), unless told to allow it."""
    entry = f'name: "gan" base_path: "{root / "src" / "gan"}" model_platform: "tensorflow" version_labels {{ key: "stable" value: {version} }}'
    args = server_args(model_config_file=str(_config(tmp_path, entry)), rest_api_port=0, allowed_model_roots=str(root),
                       allow_version_labels_for_unavailable_models=allow)
    try:
        running = server_main.start(args, log=quiet)
    except ValueError as error:
        assert not starts, error
        assert "label 'stable' to version 7 of model 'gan'" in str(error) and "versions served: [1]" in str(error)
        return
    running.stop(grace=0)
    assert starts, "started with a label naming a version that is not served"


# --------------------------------------------------------------------------- shutdown

GRACE_S, BATCH_S, CALLS = 1.0, 0.3, 10


def test_stop_answers_every_call_in_flight_within_the_grace_period(root, tmp_path):
    """CALLS one-row requests queue behind a one-thread batcher whose batches take BATCH_S each (3 s
    of work); stop(GRACE_S) must return, and every call be answered, within the grace period: the
    batches that fit run, the rest are refused (UNAVAILABLE), none starts after the grace period,
    and a new call is refused at once."""
    params = tmp_path / "batching.config"
    params.write_text("max_batch_size { value: 1 }\nbatch_timeout_micros { value: 0 }\n"
                      "num_batch_threads { value: 1 }\nmax_enqueued_batches { value: 100 }\n")
    running = server_main.start(server_args(model_base_path=str(root / "src" / "gan"), enable_batching=True,
                                            batching_parameters_file=str(params), rest_api_port=0), log=quiet)
    servable = running.core.models["gan"].servables[1]
    run, started = servable.run, []

    def slow(signature, inputs):
        started.append(time.monotonic())
        time.sleep(BATCH_S)
        return run(signature, inputs)

    servable.run = slow
    target = f"127.0.0.1:{running.grpc_port}"

    def call(seed):
        with client_mod.GeneratorClient(target, retries=0, timeout=30) as c:
            try:
                outcome = ("OK", c.generate(seeds=[seed]).shape)
            except client_mod.ServingError as error:
                outcome = (error.code, error.message)
        return outcome, time.monotonic()

    with concurrent.futures.ThreadPoolExecutor(CALLS) as pool:
        pending = [pool.submit(call, seed) for seed in range(CALLS)]
        batcher = running.core.batcher
        wait_for(lambda: sum(map(len, list(batcher._queues.values()))) >= CALLS - 2, timeout=60, interval=0.01,
                 what="calls queued behind the first batch")
        stopper = threading.Thread(target=running.stop, args=(GRACE_S,))
        stopped = time.monotonic()
        stopper.start()
        time.sleep(0.1)
        with client_mod.GeneratorClient(target, retries=0, timeout=5) as late:
            with pytest.raises(client_mod.ServingError) as caught:
                late.generate(seeds=[99])
        assert caught.value.code == "UNAVAILABLE"
        stopper.join(timeout=60)
        took = time.monotonic() - stopped
        results = [p.result(timeout=60) for p in pending]
    deadline = stopped + GRACE_S
    assert took < GRACE_S + 1.0, f"stop took {took:.2f}s"  # before: every queued batch ran first (~3 s)
    assert all(t <= deadline for t in started), [round(t - stopped, 2) for t in started]  # nothing computed past it
    assert max(finished for _, finished in results) < deadline + 1.0
    outcomes = [outcome for outcome, _ in results]
    served = [o for o in outcomes if o == ("OK", (1, 28, 28, 1))]
    refused = [o for o in outcomes if o[0] != "OK"]
    assert served and refused and len(served) + len(refused) == CALLS, outcomes
    # Refused by the server, saying why; at most the one batch running at the deadline is cut by gRPC itself.
    said = [message for code, message in refused if code == "UNAVAILABLE" and "shutting down" in message]
    assert len(said) >= len(refused) - 1 and {code for code, _ in refused} <= {"UNAVAILABLE", "CANCELLED"}, refused


def test_a_rest_answer_during_the_drain_closes_its_keep_alive_connection(root):
    """Two requests pipelined on one keep-alive connection: the first is being computed when
    stop() begins, so it is answered, with Connection: close, and the connection closes: the
    second request is not run during the drain, and the client knows to send it elsewhere."""
    running = server_main.start(server_args(model_base_path=str(root / "src" / "gan")), log=quiet)
    servable = running.core.models["gan"].servables[1]
    run, started = servable.run, threading.Event()

    def slow(signature, inputs):
        started.set()
        time.sleep(0.5)
        return run(signature, inputs)

    servable.run = slow
    body = json.dumps({"instances": [[0.0] * 100]}).encode()
    request = (f"POST /v1/models/gan:predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
               f"Content-Length: {len(body)}\r\n\r\n").encode() + body
    stopper = threading.Thread(target=running.stop, args=(3.0,))
    with socket.create_connection(("127.0.0.1", running.rest_port), timeout=10) as sock:
        sock.sendall(request)
        assert started.wait(10), "the first request never reached the model"
        stopper.start()
        time.sleep(0.1)
        sock.sendall(request)
        sock.settimeout(10)
        answer = b""
        while chunk := sock.recv(1 << 20):  # until the server closes (socket timeout: 10 s)
            answer += chunk
    stopper.join(timeout=30)
    statuses = re.findall(rb"^HTTP/1\.1 (\d{3})", answer, re.MULTILINE)
    # The answer tells the client to go elsewhere; by HTTP's rules a request pipelined behind a
    # "Connection: close" answer was not processed, so the client may send it again elsewhere.
    assert statuses == [b"200"], answer[:300]
    assert b"connection: close" in answer.split(b"\r\n\r\n", 1)[0].lower(), answer[:300]

