"""Client for a served gan_pkg generator: TF Serving's gRPC API (or REST with --rest).

    python serving/client.py --server localhost:8500 --num 16 --seed 0 --out samples.png
    python serving/client.py --rest --rest-server localhost:8501 --num 16 --out samples.png
    python serving/client.py --labels 0-9 --num 8 --out grid.png    # conditional models: one row per class

Uses only standard TF Serving API features, so it works unchanged against
tensorflow_model_server (the Docker image) and against serving/server.py.
Request building and response parsing are small pure functions in serving/client_messages.py.
"""

from __future__ import annotations

import json
import os
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

if __name__ == "__main__":
    # Run as a script, Python puts serving/ itself first on sys.path, where the package's
    # modules (main, errors, ...) would shadow top-level names; the checkout root goes
    # there instead, so gan_pkg imports from a checkout with or without an install.
    _HERE = Path(__file__).resolve().parent
    if sys.path and Path(sys.path[0] or ".").resolve() == _HERE:
        sys.path[0] = str(_HERE.parent)

import numpy as np  # noqa: E402

from gan_pkg import contract  # noqa: E402
from gan_pkg.cli import ArgumentParser  # noqa: E402

from serving.client_messages import (  # noqa: E402, F401  (re-exported: what callers import from serving.client)
    _REST_DTYPES,
    backoff_delays,
    build_predict_request,
    build_rest_body,
    CHANNEL_OPTIONS,
    class_grid,
    default_signature,
    generate_signature,
    metadata_to_dict,
    parse_labels,
    parse_predict_response,
    parse_rest_response,
    pick_output,
    png_images,
    ServingError,
    status_to_dict,
)


# --------------------------------------------------------------------------- clients


class GeneratorClient:
    """Generate from a served model over gRPC.

    `generate(noise)` -> images [B, H, W, C] in [0, 1] (or samples [B, n]);
    `generate(seeds=[...])` uses the `generate` signature (row i depends only on seed i).
    """

    def __init__(self, target=f"localhost:{contract.GRPC_PORT}", model_name=contract.DEFAULT_MODEL_NAME, signature=None,
                 timeout=30.0, retries=5, version=None, root_certificates=None, private_key=None, certificate_chain=None):
        """TLS when `root_certificates` (PEM bytes of the CA or self-signed server certificate) is given;
        `private_key` + `certificate_chain` add a client certificate (SSLConfig client_verify)."""
        import grpc
        from tensorflow_serving.apis import model_service_pb2_grpc, prediction_service_pb2_grpc

        self._grpc = grpc
        self.target, self.model_name, self.signature = target, model_name, signature
        self.timeout, self.retries, self.version = timeout, retries, version
        if root_certificates is not None:
            credentials = grpc.ssl_channel_credentials(root_certificates, private_key, certificate_chain)
            self.channel = grpc.secure_channel(target, credentials, options=CHANNEL_OPTIONS)
        elif private_key is not None or certificate_chain is not None:
            raise ValueError("a client certificate needs TLS: pass root_certificates (the server's CA) too")
        else:
            self.channel = grpc.insecure_channel(target, options=CHANNEL_OPTIONS)
        self.prediction = prediction_service_pb2_grpc.PredictionServiceStub(self.channel)
        self.models = model_service_pb2_grpc.ModelServiceStub(self.channel)

    def close(self):
        self.channel.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _call(self, method, request):
        """One RPC with a deadline; UNAVAILABLE (server not up yet, restarting) is retried with backoff."""
        grpc = self._grpc
        delays = backoff_delays(self.retries)
        for attempt in range(len(delays) + 1):
            try:
                return method(request, timeout=self.timeout)
            except grpc.RpcError as error:
                code = error.code()
                if code == grpc.StatusCode.UNAVAILABLE and attempt < len(delays):
                    time.sleep(delays[attempt])
                    continue
                details = error.details() or ""
                if code == grpc.StatusCode.UNAVAILABLE:
                    details = f"cannot reach {self.target} after {attempt + 1} attempts: {details}"
                raise ServingError(code.name, details) from None

    def predict(self, noise=None, seeds=None, signature=None, output_filter=(), labels=None) -> dict:
        signature = signature or self.signature or default_signature(noise, seeds)
        request = build_predict_request(self.model_name, signature, noise, seeds, self.version, output_filter, labels)
        return parse_predict_response(self._call(self.prediction.Predict, request))

    def generate(self, noise=None, seeds=None, labels=None) -> np.ndarray:
        """`labels` (one class index per row) for a conditional model."""
        return pick_output(self.predict(noise, seeds, generate_signature(self.signature, noise, seeds), labels=labels))

    def generate_png(self, seeds, labels=None) -> list[bytes]:
        return png_images(self.predict(seeds=seeds, signature=contract.GENERATE_PNG, labels=labels))

    def status(self) -> dict:
        from tensorflow_serving.apis import get_model_status_pb2

        request = get_model_status_pb2.GetModelStatusRequest()
        request.model_spec.name = self.model_name
        if self.version is not None:
            request.model_spec.version.value = int(self.version)
        return status_to_dict(self._call(self.models.GetModelStatus, request))

    def metadata(self) -> dict:
        from tensorflow_serving.apis import get_model_metadata_pb2

        request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
        request.model_spec.name = self.model_name
        if self.version is not None:
            request.model_spec.version.value = int(self.version)
        return metadata_to_dict(self._call(self.prediction.GetModelMetadata, request))


