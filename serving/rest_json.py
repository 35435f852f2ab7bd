"""TF Serving's REST JSON, with orjson: request bodies in the row ("instances") and columnar
("inputs") formats decoded strictly into arrays, and outputs, statuses and metadata encoded.

Strict: a JSON number becomes an input only if the input's dtype holds it exactly (integers
within the integer type's range, never a fraction, a boolean or a string; finite floats within
the float type's range); anything else is INVALID_ARGUMENT (HTTP 400), never wrapped or rounded.
"""

from __future__ import annotations

import base64
import binascii
import itertools

import grpc
import numpy as np
import orjson

from gan_pkg import contract
from serving.errors import ServingError, _invalid
from serving.validation import _tf, check_input

_TYPE_NAMES = {bool: "booleans", str: "strings", type(None): "nulls", dict: "objects", list: "nested lists", int: "integers",
               float: "non-integers (a fraction, an exponent, or an integer beyond 64 bits)"}


def loads(raw: bytes):
    """Request body -> Python objects; INVALID_ARGUMENT for anything that is not JSON orjson holds."""
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as error:
        message = str(error)
    # Raised outside the except block, so the decoder's error is not chained to it.
    if "depth limit" in message or "recursion" in message:
        raise _invalid(f"JSON parse error: nested too deeply (at most 1024 levels of arrays and objects): {message}")
    if "infinity" in message:  # orjson reads an integer beyond 64 bits as a double; this one is beyond that too
        raise _invalid(f"JSON parse error: a number too large for any numeric type (integers must fit in 64 bits): {message}")
    raise _invalid(f"JSON parse error: {message}")


def _default(value):
    if isinstance(value, np.ndarray):  # an array orjson's NumPy path does not take (dtype, layout)
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def dumps(payload) -> bytes:
    """JSON bytes; float32 arrays go out through orjson's NumPy path (shortest float32 text)."""
    return orjson.dumps(payload, default=_default, option=orjson.OPT_SERIALIZE_NUMPY)


def _flatten(value, key: str, rank: int | None):
    """Nested lists -> (shape, leaves in row-major order); INVALID_ARGUMENT unless rectangular.

    Level by level with C-speed builtins (no recursion: orjson allows 1024 levels), stopping
    as soon as the nesting is deeper than the signature's rank.
    """
    shape, level = [], [value]
    while True:
        kinds = set(map(type, level))
        if list not in kinds:
            return shape, level, kinds
        lengths = set(map(len, level)) if kinds == {list} else None
        if lengths is None or len(lengths) > 1:
            raise _invalid(f"input '{key}' is not a rectangular array: nested lists of different lengths or depths")
        shape.append(lengths.pop())
        if rank is not None and len(shape) > rank:
            return shape, None, None  # deeper than the signature: check_input names the rank
        level = list(itertools.chain.from_iterable(level))


def _refuse_kinds(key: str, dtype, kinds: set, allowed: set):
    unexpected = kinds - allowed
    if unexpected:
        described = ", ".join(sorted(_TYPE_NAMES.get(k, k.__name__) for k in unexpected))
        raise _invalid(f"input '{key}' expects {dtype.name} values, got {described}")


def _b64(value, key: str) -> bytes:
    if isinstance(value, str):
        return value.encode()
    if isinstance(value, dict) and set(value) == {"b64"} and isinstance(value["b64"], str):
        try:
            return base64.b64decode(value["b64"], validate=True)
        except (binascii.Error, ValueError):
            raise _invalid(f"input '{key}': 'b64' is not valid base64") from None
    raise _invalid(f"input '{key}' expects strings or {{\"b64\": ...}} objects")


