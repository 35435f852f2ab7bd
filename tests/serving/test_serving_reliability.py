"""Reliability of the embedded server: atomic publish under a live server, a bounded soak,
SIGTERM drain, bind address, TLS, allowed model roots, and the CLIs' one-line errors.

Everything runs on 127.0.0.1 with fixed request counts and bounded waits. Counts are
scaled to a 2-core machine (see SOAK_REQUESTS); the ideal soak (20,000 requests from 32
clients) is `GAN_SOAK_REQUESTS=20000 pytest tests/serving/test_serving_reliability.py -k soak`.
"""

import concurrent.futures
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import pytest

import serving.client as client_mod
from conftest import module_held_export
from gan_pkg import contract
from serving import main as server_main
from serving_helpers import LATENT, REPO, export_tiny, quiet, server_args, wait_for
from tiny import tiny

SOAK_REQUESTS = int(os.environ.get("GAN_SOAK_REQUESTS", "8000"))
SOAK_CLIENTS = int(os.environ.get("GAN_SOAK_CLIENTS", "32"))
SOAK_RSS_GROWTH_MB = 50
ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}


@pytest.fixture(scope="module")
def export_base(tmp_path_factory):
    base = tmp_path_factory.mktemp("reliability-export")
    export_tiny(base)
    return base


def _predict(c, version=None, seeds=(1,)):
    """One Predict through GeneratorClient; returns the version that answered."""
    request = client_mod.build_predict_request("gan", contract.GENERATE, seeds=list(seeds), version=version)
    response = c._call(c.prediction.Predict, request)
    assert [d.size for d in response.outputs[contract.IMAGES].tensor_shape.dim] == [len(seeds), 28, 28, 1]
    return response.model_spec.version.value


class Hammer:
    """A client thread sending Predicts back to back until stopped; records every outcome."""

    def __init__(self, target):
        self.target = target
        self.versions, self.failures = [], []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        with client_mod.GeneratorClient(self.target, retries=0, timeout=60) as c:
            while not self._stop.is_set():
                try:
                    self.versions.append(_predict(c))
                except Exception as error:  # noqa: BLE001  every failure is a finding
                    self.failures.append(repr(error))
                time.sleep(0.002)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(timeout=60)

    def served_after(self, count, version, timeout=60):
        """Wait until `version` has answered a request sent after the first `count` ones."""
        wait_for(lambda: version in self.versions[count:], timeout=timeout, what=f"version {version} to answer")


# --------------------------------------------------------------------------- 1. atomic publish under a live server

_KILLED_EXPORT = textwrap.dedent(
    """
    import sys, time
    from gan_pkg import architectures, export
    from tiny import tiny

    original = export.write_saved_model

    def write_then_hang(*args, **kwargs):  # the SavedModel is on disk, the rename has not happened
        path = original(*args, **kwargs)
        print("written", flush=True)
        time.sleep(600)
        return path

    export.write_saved_model = write_then_hang
    cfg = tiny("dcgan")
    generator, _ = architectures.build(cfg)
    export.export_generator(generator, cfg, sys.argv[1], "gan")
    """
)