class RestGeneratorClient:
    """The same calls over TF Serving's REST API (stdlib urllib only)."""

    def __init__(self, target=f"localhost:{contract.REST_PORT}", model_name=contract.DEFAULT_MODEL_NAME, signature=None,
                 timeout=30.0, retries=5, version=None):
        self.base = target if target.startswith("http") else f"http://{target}"
        self.model_name, self.signature, self.timeout, self.retries, self.version = model_name, signature, timeout, retries, version

    def _url(self, suffix=""):
        version = f"/versions/{int(self.version)}" if self.version is not None else ""
        return f"{self.base}/v1/models/{self.model_name}{version}{suffix}"

    def _request(self, url, body=None) -> dict:
        data = json.dumps(body).encode() if body is not None else None
        delays = backoff_delays(self.retries)
        for attempt in range(len(delays) + 1):
            request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
            try:
                with urllib.request.urlopen(request, timeout=self.timeout) as response:
                    return json.loads(response.read())
            except urllib.error.HTTPError as error:
                try:
                    message = json.loads(error.read()).get("error", "")
                except ValueError:
                    message = error.reason
                if error.code == 503 and attempt < len(delays):
                    time.sleep(delays[attempt])
                    continue
                raise ServingError(f"HTTP {error.code}", message) from None
            except (urllib.error.URLError, ConnectionError, TimeoutError) as error:
                if attempt < len(delays):
                    time.sleep(delays[attempt])
                    continue
                reason = getattr(error, "reason", error)
                raise ServingError("UNAVAILABLE", f"cannot reach {self.base} after {attempt + 1} attempts: {reason}") from None

    def predict(self, noise=None, seeds=None, signature=None, labels=None) -> dict:
        signature = signature or self.signature or default_signature(noise, seeds)
        return parse_rest_response(self._request(self._url(":predict"), build_rest_body(signature, noise, seeds, labels)))

    def generate(self, noise=None, seeds=None, labels=None) -> np.ndarray:
        outputs = self.predict(noise, seeds, generate_signature(self.signature, noise, seeds), labels)
        return outputs["output"] if "output" in outputs else pick_output(outputs)

    def generate_png(self, seeds, labels=None) -> list[bytes]:
        return png_images(self.predict(seeds=seeds, signature=contract.GENERATE_PNG, labels=labels))

    def status(self) -> dict:
        return self._request(self._url())

    def metadata(self) -> dict:
        payload = self._request(self._url("/metadata"))
        signatures = payload["metadata"]["signature_def"]["signature_def"]

        def describe(infos):
            return {
                key: (_REST_DTYPES.get(info["dtype"], info["dtype"]), [int(d["size"]) if int(d["size"]) >= 0 else None for d in info.get("tensor_shape", {}).get("dim", [])])
                for key, info in infos.items()
            }

        return {
            name: {"inputs": describe(sig.get("inputs", {})), "outputs": describe(sig.get("outputs", {}))}
            for name, sig in signatures.items()
            if not name.startswith("__")
        }


# --------------------------------------------------------------------------- CLI


def latent_dim_of(metadata: dict, signature=contract.SERVING_DEFAULT) -> int:
    dtype, shape = metadata[signature]["inputs"][contract.NOISE]
    return int(shape[-1])


