"""Embedded TF-Serving-compatible model server (gRPC + REST) for gan_pkg exports.

    python serving/server.py --model_base_path export/gan

Speaks TF Serving's own API (PredictionService.Predict / GetModelMetadata,
ModelService.GetModelStatus, REST /v1/models/...) with tensorflow_model_server's
flag names, so a client written for one works unchanged against the other.
For machines without Docker; the Docker image (Dockerfile.serve) runs the real
tensorflow_model_server.

Behaviour worth knowing:
- each version is loaded and run the way tensorflow_model_server does it
  (gan_pkg.session_loader: MetaGraph import and restore op into one Session per
  version, signatures run by the tensor names in their SignatureDefs), so a version
  that TF Serving cannot run fails here too, at load or warmup, and is not served.
- serves the highest integer version under each base path (or what the model's
  version policy in --model_config_file asks for); a version appearing on disk is
  loaded, warmed up (assets.extra/tf_serving_warmup_requests) and then served
  without a restart; one deleted from disk is unloaded. Version folders are named
  by ASCII digits (leading zeros allowed, as in TF Serving) and fit int64; other names
  are ignored with one warning each. Hidden (.tmp-*) folders and folders without
  saved_model.pb are never loaded.
- a request with an empty batch (dimension 0 of size 0) is rejected with
  INVALID_ARGUMENT: there is nothing to generate, and it cannot be batched.
- requests larger than --max_batch_size (and, with --enable_batching, larger
  than the batching max_batch_size) get INVALID_ARGUMENT, as in TF Serving: they
  can never succeed, so clients must split them rather than retry.
- non-finite float inputs get INVALID_ARGUMENT (a generator fed NaN returns NaN).
- binds 127.0.0.1 unless --host says otherwise (TF Serving binds 0.0.0.0).
- models load only from inside the allowed roots: by default the --model_base_path
  folder itself, or the folder holding --model_config_file (config entries may not
  point outside it, by `..` or by a symlink); --allowed_model_roots replaces that
  list. A version folder that is, or holds, a symlink leading outside the roots is ignored,
  and a base path that does not exist is an error at start (export a model first).
- --model_config_file is checked as TF Serving checks it (unique, non-empty names,
  non-empty base paths, model_platform "tensorflow"); a bad one stops the start with one line.
  Its version_labels must name versions being served once the models load, or the start
  stops (--allow_version_labels_for_unavailable_models lifts that, as in TF Serving). A
  relative base_path is served from beside the config file, with a warning: TF Serving
  refuses relative base paths, so a config meant for the Docker image needs absolute ones.
- a version whose load or warmup fails is not served, and not retried until its files
  change; the next highest loadable version is served meanwhile. Once its folder is gone,
  so is its error from the model's status.
- a gRPC request over --grpc_channel_arguments' grpc.max_receive_message_length
  (default here 64 MiB; TF Serving's is 2 GiB) gets RESOURCE_EXHAUSTED, and so does a
  REST body over the same size (HTTP 413: unread when announced, a chunked one once it passes the limit); bytes that do not parse as the request
  message get INVALID_ARGUMENT; a REST client that stops sending mid-body is cut off
  after 30 s (HTTP 400).
- --port 0 picks a free gRPC port (the ready line names it); --rest_api_port 0 disables REST.
- --monitoring_config_file (MonitoringConfig, e.g. serving/monitoring.config) adds Prometheus
  request counts and latencies on the REST port; --ssl_config_file (SSLConfig) serves gRPC over TLS
  (server_key and server_cert required; client_verify needs custom_ca). As in TF Serving,
  REST stays plain HTTP: with TLS, keep REST on 127.0.0.1 or disable it (--rest_api_port 0).
- SIGTERM/SIGINT: new calls are refused; calls in flight finish within a 10 s grace period
  (queued batches run at once; one whose batch has not started by then gets UNAVAILABLE); exit 0.
  REST answers given during the drain say Connection: close; idle connections close at once.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
import time
from pathlib import Path

from gan_pkg import contract
from gan_pkg.cli import ArgumentParser
from serving.core import DEFAULT_MAX_BATCH_SIZE, MAX_RECEIVE_OPTION, MAX_REQUEST_BYTES, ModelServer
from serving.grpc_api import build_grpc_server, grpc_channel_arguments, max_request_bytes, server_options, ssl_credentials
from serving.repository import Model, _policy_from_config, check_base_path, validate_model_config_list
from serving.rest_api import build_rest_server

SHUTDOWN_GRACE_S = 10.0  # SIGTERM: how long calls in flight get to finish


def _bool(text):
    if isinstance(text, bool):
        return text
    if text.lower() in ("1", "true", "yes", "on"):
        return True
    if text.lower() in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got '{text}'")


def parse_args(argv=None, prog=None):
    p = ArgumentParser(
        prog=prog,
        description=__doc__.splitlines()[0],
        epilog="Security: binds 127.0.0.1 unless --host says otherwise; loads models only from inside "
        "--allowed_model_roots (default: the --model_base_path folder, or the folder holding "
        "--model_config_file); requests over grpc.max_receive_message_length (default 64 MiB) or "
        "--max_batch_size rows are refused (RESOURCE_EXHAUSTED; INVALID_ARGUMENT for too many rows).",
    )
    p.add_argument("--port", type=int, default=contract.GRPC_PORT, help="gRPC port (0: pick a free one)")
    p.add_argument("--rest_api_port", type=int, default=contract.REST_PORT, help="REST port; 0 disables REST")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (TF Serving binds 0.0.0.0)")
    p.add_argument("--model_name", default=contract.DEFAULT_MODEL_NAME)
    p.add_argument("--model_base_path", help="folder holding integer version subfolders, e.g. export/gan")
    p.add_argument("--model_config_file", help="ModelServerConfig text proto; serves every model it lists")
    p.add_argument("--file_system_poll_wait_seconds", type=float, default=1.0, help="0 or less: never look for new versions")
    p.add_argument("--enable_batching", type=_bool, nargs="?", const=True, default=False)
    p.add_argument("--batching_parameters_file", help="BatchingParameters text proto")
    p.add_argument("--allow_version_labels_for_unavailable_models", type=_bool, nargs="?", const=True, default=False,
        help="let version_labels name versions that are not loaded (TF Serving's flag; default: refuse to start)")
    p.add_argument("--max_batch_size", type=int, default=DEFAULT_MAX_BATCH_SIZE, help="larger requests get INVALID_ARGUMENT")
    p.add_argument("--ssl_config_file", help="SSLConfig text proto (PEM contents inline, as TF Serving reads it)")
    p.add_argument("--monitoring_config_file", help="MonitoringConfig text proto; Prometheus metrics on the REST port")
    p.add_argument("--grpc_channel_arguments",
        help="comma-separated gRPC server arguments, as TF Serving reads them, e.g. "
        f"{MAX_RECEIVE_OPTION}=1048576 (default here {MAX_REQUEST_BYTES}; also caps REST bodies)",
    )
    p.add_argument("--allowed_model_roots",
        help="comma-separated folders that model base paths must lie inside (after resolving '..' and symlinks); "
        "default: the --model_base_path folder, or the folder holding --model_config_file. Not a TF Serving flag.",
    )
    args = p.parse_args(argv)
    if not args.model_base_path and not args.model_config_file:
        p.error("give --model_base_path (e.g. export/gan) or --model_config_file")
    if args.model_base_path and args.model_config_file:
        p.error("give either --model_base_path or --model_config_file, not both")
    for flag in ("port", "rest_api_port"):
        if not 0 <= getattr(args, flag) <= 65535:
            p.error(f"--{flag} {getattr(args, flag)} is not a port number (0-65535)")
    if args.max_batch_size < 1:
        p.error("--max_batch_size must be at least 1")
    if args.model_base_path and not Path(args.model_base_path).is_dir():
        p.error(f"--model_base_path {args.model_base_path}: no such folder; export a model first (python -m gan_pkg.fit)")
    for flag in ("model_config_file", "batching_parameters_file", "ssl_config_file", "monitoring_config_file"):
        value = getattr(args, flag)
        if value and not Path(value).is_file():
            p.error(f"--{flag} {value}: no such file")
    try:
        grpc_channel_arguments(args.grpc_channel_arguments)
    except ValueError as error:
        p.error(str(error))
    return args


def allowed_roots(args) -> list[Path]:
    """The folders models may be loaded from, resolved (see --allowed_model_roots)."""
    given = getattr(args, "allowed_model_roots", None)
    if given:
        roots = [Path(r.strip()) for r in given.split(",") if r.strip()]
    elif args.model_base_path:
        roots = [Path(args.model_base_path)]
    else:
        roots = [Path(args.model_config_file).parent]
    return [r.resolve() for r in roots]


def models_from_args(args, log=print) -> list[Model]:
    roots = allowed_roots(args)
    if args.model_base_path:
        base = check_base_path(args.model_name, Path(args.model_base_path), roots, "--model_base_path")
        return [Model(args.model_name, base, log=log, roots=roots)]
    from tensorflow_serving.config import model_server_config_pb2

    from serving import protos

    config = protos.parse_text(args.model_config_file, model_server_config_pb2.ModelServerConfig)
    validate_model_config_list(config.model_config_list, args.model_config_file)
    root = Path(args.model_config_file).resolve().parent
    models = []
    for entry in config.model_config_list.config:
        base = Path(entry.base_path)
        if not base.is_absolute():  # a convenience here; the same file in the Docker image would not start
            log(f"warning: {args.model_config_file}: model '{entry.name}' has the relative base_path '{entry.base_path}', "
                f"served from {root / base}; TF Serving refuses it (\"Expected model {entry.name} to have an absolute path "
                "or URI\"), so give an absolute path in a config meant for it", file=sys.stderr)
        base = check_base_path(entry.name, base if base.is_absolute() else root / base, roots, args.model_config_file)
        models.append(Model(entry.name, base, _policy_from_config(entry), dict(entry.version_labels), log=log, roots=roots))
    return models


class Running:
    """A started server (in-process); `stop()` drains and shuts down."""

    def __init__(self, core, grpc_server, grpc_port, rest_server, rest_port):
        self.core, self.grpc_server, self.grpc_port = core, grpc_server, grpc_port
        self.rest_server, self.rest_port = rest_server, rest_port
        self._rest_thread = None
        if rest_server is not None:
            self._rest_thread = threading.Thread(target=rest_server.serve_forever, kwargs={"poll_interval": 0.2}, daemon=True)
            self._rest_thread.start()

    def stop(self, grace: float = SHUTDOWN_GRACE_S):
        """Shut down within `grace` seconds. New calls are refused at once; calls in flight (gRPC, REST
        and the batches queued for them, which run at once) finish within the grace period. A request
        whose batch has not started when it ends is answered UNAVAILABLE (retry elsewhere), just before
        gRPC cancels whatever is still running: no work starts for a call nobody waits for any more."""
        deadline = time.monotonic() + grace
        margin = min(0.25, grace / 4)  # queued batches are refused (UNAVAILABLE) this long before gRPC cancels

        def left():
            return max(0.0, deadline - time.monotonic())

        done = self.grpc_server.stop(grace)  # refuses new RPCs now; cancels those still running at the deadline
        if self.core.batcher is not None:
            self.core.batcher.flush()  # queued batches run now, not after batch_timeout
        if self.rest_server is not None:
            self.rest_server.shutdown()  # stops accepting connections
        if self.core.batcher is not None:
            self.core.batcher.drain(deadline - margin)
        if self.rest_server is not None:
            self.rest_server.drain(left())  # requests already being handled finish
            self.rest_server.server_close()
        done.wait(left() + margin)
        self.core.stop(timeout=left() + margin)


def start(args, log=print) -> Running:
    from serving import protos

    batching = protos.parse_text(args.batching_parameters_file, protos.BatchingParameters) if args.batching_parameters_file else None
    ssl_config = protos.parse_text(args.ssl_config_file, protos.SSLConfig) if args.ssl_config_file else None
    if ssl_config is not None:
        ssl_credentials(ssl_config)  # a bad config fails before the slow model load
    options = server_options(grpc_channel_arguments(getattr(args, "grpc_channel_arguments", None)))
    request_bytes = max_request_bytes(options)
    metrics_path = None
    if getattr(args, "monitoring_config_file", None):
        monitoring = protos.parse_text(args.monitoring_config_file, protos.MonitoringConfig)
        if monitoring.prometheus_config.enable:
            metrics_path = monitoring.prometheus_config.path or "/monitoring/prometheus/metrics"
    core = ModelServer(
        models_from_args(args, log),
        max_batch_size=args.max_batch_size,
        batching_parameters=batching,
        enable_batching=args.enable_batching,
        poll_seconds=args.file_system_poll_wait_seconds,
        log=log,
        max_elements=request_bytes,
    )
    if args.rest_api_port and args.rest_api_port == args.port:
        raise ValueError("--rest_api_port cannot be the same as --port")
    # Bind both ports before the (slow) model load, so a busy port fails at once.
    try:
        grpc_server, grpc_port = build_grpc_server(core, args.host, args.port, ssl_config, options=options)
    except RuntimeError as error:
        raise OSError(f"cannot bind gRPC to {args.host}:{args.port} ({error}); is another server using it? pick --port") from None
    rest_server = rest_port = None
    if args.rest_api_port:
        try:
            rest_server = build_rest_server(core, args.host, args.rest_api_port, metrics_path, request_bytes)
        except OSError as error:
            grpc_server.stop(0)
            raise OSError(
                f"cannot bind REST to {args.host}:{args.rest_api_port} ({error.strerror}); pick --rest_api_port (0 disables REST)"
            ) from None
        rest_port = rest_server.server_address[1]
        if ssl_config is not None and args.host not in ("127.0.0.1", "localhost", "::1"):
            log(f"warning: gRPC uses TLS but REST on {args.host}:{rest_port} is plain HTTP (as in TF Serving); "
                "pass --rest_api_port 0 to disable it", file=sys.stderr)
    try:
        core.load_now()
        if not getattr(args, "allow_version_labels_for_unavailable_models", False):
            for model in core.models.values():
                model.check_labels()
    except Exception:
        grpc_server.stop(0)
        if rest_server is not None:
            rest_server.server_close()
        core.stop(timeout=1)
        raise
    grpc_server.start()
    core.start_polling()
    return Running(core, grpc_server, grpc_port, rest_server, rest_port)


def _log(*parts, file=None):
    print(*parts, file=file or sys.stderr, flush=True)


def main(argv=None, prog=None) -> int:
    args = parse_args(argv, prog)
    from gan_pkg.cli import import_tensorflow_quietly

    import_tensorflow_quietly()  # after the flags are good: a typo answers at once
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    try:
        running = start(args, log=_log)
    except (OSError, ValueError, RuntimeError) as error:
        print(f"error: {error}", file=sys.stderr, flush=True)
        return 1
    served = []
    for model in running.core.models.values():
        versions = sorted(model.servables)
        served.append(f"{model.name} version {versions[-1]}" if versions else f"{model.name} (no version yet under {model.base_path})")
    for model in running.core.models.values():
        if not model.servables:
            _log(f"warning: no loadable version under {model.base_path} yet (integer folders with saved_model.pb); "
                 f"watching it every {args.file_system_poll_wait_seconds}s. Export one with: python -m gan_pkg.fit")
    rest = f" and {args.host}:{running.rest_port} (REST)" if running.rest_port else ""
    print(f"serving {', '.join(served)} on {args.host}:{running.grpc_port} (gRPC){rest}", flush=True)
    while not stop.wait(0.5):
        pass
    _log("shutting down: draining in-flight requests")
    running.stop(SHUTDOWN_GRACE_S)
    return 0