def test_publish_under_live_server_never_serves_half_a_version_or_fails_a_request(tmp_path, export_base):
    """Exports, an exporter SIGKILLed mid-publish, half-written version folders and a deleted
    served version, all while a client sends Predicts: every request succeeds and only
    complete versions ever answer."""
    from gan_pkg import architectures, export

    base = tmp_path / "export"
    shutil.copytree(export_base / "gan", base / "gan")
    model_dir = base / "gan"
    # The killed exporter starts first: importing TensorFlow in a fresh process is the slow part.
    killed = subprocess.Popen([sys.executable, "-c", _KILLED_EXPORT, str(base)], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                              text=True, env={**ENV, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO / "tests"), ENV.get("PYTHONPATH")]))},
                              cwd=REPO)
    running = server_main.start(server_args(model_base_path=str(model_dir), file_system_poll_wait_seconds=0.05, rest_api_port=0), log=quiet)
    core = running.core.models["gan"]
    complete = {1}
    try:
        with Hammer(f"127.0.0.1:{running.grpc_port}") as hammer:
            wait_for(lambda: len(hammer.versions) >= 5, what="first requests")
            cfg = tiny("dcgan")
            generator, _ = architectures.build(cfg)

            # (a) two atomic exports in a row: each is picked up while requests flow.
            for expected in (2, 3):
                seen = len(hammer.versions)
                path = export.export_generator(generator, cfg, base, "gan")
                assert int(path.name) == expected
                complete.add(expected)
                hammer.served_after(seen, expected)

            # (b) an exporter killed after writing its staging folder, before the rename.
            ready = []
            reader = threading.Thread(target=lambda: ready.append(killed.stdout.readline()), daemon=True)
            reader.start()
            reader.join(timeout=120)
            assert ready == ["written\n"], ready
            killed.send_signal(signal.SIGKILL)
            killed.wait(timeout=30)
            leftovers = list(model_dir.glob(".tmp-*"))  # the staging folder, hidden from servers
            assert leftovers and (leftovers[0] / "saved_model.pb").is_file()  # a complete-looking model, unpublished

            # (c) folders a non-atomic writer leaves: a version with no saved_model.pb, one whose
            # saved_model.pb is truncated, and one with saved_model.pb but its variables not there yet.
            (model_dir / "10" / "variables").mkdir(parents=True)
            (model_dir / "11").mkdir()
            (model_dir / "11" / "saved_model.pb").write_bytes((model_dir / "3" / "saved_model.pb").read_bytes()[:100])
            (model_dir / "12").mkdir()
            shutil.copy(model_dir / "3" / "saved_model.pb", model_dir / "12" / "saved_model.pb")
            wait_for(lambda: core.states.get(12, ("",))[0] == "END" and core.states.get(11, ("",))[0] == "END",
                     what="the half-written versions to be tried and refused")
            assert 10 not in core.states and 12 not in core.servables and 11 not in core.servables
            seen = len(hammer.versions)
            wait_for(lambda: len(hammer.versions) > seen + 5, what="requests after the refusals")
            assert set(hammer.versions[seen:]) == {3}  # still the last complete version

            # (d) the writer finishes version 12: it is loaded and served.
            for part in ("variables", contract.ASSETS_EXTRA):
                shutil.copytree(model_dir / "3" / part, model_dir / "12" / part)
            complete.add(12)
            seen = len(hammer.versions)
            hammer.served_after(seen, 12)

            # (e) the served version deleted from disk: unloaded, the previous highest loaded again.
            shutil.rmtree(model_dir / "12")
            shutil.rmtree(model_dir / "11")
            shutil.rmtree(model_dir / "10")
            seen = len(hammer.versions)
            hammer.served_after(seen, 3)
            wait_for(lambda: set(core.servables) == {3}, what="version 12 unloaded")
            wait_for(lambda: core.states[12][0] == "END", what="version 12 END")  # set just after it leaves the table
            time.sleep(0.3)  # a few more requests on the fallback
        assert hammer.failures == [], hammer.failures[:5]
        assert len(hammer.versions) >= 50, len(hammer.versions)
        assert set(hammer.versions) <= complete, set(hammer.versions) - complete
        assert set(core.states) <= {1, 2, 3, 11, 12}, core.states
        assert set(hammer.versions) == {1, 2, 3, 12}
    finally:
        if killed.poll() is None:
            killed.kill()
            killed.wait(timeout=10)
        running.stop(grace=2)


def test_broken_newest_version_at_startup_leaves_the_previous_one_served(tmp_path, export_base):
    model_dir = tmp_path / "gan"
    shutil.copytree(export_base / "gan", model_dir)
    shutil.copytree(model_dir / "1", model_dir / "2")
    (model_dir / "2" / "saved_model.pb").write_bytes(b"\x00" * 64)  # corrupt: loading it fails
    running = server_main.start(server_args(model_base_path=str(model_dir), rest_api_port=0, file_system_poll_wait_seconds=0.05), log=quiet)
    try:
        core = running.core.models["gan"]
        assert set(core.servables) == {1} and core.states[2][0] == "END"
        time.sleep(0.3)  # several polls: the failed version is not retried while its files are unchanged
        assert set(core.servables) == {1} and core.states[2][0] == "END"
        with client_mod.GeneratorClient(f"127.0.0.1:{running.grpc_port}", retries=0) as c:
            assert _predict(c) == 1
            status = {s["version"]: s for s in c.status()["model_version_status"]}
        assert status["1"]["state"] == "AVAILABLE" and "failed to load" in status["2"]["status"]["error_message"]
    finally:
        running.stop(grace=2)