def parse_args(argv=None):
    p = ArgumentParser(description="Ask a served gan_pkg generator for samples and save them as a PNG grid.")
    p.add_argument("--server", default=f"localhost:{contract.GRPC_PORT}", help="gRPC address host:port")
    p.add_argument("--rest", action="store_true", help="use the REST API instead of gRPC")
    p.add_argument("--rest-server", default=f"localhost:{contract.REST_PORT}", help="REST address host:port (with --rest)")
    p.add_argument("--model", default=contract.DEFAULT_MODEL_NAME)
    p.add_argument("--signature", default=contract.SERVING_DEFAULT,
                   choices=[contract.SERVING_DEFAULT, contract.GENERATE, contract.GENERATE_PNG],
                   help="serving_default sends standard-normal noise; generate/generate_png send seeds and use "
                        "the model's own latent distribution (use them for uniform-noise presets)")
    p.add_argument("--version", type=int, help="a specific model version (default: the latest served)")
    p.add_argument("--num", type=int, default=16, help="how many samples (per row with --labels)")
    classes = p.add_mutually_exclusive_group()
    classes.add_argument("--label", type=int, help="conditional models: every sample of this class index")
    classes.add_argument("--labels", help="conditional models: a grid with one row per class, e.g. 0-9 or 1,3,5; "
                                          "the same noise down each column")
    p.add_argument("--seed", type=int, default=0, help="noise seed (serving_default) or first seed (generate*)")
    p.add_argument("--out", default="samples.png", help="PNG grid to write")
    p.add_argument("--timeout", type=float, default=30.0, help="seconds per call")
    p.add_argument("--retries", type=int, default=5, help="retries while the server is unavailable")
    p.add_argument("--ca-cert", help="gRPC over TLS: PEM of the CA (or the self-signed certificate) the server's certificate chains to")
    p.add_argument("--client-cert", help="PEM client certificate, for servers that verify clients (with --client-key)")
    p.add_argument("--client-key", help="PEM private key of --client-cert")
    args = p.parse_args(argv)
    if args.num < 1:
        p.error("--num must be at least 1")
    if args.label is not None and args.label < 0:
        p.error("--label must be a class index (0 or more)")
    try:
        args.labels = parse_labels(args.labels) if args.labels is not None else None
    except ValueError as error:
        p.error(str(error))
    if args.timeout <= 0 or args.retries < 0:
        p.error("--timeout must be positive and --retries at least 0")
    if (args.client_cert is None) != (args.client_key is None):
        p.error("--client-cert and --client-key go together")
    if args.client_cert and not args.ca_cert:
        p.error("--client-cert needs --ca-cert (TLS)")
    if args.rest and args.ca_cert:
        p.error("--ca-cert applies to gRPC; TF Serving's REST API is plain HTTP")
    for flag in ("ca_cert", "client_cert", "client_key"):
        value = getattr(args, flag)
        if value and not Path(value).is_file():
            p.error(f"--{flag.replace('_', '-')} {value}: no such file")
        if value and b"-----BEGIN " not in Path(value).read_bytes():
            p.error(f"--{flag.replace('_', '-')} {value}: not a PEM file (expected '-----BEGIN ...')")
    return args


def run(args) -> str:
    from gan_pkg import pictures

    target = args.rest_server if args.rest else args.server
    if args.rest:
        client = RestGeneratorClient(target, args.model, args.signature, timeout=args.timeout, retries=args.retries, version=args.version)
    else:
        def read(path):
            return Path(path).read_bytes() if path else None

        client = GeneratorClient(target, args.model, args.signature, timeout=args.timeout, retries=args.retries, version=args.version,
                                 root_certificates=read(getattr(args, "ca_cert", None)), private_key=read(getattr(args, "client_key", None)),
                                 certificate_chain=read(getattr(args, "client_cert", None)))
    seeds = np.arange(args.seed, args.seed + args.num, dtype=np.int64)
    labels, columns = None, None
    if args.label is not None:
        labels = np.full(args.num, args.label, np.int64)
    elif args.labels is not None:
        seeds, labels = class_grid(args.labels, args.num, args.seed)
        columns = args.num
    if args.signature == contract.GENERATE_PNG:
        import io

        from PIL import Image

        images = np.stack([np.asarray(Image.open(io.BytesIO(b))) for b in client.generate_png(seeds, labels)]).astype(np.float32) / 255.0
        if images.ndim == 3:
            images = images[..., None]
    elif args.signature == contract.GENERATE:
        images = client.generate(seeds=seeds, labels=labels)
    else:
        latent = latent_dim_of(client.metadata())
        noise = _noise(latent, args.num, args.seed)
        images = client.generate(noise=noise if columns is None else np.tile(noise, (len(args.labels), 1)), labels=labels)
    images = np.asarray(images, np.float32)
    if images.ndim != 4:
        raise ServingError("UNSUPPORTED", f"model returned shape {list(images.shape)}, not images [B, H, W, C]; nothing to draw")
    pictures.save_grid(images, Path(args.out), columns)
    via = f"REST {target}" if args.rest else f"gRPC {target}"
    return f"wrote {args.out}: {len(images)} samples {list(images.shape[1:])} from model '{args.model}' ({args.signature}, {via})"


def _noise(latent_dim: int, num: int, seed: int) -> np.ndarray:
    # The served model's default latent distribution (config.latent_distribution) is not
    # visible through TF Serving's API; a standard normal matches the image presets.
    return np.random.default_rng(seed).standard_normal((num, latent_dim)).astype(np.float32)


def main(argv=None) -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    # gRPC's C core logs TLS and connection failures on stderr itself; the CLI's one error line says it.
    os.environ.setdefault("GRPC_VERBOSITY", "NONE")
    args = parse_args(argv)
    if not args.rest:  # the gRPC protos import TensorFlow: keep its start-up banner off stderr
        from gan_pkg.cli import import_tensorflow_quietly

        import_tensorflow_quietly()
    try:
        print(run(args), flush=True)
    except ServingError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except (OSError, ValueError, KeyError) as error:
        print(f"error: {type(error).__name__}: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