def json_input(value, dtype, key: str, signature: str, spec) -> np.ndarray:
    """A JSON value -> ndarray of the signature's dtype, exactly, or INVALID_ARGUMENT."""
    tf = _tf()
    shape_spec = spec[1]
    shape, leaves, kinds = _flatten(value, key, None if shape_spec is None else len(shape_spec))
    if leaves is None or not shape:
        check_input(signature, key, spec, shape)  # refuses the rank (or the missing batch dimension), nothing converted
        raise _invalid(f"input '{key}' of signature '{signature}' has shape {shape}")  # (not reached)
    if dtype == tf.string:
        return np.array([_b64(v, key) for v in leaves] or [], dtype=object).reshape(shape)
    if dtype == tf.bool:
        _refuse_kinds(key, dtype, kinds, {bool})
        return np.array(leaves, dtype=bool).reshape(shape)
    target = np.dtype(dtype.as_numpy_dtype)
    if dtype.is_integer:
        _refuse_kinds(key, dtype, kinds, {int})
        if leaves:
            info = np.iinfo(target)
            low, high = min(leaves), max(leaves)
            if low < info.min or high > info.max:
                bad = low if low < info.min else high
                raise _invalid(f"input '{key}': {_short(bad)} is outside the {dtype.name} range [{info.min}, {info.max}]")
        return np.array(leaves, dtype=target).reshape(shape)
    if dtype.is_floating:
        _refuse_kinds(key, dtype, kinds, {int, float})
        array = np.array(leaves, dtype=np.float64).reshape(shape)
        if not np.isfinite(array).all():
            raise _invalid(f"input '{key}' contains NaN or infinite values; send finite numbers")
        limit = float(np.finfo(target).max)
        if array.size and np.abs(array).max() > limit:
            raise _invalid(f"input '{key}': {np.abs(array).max():g} is outside the {dtype.name} range (|x| <= {limit:g})")
        return array.astype(target)
    raise _invalid(f"input '{key}' has dtype {dtype.name}, which the REST API does not take")


def _short(number: int) -> str:
    text = str(number)
    return text if len(text) <= 40 else f"{text[:20]}...({len(text)} digits)"


def json_output(array: np.ndarray, key: str):
    """An output array, as TF Serving's REST API writes it: a string output whose name ends
    in `_bytes` as {"b64": ...} objects, any other string as text (TF Serving writes its raw
    bytes; bytes that are not UTF-8 cannot be JSON text, so they go out with U+FFFD in
    place), numbers as a C-ordered array."""
    if array.dtype == object or array.dtype.kind == "S":
        if key.endswith(contract.BYTES_SUFFIX):
            flat = [{"b64": base64.b64encode(bytes(v)).decode("ascii")} for v in array.reshape(-1)]
        else:
            flat = [bytes(v).decode("utf-8", errors="replace") for v in array.reshape(-1)]
        return np.array(flat, dtype=object).reshape(array.shape).tolist()
    return np.ascontiguousarray(array)


def _raw_inputs(body: dict, specs: dict, signature: str) -> tuple[dict, bool]:
    """{input key: JSON value} and whether the body used the row format."""
    row_format = "instances" in body
    payload = body["instances"] if row_format else body["inputs"]
    if row_format:
        if not isinstance(payload, list):
            raise _invalid("'instances' must be a list of rows")
        if payload and all(isinstance(r, dict) and "b64" not in r for r in payload):
            keys = set(payload[0])
            if any(set(r) != keys for r in payload):
                raise _invalid("every instance must name the same inputs")
            return {k: [r[k] for r in payload] for k in keys}, True
        if len(specs) == 1:
            return {next(iter(specs)): payload}, True
        raise _invalid(f"signature '{signature}' has several inputs {sorted(specs)}: send each instance as an object")
    if isinstance(payload, dict) and set(payload) != {"b64"}:
        return payload, False
    if len(specs) == 1:
        return {next(iter(specs)): payload}, False
    raise _invalid(f"signature '{signature}' has several inputs {sorted(specs)}: 'inputs' must be an object")


def rest_predict(core, spec, body) -> dict:
    """TF Serving's REST predict on a ModelServer: row ("instances") or columnar ("inputs") format."""
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
    raw, row_format = _raw_inputs(body, specs, signature)
    inputs = {}
    for key, value in raw.items():
        if key not in specs:
            raise _invalid(f"unknown input '{key}' for signature '{signature}'; inputs: {sorted(specs)}")
        inputs[key] = json_input(value, specs[key][0], key, signature, specs[key])
    del raw, body  # the parsed JSON is not needed while the model runs
    spec.version.value = servable.version  # the exact version resolved above
    servable, signature, outputs = core.predict_arrays(spec, inputs)
    if row_format:
        if len(outputs) == 1:
            ((key, value),) = outputs.items()
            return {"predictions": json_output(value, key)}
        columns = {k: json_output(v, k) for k, v in outputs.items()}
        rows = len(next(iter(columns.values())))
        return {"predictions": [{k: columns[k][i] for k in columns} for i in range(rows)]}
    if len(outputs) == 1:
        ((key, value),) = outputs.items()
        return {"outputs": json_output(value, key)}
    return {"outputs": {k: json_output(v, k) for k, v in outputs.items()}}