def test_version_tf_serving_cannot_run_is_refused_and_the_previous_one_stays_served(tmp_path, export_base):
    """A version written the old way (Keras model in a tf.Module) passes tf.saved_model.load but
    fails TF Serving's loader at warmup: here too it is not served, and the server stays up."""
    model_dir = tmp_path / "gan"
    shutil.copytree(export_base / "gan", model_dir)
    module_held_export(model_dir / "2", tiny("dcgan"))
    running = server_main.start(server_args(model_base_path=str(model_dir), rest_api_port=0, file_system_poll_wait_seconds=0.05), log=quiet)
    try:
        core = running.core.models["gan"]
        assert set(core.servables) == {1}
        with client_mod.GeneratorClient(f"127.0.0.1:{running.grpc_port}", retries=0) as c:
            assert _predict(c) == 1
            status = {s["version"]: s for s in c.status()["model_version_status"]}
        assert status["1"]["state"] == "AVAILABLE"
        message = status["2"]["status"]["error_message"]
        assert status["2"]["state"] == "END" and "Could not find variable" in message
        assert "python -m gan_pkg.export --checkpoint" in message  # the way out, not just the failure
    finally:
        running.stop(grace=2)


# --------------------------------------------------------------------------- 3. load: soak and SIGTERM drain


class ServerProcess:
    """serving/server.py as a subprocess (its own GIL and RSS); the ready line names its ports."""

    def __init__(self, *flags):
        self.proc = subprocess.Popen(
            [sys.executable, str(REPO / "serving" / "server.py"), "--port=0", "--rest_api_port=0", *flags],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV, cwd=REPO,
        )
        ready = []
        reader = threading.Thread(target=lambda: ready.append(self.proc.stdout.readline()), daemon=True)
        reader.start()
        reader.join(timeout=120)
        assert ready and ready[0].startswith("serving gan version 1 on 127.0.0.1:"), (ready, self.proc.poll())
        self.grpc_port = int(ready[0].split(" on 127.0.0.1:")[1].split(" ")[0])
        self.target = f"127.0.0.1:{self.grpc_port}"

    def rss_mb(self) -> float:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        raise AssertionError("no VmRSS")

    def close(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=30)
        self.proc.stdout.close()
        self.proc.stderr.close()


