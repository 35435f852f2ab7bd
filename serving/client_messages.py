"""What a gan_pkg client sends and receives, as small pure functions: TF Serving's
PredictRequest and REST bodies built from noise, seeds and labels, responses parsed
back to arrays, label lists and class grids, retry delays. serving/client.py's
clients and CLI are built on these."""

from __future__ import annotations

import base64

import numpy as np

from gan_pkg import contract
from serving import tensors

MAX_MESSAGE_BYTES = 2**31 - 1
CHANNEL_OPTIONS = [
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
]
OUTPUT_KEYS = (contract.IMAGES, contract.SAMPLES)
# DataType enum names in REST metadata -> the names tf.dtypes uses (what the gRPC path reports).
_REST_DTYPES = {
    "DT_FLOAT": "float32", "DT_DOUBLE": "float64", "DT_HALF": "float16", "DT_BFLOAT16": "bfloat16",
    "DT_INT64": "int64", "DT_INT32": "int32", "DT_UINT8": "uint8", "DT_BOOL": "bool", "DT_STRING": "string",
}


class ServingError(Exception):
    """A failed call: `code` is the gRPC status name (or HTTP status for REST), `message` the server's words."""

    def __init__(self, code: str, message: str):
        super().__init__(f"{code}: {message}")
        self.code, self.message = code, message


# --------------------------------------------------------------------------- pure functions


def default_signature(noise=None, seeds=None) -> str:
    if (noise is None) == (seeds is None):
        raise ValueError("pass exactly one of noise (an array [batch, latent_dim]) or seeds (a list of ints)")
    return contract.SERVING_DEFAULT if noise is not None else contract.GENERATE


def generate_signature(configured, noise=None, seeds=None) -> str:
    """The client's configured signature when it takes what is being sent, else the standard one:
    noise goes to serving_default, seeds to generate (generate_png returns PNG bytes, not arrays)."""
    standard = default_signature(noise, seeds)
    if configured in (None, contract.GENERATE_PNG):
        return standard
    seed_signatures = (contract.GENERATE,)
    if (seeds is not None) == (configured in seed_signatures) or configured not in (contract.SERVING_DEFAULT, contract.GENERATE):
        return configured  # a custom signature is the caller's call
    return standard


def build_predict_request(model_name, signature, noise=None, seeds=None, version=None, output_filter=(), labels=None):
    """A PredictRequest with `noise` (float32 [B, latent]) or `seed` (int64 [B]), and for a
    conditional model `label` (int64 [B])."""
    from tensorflow_serving.apis import predict_pb2

    request = predict_pb2.PredictRequest()
    request.model_spec.name = model_name
    request.model_spec.signature_name = signature
    if version is not None:
        request.model_spec.version.value = int(version)
    if noise is not None:
        request.inputs[contract.NOISE].CopyFrom(tensors.to_proto(np.asarray(noise, np.float32)))
    elif seeds is not None:
        request.inputs[contract.SEED].CopyFrom(tensors.to_proto(np.asarray(seeds, np.int64).reshape(-1)))
    else:
        raise ValueError("pass noise or seeds")
    if labels is not None:
        request.inputs[contract.LABEL].CopyFrom(tensors.to_proto(np.asarray(labels, np.int64).reshape(-1)))
    request.output_filter.extend(output_filter)
    return request


def parse_predict_response(response) -> dict:
    """PredictResponse -> {output key: ndarray} (strings as bytes objects)."""
    return {key: tensors.to_ndarray(proto) for key, proto in response.outputs.items()}


def pick_output(outputs: dict) -> np.ndarray:
    """The generated batch: images (image presets) or samples (1-D presets)."""
    for key in OUTPUT_KEYS:
        if key in outputs:
            return outputs[key]
    raise ServingError("INVALID_RESPONSE", f"response has no '{contract.IMAGES}' or '{contract.SAMPLES}' output: {sorted(outputs)}")


def build_rest_body(signature, noise=None, seeds=None, labels=None) -> dict:
    """Columnar ("inputs") JSON body for TF Serving's REST :predict."""
    body = {"signature_name": signature}
    if noise is not None:
        body["inputs"] = {contract.NOISE: np.asarray(noise, np.float32).tolist()}
    elif seeds is not None:
        body["inputs"] = {contract.SEED: [int(s) for s in np.asarray(seeds).reshape(-1)]}
    else:
        raise ValueError("pass noise or seeds")
    if labels is not None:
        body["inputs"][contract.LABEL] = [int(label) for label in np.asarray(labels).reshape(-1)]
    return body