def _check_example(example, name_of_list: str):
    """MakeExampleFromJsonObject's checks: an object of features, each a value or a flat list of
    values of one kind (int64: integers and booleans, float, bytes: strings and {"b64": ...})."""
    if not isinstance(example, dict):
        raise _invalid(f"Example must be JSON object but got JSON {type(example).__name__} (in '{name_of_list}')")
    for feature, content in example.items():
        kinds = set()
        for value in content if isinstance(content, list) else [content]:
            if isinstance(value, dict) and set(value) == {"b64"} and isinstance(value["b64"], str):
                kinds.add("bytes")
            elif type(value) in (int, bool, float, str):
                if type(value) is int and value > 2**63 - 1:
                    raise _invalid(f"Feature: {feature} has uint64_t element. Only int64_t is supported.")
                kinds.add({str: "bytes", float: "float"}.get(type(value), "int64"))
            else:
                raise _invalid(f"Feature: {feature} has element with unexpected JSON type: {type(value).__name__}")
        if len(kinds) > 1:
            raise _invalid(f"Unexpected element type in feature: {feature} expecting type: {min(kinds)}")


def _signature_problem(signature, verb: str) -> str | None:
    """Why PreProcessClassification / PreProcessRegression (classifier.cc, regressor.cc) refuse
    a signature; None where they would not."""
    inputs, outputs = signature.inputs, signature.outputs
    kind = "classification" if verb == "classify" else "regression"
    if len(inputs) != 1:
        return "Expected one input Tensor."
    if verb == "classify" and len(outputs) not in (1, 2):
        return f"Expected one or two output Tensors, found {len(outputs)}"
    if verb == "regress" and len(outputs) != 1:
        return "Expected one output Tensor."
    if "inputs" not in inputs:
        return f"No {kind} inputs found in SignatureDef: {signature}"
    if verb == "classify" and not {"classes", "scores"} & set(outputs):
        return f'Expected classification signature outputs to contain at least one of "classes" or "scores". Signature was: {signature}'
    if verb == "regress" and "outputs" not in outputs:
        return f"No regression outputs found in SignatureDef: {signature}"
    return None


def classify_or_regress(core, spec, body, verb: str) -> dict:
    """TF Serving's REST classify and regress, which this server cannot run (its models take
    tensors, not tf.Examples). Checked in TF Serving's order, so each request gets TF Serving's
    status: the body (FillClassifyRegressRequestFromJson, json_tensor.cc: 400), the model and
    version (404), the signature (400); one that passes every check is UNIMPLEMENTED (501)."""
    if not isinstance(body, dict):
        raise _invalid("request body Is not object")
    signature_name = body.get("signature_name", "")
    if not isinstance(signature_name, str):
        raise _invalid("request body not formatted correctly. 'signature_name' key must be a string value.")
    if "context" in body:
        _check_example(body["context"], "context")
    if "examples" not in body:  # TF Serving's wording, for regress too
        raise _invalid("When method is classify, key 'examples' is expected and was not found")
    examples = body["examples"]
    if not isinstance(examples, list):
        raise _invalid("Expecting 'examples' value to be an list/array")
    if not examples:
        raise _invalid("'examples' value is an empty array")
    for example in examples:
        _check_example(example, "examples")
    del body, examples
    servable = core.servable(spec)
    name = signature_name or contract.SERVING_DEFAULT
    if name not in servable.signature_defs:
        raise _invalid(f"No signature was found with the name: {name}")
    problem = _signature_problem(servable.signature_defs[name], verb)
    if problem:
        raise _invalid(problem)
    raise ServingError(grpc.StatusCode.UNIMPLEMENTED, f"{verb} is not implemented by this server; send the signature's tensors to :predict")


def status_json(response) -> dict:
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


def metadata_json(response) -> dict:
    from google.protobuf import json_format
    from tensorflow_serving.apis import get_model_metadata_pb2

    signature_map = get_model_metadata_pb2.SignatureDefMap()
    response.metadata["signature_def"].Unpack(signature_map)
    return {
        "model_spec": {"name": response.model_spec.name, "signature_name": "", "version": str(response.model_spec.version.value)},
        "metadata": {"signature_def": json_format.MessageToDict(signature_map, preserving_proto_field_name=True)},
    }