def _soak_round(target, requests, clients):
    """`requests` Predicts (1-4 rows, both signatures) from `clients` threads, each with its own channel."""
    latencies, failures = [], []
    lock = threading.Lock()
    per_client = [requests // clients + (i < requests % clients) for i in range(clients)]

    def client(index):
        rng = np.random.default_rng(index)
        mine, bad = [], []
        with client_mod.GeneratorClient(target, retries=0, timeout=60) as c:
            for i in range(per_client[index]):
                rows = int(rng.integers(1, 5))
                if i % 2:
                    request = client_mod.build_predict_request("gan", contract.GENERATE, seeds=rng.integers(0, 10**6, rows))
                else:
                    noise = rng.standard_normal((rows, LATENT)).astype(np.float32)
                    request = client_mod.build_predict_request("gan", contract.SERVING_DEFAULT, noise=noise)
                started = time.perf_counter()
                try:
                    response = c.prediction.Predict(request, timeout=60)
                    assert response.outputs[contract.IMAGES].tensor_shape.dim[0].size == rows
                except Exception as error:  # noqa: BLE001
                    bad.append(repr(error)[:300])
                mine.append(time.perf_counter() - started)
        with lock:
            latencies.extend(mine)
            failures.extend(bad)

    started = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(clients) as pool:
        list(pool.map(client, range(clients)))
    return np.array(latencies), failures, time.perf_counter() - started


def test_soak_zero_failures_stable_memory(export_base):
    server = ServerProcess("--model_base_path", str(export_base / "gan"))
    try:
        _, failures, _ = _soak_round(server.target, 500, SOAK_CLIENTS)  # warm: thread pools, arenas, traced functions
        assert failures == [], failures[:3]
        before = server.rss_mb()
        latencies, failures, wall = _soak_round(server.target, SOAK_REQUESTS, SOAK_CLIENTS)
        after = server.rss_mb()
        p50, p99 = np.percentile(latencies, [50, 99]) * 1000
        print(f"\nsoak: {len(latencies)} requests from {SOAK_CLIENTS} clients in {wall:.1f}s ({len(latencies) / wall:.0f}/s), "
              f"{len(failures)} failed, p50 {p50:.1f} ms, p99 {p99:.1f} ms, server RSS {before:.0f} -> {after:.0f} MB")
        assert failures == [], failures[:3]
        assert len(latencies) == SOAK_REQUESTS
        assert after - before < SOAK_RSS_GROWTH_MB, (before, after)
        assert server.proc.poll() is None
    finally:
        server.close()


def test_sigterm_drains_in_flight_requests(tmp_path, export_base):
    params = tmp_path / "batching.config"
    # A lone request would wait up to 30 s for company: SIGTERM arrives while requests are queued,
    # and the drain runs them at once.
    params.write_text("max_batch_size { value: 16 }\nbatch_timeout_micros { value: 30000000 }\nnum_batch_threads { value: 1 }\n")
    server = ServerProcess("--model_base_path", str(export_base / "gan"), "--enable_batching",
                           "--batching_parameters_file", str(params))
    try:
        barrier = threading.Barrier(5)

        def call(seed):
            with client_mod.GeneratorClient(server.target, retries=0, timeout=60) as c:
                barrier.wait(timeout=30)
                images = c.generate(seeds=[seed])
                return images, time.monotonic()

        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            pending = [pool.submit(call, s) for s in range(4)]
            barrier.wait(timeout=30)
            time.sleep(1.5)  # loopback delivery takes microseconds; the batch timeout holds them 30 s
            assert not any(p.done() for p in pending)
            server.proc.send_signal(signal.SIGTERM)
            signalled = time.monotonic()
            results = [p.result(timeout=60) for p in pending]
        for images, finished in results:
            assert images.shape == (1, 28, 28, 1)
            assert finished > signalled  # it was in flight when SIGTERM arrived, and completed
        assert server.proc.wait(timeout=60) == 0
        assert max(finished for _, finished in results) - signalled < 20  # the drain did not sit out the 30 s batch timeout
        with client_mod.GeneratorClient(server.target, retries=0, timeout=5) as c:
            with pytest.raises(client_mod.ServingError) as caught:
                c.status()
        assert caught.value.code == "UNAVAILABLE"
    finally:
        server.close()


# --------------------------------------------------------------------------- 4. security: bind address


def _other_local_address():
    """A local IPv4 address that is not loopback, if this machine has one."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect(("192.0.2.254", 9))  # no packet is sent: this only picks the outgoing interface
            address = s.getsockname()[0]
    except OSError:
        return None
    return None if address.startswith("127.") or address == "0.0.0.0" else address


def _listening_addresses(port):
    """Local addresses with a socket listening on `port`, from /proc/net/tcp and tcp6 (Linux);
    IPv4-mapped IPv6 addresses (how gRPC binds 127.0.0.1) are given as IPv4."""
    import ipaddress

    found = set()
    for table in ("tcp", "tcp6"):
        path = Path("/proc/net") / table
        if not path.exists():
            continue
        for line in path.read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            address, hex_port = local.split(":")
            if state != "0A" or int(hex_port, 16) != port:
                continue
            raw = bytes.fromhex(address)
            raw = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))  # each 32-bit word is host order
            ip = ipaddress.ip_address(raw)
            found.add(str(ip.ipv4_mapped if ip.version == 6 and ip.ipv4_mapped else ip))
    return found


def _reachable(address, port):
    try:
        with socket.create_connection((address, port), timeout=2):
            return True
    except OSError:
        return False


@pytest.mark.skipif(not Path("/proc/net/tcp").exists(), reason="reads listening sockets from /proc/net/tcp (Linux)")
def test_binds_loopback_by_default_and_host_widens_it(export_base):
    assert server_main.parse_args(["--model_base_path", str(export_base / "gan")]).host == "127.0.0.1"
    other = _other_local_address()
    running = server_main.start(server_args(model_base_path=str(export_base / "gan")), log=quiet)
    try:
        for port in (running.grpc_port, running.rest_port):
            assert _listening_addresses(port) == {"127.0.0.1"}
            assert _reachable("127.0.0.1", port)
            if other:
                assert not _reachable(other, port), f"{other}:{port} reachable"
    finally:
        running.stop(grace=2)
    if other:  # the control: the same check sees a wider bind
        running = server_main.start(server_args(model_base_path=str(export_base / "gan"), host="0.0.0.0", rest_api_port=0), log=quiet)
        try:
            assert _listening_addresses(running.grpc_port) & {"0.0.0.0", "::"} and _reachable(other, running.grpc_port)
        finally:
            running.stop(grace=2)


# --------------------------------------------------------------------------- 4. security: TLS


def _openssl(*args, cwd):
    subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=60, cwd=cwd)


@pytest.fixture(scope="module")
def certificates(tmp_path_factory):
    """A throwaway CA, a server certificate for localhost/127.0.0.1 and a client certificate."""
    if shutil.which("openssl") is None:
        pytest.skip("needs the openssl CLI to make test certificates (the cryptography package is not installed)")
    d = tmp_path_factory.mktemp("pki")
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    _openssl("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.pem", "-days", "1", "-subj", "/CN=test-ca", cwd=d)
    (d / "server.ext").write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    for name in ("server", "client"):
        _openssl("req", *ec, "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={name}", cwd=d)
        extra = ["-extfile", "server.ext"] if name == "server" else []
        _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
                 "-out", f"{name}.pem", "-days", "1", *extra, cwd=d)
    return d


def _ssl_config(path, pki, client_verify=True, **override):
    fields = dict(server_key=(pki / "server.key").read_text(), server_cert=(pki / "server.pem").read_text(),
                  custom_ca=(pki / "ca.pem").read_text(), client_verify=client_verify)
    fields.update(override)
    lines = [f"{k}: {json.dumps(v) if isinstance(v, str) else str(v).lower()}" for k, v in fields.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_tls_with_client_verification(tmp_path, export_base, certificates):
    pki = certificates
    ssl = _ssl_config(tmp_path / "ssl.config", pki, client_verify=True)
    running = server_main.start(server_args(model_base_path=str(export_base / "gan"), ssl_config_file=str(ssl), rest_api_port=0), log=quiet)
    target = f"127.0.0.1:{running.grpc_port}"
    ca = (pki / "ca.pem").read_bytes()
    try:
        with client_mod.GeneratorClient(target, retries=0, timeout=10, root_certificates=ca,
                                        private_key=(pki / "client.key").read_bytes(),
                                        certificate_chain=(pki / "client.pem").read_bytes()) as c:
            assert _predict(c) == 1
        with client_mod.GeneratorClient(target, retries=0, timeout=10, root_certificates=ca) as c:  # no client certificate
            with pytest.raises(client_mod.ServingError) as caught:
                c.status()
            assert caught.value.code == "UNAVAILABLE"
        with client_mod.GeneratorClient(target, retries=0, timeout=10) as c:  # plain text against TLS
            with pytest.raises(client_mod.ServingError) as caught:
                c.status()
            assert caught.value.code == "UNAVAILABLE"
        # The client CLI over mutual TLS.
        out = tmp_path / "grid.png"
        done = subprocess.run(
            [sys.executable, str(REPO / "serving" / "client.py"), "--server", target, "--num", "2", "--out", str(out),
             "--ca-cert", str(pki / "ca.pem"), "--client-cert", str(pki / "client.pem"), "--client-key", str(pki / "client.key")],
            capture_output=True, text=True, env=ENV, timeout=120, cwd=REPO,
        )
        assert done.returncode == 0, done.stderr[-2000:]
        assert out.is_file()
        # Without a client certificate: refused, one line (gRPC's own TLS logs stay quiet).
        line = _one_line_failure([str(REPO / "serving" / "client.py"), "--server", target, "--retries", "0",
                                  "--out", str(tmp_path / "no.png"), "--ca-cert", str(pki / "ca.pem")])
        assert line.startswith("error: UNAVAILABLE")
    finally:
        running.stop(grace=2)


@pytest.mark.parametrize(
    "override, fragment",
    [
        (dict(server_cert=""), "server_cert missing"),
        (dict(server_key="", server_cert=""), "server_key and server_cert missing"),
        (dict(custom_ca=""), "client_verify: true needs custom_ca"),
        (dict(server_cert="/etc/ssl/server.pem"), "not PEM text"),
    ],
    ids=["no-cert", "no-key-no-cert", "verify-without-ca", "path-not-pem"],
)
def test_tls_config_that_would_serve_plaintext_or_fail_later_is_refused(tmp_path, export_base, certificates, override, fragment):
    ssl = _ssl_config(tmp_path / "ssl.config", certificates, client_verify=True, **override)
    with pytest.raises(ValueError, match=fragment):
        server_main.start(server_args(model_base_path=str(export_base / "gan"), ssl_config_file=str(ssl), rest_api_port=0), log=quiet)


# --------------------------------------------------------------------------- 4. security: allowed model roots


def _config_file(path, base_path):
    path.write_text(f'model_config_list {{ config {{ name: "gan" base_path: "{base_path}" model_platform: "tensorflow" }} }}\n')
    return path


def test_model_config_outside_allowed_roots_is_refused(tmp_path, export_base):
    configs = tmp_path / "configs"
    configs.mkdir()
    outside = export_base / "gan"  # a real model, but not under the config's folder
    (configs / "link").symlink_to(outside, target_is_directory=True)
    for base_path in (str(outside), "../../" + os.path.relpath(outside, "/"), "link"):
        config = _config_file(configs / "models.config", base_path)
        with pytest.raises(ValueError, match="outside the allowed roots"):
            server_main.start(server_args(model_config_file=str(config)), log=quiet)
    # --allowed_model_roots says where models may come from: then the same config serves.
    config = _config_file(configs / "models.config", str(outside))
    running = server_main.start(server_args(model_config_file=str(config), rest_api_port=0,
                                           allowed_model_roots=f"{configs},{export_base}"), log=quiet)
    try:
        with client_mod.GeneratorClient(f"127.0.0.1:{running.grpc_port}", retries=0) as c:
            assert _predict(c) == 1
    finally:
        running.stop(grace=2)


def test_version_folder_symlinked_outside_the_roots_is_not_loaded(tmp_path, export_base):
    model_dir = tmp_path / "gan"
    model_dir.mkdir()
    shutil.copytree(export_base / "gan" / "1", model_dir / "1")
    elsewhere = tmp_path / "elsewhere"
    shutil.copytree(export_base / "gan" / "1", elsewhere)
    (model_dir / "7").symlink_to(elsewhere, target_is_directory=True)
    logged = []
    running = server_main.start(server_args(model_base_path=str(model_dir), rest_api_port=0),
                               log=lambda *a, **k: logged.append(" ".join(map(str, a))))
    try:
        core = running.core.models["gan"]
        assert set(core.servables) == {1} and 7 not in core.states
        assert any("outside the allowed model roots" in line for line in logged), logged
        with client_mod.GeneratorClient(f"127.0.0.1:{running.grpc_port}", retries=0) as c:
            assert _predict(c) == 1
    finally:
        running.stop(grace=2)


# --------------------------------------------------------------------------- 2. the CLIs: one clear line, no traceback


def _one_line_failure(args, timeout=120):
    done = subprocess.run([sys.executable, *args], capture_output=True, text=True, env=ENV, timeout=timeout, cwd=REPO)
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert done.returncode != 0, done
    assert len(lines) == 1 and "error" in lines[0] and "Traceback" not in done.stderr, done.stderr[-2000:]
    return lines[0]


def test_server_cli_bad_flags_and_missing_model_fail_with_one_line(tmp_path, export_base):
    server = str(REPO / "serving" / "server.py")
    model = str(export_base / "gan")
    cases = [
        ([server, "--model_base_path", model, "--bogus"], "unrecognized arguments"),
        ([server, "--model_base_path", model, "--port", "abc"], "invalid int value"),
        ([server, "--model_base_path", model, "--port", "70000"], "not a port number"),
        ([server, "--model_base_path", model, "--max_batch_size", "0"], "at least 1"),
        ([server], "--model_base_path"),
        ([server, "--model_base_path", str(tmp_path / "missing")], "no such folder"),
        ([server, "--model_config_file", str(tmp_path / "missing.config")], "no such file"),
        ([server, "--model_base_path", model, "--grpc_channel_arguments", "nonsense"], "name=value"),
    ]
    for args, fragment in cases:
        assert fragment in _one_line_failure(args), args
    # Past the flags (TensorFlow imported): a config naming a model outside its folder.
    configs = tmp_path / "configs"
    configs.mkdir()
    config = _config_file(configs / "models.config", model)
    line = _one_line_failure([server, "--model_config_file", str(config), "--port=0", "--rest_api_port=0"])
    assert line.startswith("error:") and "outside the allowed roots" in line


def test_client_cli_bad_flags_fail_with_one_line(tmp_path):
    client = str(REPO / "serving" / "client.py")
    not_pem = tmp_path / "ca.pem"
    not_pem.write_text("/etc/ssl/ca.pem\n")
    cases = [
        ([client, "--bogus"], "unrecognized arguments"),
        ([client, "--num", "0"], "--num must be at least 1"),
        ([client, "--num", "many"], "invalid int value"),
        ([client, "--signature", "nope"], "invalid choice"),
        ([client, "--ca-cert", str(tmp_path / "missing.pem")], "no such file"),
        ([client, "--client-cert", "a.pem"], "go together"),
        ([client, "--ca-cert", str(not_pem)], "not a PEM file"),
    ]
    for args, fragment in cases:
        assert fragment in _one_line_failure(args), args