def parse_labels(text: str) -> list[int]:
    """--labels: "0-9", "3,5,7" or "0-2,7" -> [0, 1, ...]."""
    labels = []
    for part in text.split(","):
        low, sep, high = part.strip().partition("-")
        try:
            first, last = int(low), int(high) if sep else int(low)
        except ValueError:
            raise ValueError(f"--labels {text!r}: expected class indices such as 0-9 or 1,3,5") from None
        if first < 0 or last < first:
            raise ValueError(f"--labels {text!r}: {part.strip()!r} is not a range of class indices (0 or more, low-high)")
        labels.extend(range(first, last + 1))
    return labels


def class_grid(labels, per_row: int, seed: int):
    """One row per label with the same seeds down each column: (seeds, labels), row-major."""
    return np.tile(np.arange(seed, seed + per_row, dtype=np.int64), len(labels)), np.repeat(np.asarray(labels, np.int64), per_row)


def _decode_json(value):
    if isinstance(value, dict) and set(value) == {"b64"}:
        return base64.b64decode(value["b64"])
    if isinstance(value, list):
        return [_decode_json(v) for v in value]
    return value


def parse_rest_response(payload: dict) -> dict:
    """REST :predict JSON ("outputs" or "predictions") -> {output key: ndarray}."""
    if "error" in payload:
        raise ServingError("REST", payload["error"])
    if "outputs" in payload:
        outputs = payload["outputs"]
        if not isinstance(outputs, dict):  # a single-output signature: TF Serving drops the key
            outputs = {"output": outputs}
    elif "predictions" in payload:
        rows = payload["predictions"]
        if rows and all(isinstance(r, dict) and set(r) != {"b64"} for r in rows):
            outputs = {k: [r[k] for r in rows] for k in rows[0]}
        else:
            outputs = {"output": rows}
    else:
        raise ServingError("INVALID_RESPONSE", f"REST response has neither 'outputs' nor 'predictions': {sorted(payload)}")
    result = {}
    for key, value in outputs.items():
        decoded = _decode_json(value)
        result[key] = np.array(decoded, dtype=object) if _holds_strings(decoded) else np.asarray(decoded, np.float32)
    return result


def _holds_strings(value) -> bool:
    """A string output: bytes ({"b64": ...}, decoded) or text (a string output not named *_bytes)."""
    while isinstance(value, list) and value:
        value = value[0]
    return isinstance(value, (bytes, str))


def backoff_delays(retries: int, base: float = 0.25, cap: float = 4.0) -> list[float]:
    """Seconds to sleep before each retry: exponential, capped."""
    return [min(cap, base * 2**i) for i in range(max(0, retries))]


def status_to_dict(response) -> dict:
    from tensorflow_serving.apis import get_model_status_pb2

    return {
        "model_version_status": [
            {
                "version": str(s.version),
                "state": get_model_status_pb2.ModelVersionStatus.State.Name(s.state),
                "status": {"error_code": s.status.error_code, "error_message": s.status.error_message},
            }
            for s in response.model_version_status
        ]
    }


def metadata_to_dict(response) -> dict:
    """GetModelMetadataResponse -> {signature: {"inputs": {key: (dtype, shape)}, "outputs": {...}}}."""
    import tensorflow as tf
    from tensorflow_serving.apis import get_model_metadata_pb2

    signature_map = get_model_metadata_pb2.SignatureDefMap()
    response.metadata["signature_def"].Unpack(signature_map)

    def describe(infos):
        return {
            key: (tf.dtypes.as_dtype(info.dtype).name, [d.size if d.size >= 0 else None for d in info.tensor_shape.dim])
            for key, info in infos.items()
        }

    return {
        name: {"inputs": describe(sig.inputs), "outputs": describe(sig.outputs)}
        for name, sig in signature_map.signature_def.items()
        if not name.startswith("__")
    }


def png_images(outputs: dict) -> list[bytes]:
    """generate_png's PNGs from a parsed response: `png_bytes` (export contract 2), `png` (an
    export of contract 1, over gRPC), or a single-output REST answer TF Serving leaves unnamed.
    Contract 1's `png` over REST comes back as text, not bytes (TF Serving base64-encodes only
    `*_bytes` outputs): that is refused, saying how to get bytes."""
    for key in (contract.PNG, contract.LEGACY_PNG, "output"):
        if key in outputs:
            values = list(np.asarray(outputs[key], dtype=object).reshape(-1))
            if all(isinstance(v, (bytes, np.bytes_)) for v in values):
                return [bytes(v) for v in values]
            raise ServingError(
                "INVALID_RESPONSE",
                f"generate_png returned text, not PNG bytes: this export names its output {contract.LEGACY_PNG!r} "
                f"(export contract 1), which TF Serving's REST API does not base64-encode; use gRPC, or re-export the run "
                "(python -m gan_pkg.export --checkpoint <workdir>)",
            )
    raise ServingError("INVALID_RESPONSE", f"generate_png answered {sorted(outputs)}, no {contract.PNG!r}")
