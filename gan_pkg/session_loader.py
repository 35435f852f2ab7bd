"""Load and run a SavedModel the way TensorFlow Serving does.

tensorflow_model_server's loader (C++ `LoadSavedModel`) imports the MetaGraph
into a fresh graph, runs its restore op into a Session, and then runs each
signature by the tensor names in its SignatureDef. From Python the same path is
`tf.compat.v1.saved_model.loader.load` into a `tf.compat.v1.Session`; that is
what this module does, and what the embedded server, `gan_pkg.push` and
`gan_pkg.evaluate --export` load through. `tf.saved_model.load` (the Python
object loader) is not that path: it rebuilds Python objects and runs exports
whose variables TF Serving cannot find (a Keras 3 model held by a plain
`tf.Module`, keras-team/keras#19274).

This file imports only TensorFlow and NumPy, never `gan_pkg`, so that running it
by path checks an export as a process that has never seen this package would:

    python gan_pkg/session_loader.py export/gan/1
    python gan_pkg/session_loader.py export/gan/1 --inputs in.npz --outputs out.npz

Without --inputs every signature is run on a small default batch (zeros for
float inputs, 0..n-1 for integer ones); exit status 0 means every signature
loaded, ran, kept dimension 0 and gave finite floats. npz keys are
`<signature>/<tensor key>`.
"""

from __future__ import annotations

import contextlib
import os
import sys

if __name__ == "__main__":
    # Run by path, Python puts this folder first on sys.path, where siblings such as
    # config.py or data.py could shadow modules TensorFlow imports.
    _here = os.path.dirname(os.path.abspath(__file__))
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != _here]
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

SERVE_TAG = "serve"
# Written by TF2's saver into signature_def; TF Serving runs it at load, never as a request.
INIT_OP_KEY = "__saved_model_init_op"
DEFAULT_CHECK_BATCH = 3


def _quiet_deprecation():
    """tf.compat.v1's loader logs "use tf.saved_model.load instead" on every load:
    advice that is wrong here, since matching TF Serving is the point."""
    try:
        from tensorflow.python.util import deprecation

        return deprecation.silence()
    except (ImportError, AttributeError):  # a TF without it just logs the line
        return contextlib.nullcontext()


class SessionModel:
    """One SavedModel loaded into its own graph and Session.

    `signature_defs` is the MetaGraph's map exactly as TF Serving reports it in
    GetModelMetadata; `inputs[signature]` maps each input key to (tf.DType,
    shape with None for unknown dimensions, or None for unknown rank);
    `outputs[signature]` lists the output keys. `run` is thread-safe: callers
    share one Session, as TF Serving's request threads do.
    """

    def __init__(self, path, tags=(SERVE_TAG,)):
        self.path = str(path)
        self.graph = tf.Graph()
        config = tf.compat.v1.ConfigProto(allow_soft_placement=True)  # as TF Serving: a GPU op falls back to CPU
        self.session = tf.compat.v1.Session(graph=self.graph, config=config)
        try:
            with self.graph.as_default(), _quiet_deprecation():
                meta_graph = tf.compat.v1.saved_model.loader.load(self.session, list(tags), self.path)
        except Exception:
            self.session.close()
            raise
        self.signature_defs = meta_graph.signature_def
        self.inputs, self.outputs, self._runners = {}, {}, {}
        for name, signature in self.signature_defs.items():
            if name == INIT_OP_KEY:
                continue
            self.inputs[name] = {key: (tf.dtypes.as_dtype(info.dtype), _shape(info)) for key, info in signature.inputs.items()}
            self.outputs[name] = sorted(signature.outputs)
            self._runners[name] = self._runner(signature)

    def _runner(self, signature):
        """A Session callable feeding and fetching by the SignatureDef's tensor names:
        the graph is pruned once here, not on every request."""
        input_keys, output_keys = sorted(signature.inputs), sorted(signature.outputs)
        tensor = self.graph.get_tensor_by_name
        call = self.session.make_callable(
            [tensor(signature.outputs[k].name) for k in output_keys],
            feed_list=[tensor(signature.inputs[k].name) for k in input_keys],
        )

        def run(inputs: dict) -> dict:
            return dict(zip(output_keys, call(*(inputs[k] for k in input_keys))))

        return run

    @property
    def signatures(self) -> list[str]:
        """The signatures a request may name (the init op excluded)."""
        return sorted(self._runners)

    def run(self, signature: str, inputs: dict) -> dict:
        """{key: ndarray} for exactly the signature's input keys -> {key: ndarray}."""
        return self._runners[signature](inputs)


def _shape(info):
    if info.tensor_shape.unknown_rank:
        return None
    return [d.size if d.size >= 0 else None for d in info.tensor_shape.dim]


def default_inputs(model: SessionModel, signature: str, batch: int = DEFAULT_CHECK_BATCH) -> dict:
    """A small valid batch for `signature`: zeros for floats, 0..batch-1 for integers."""
    inputs = {}
    for key, (dtype, shape) in model.inputs[signature].items():
        if shape is None or any(d is None for d in shape[1:]):
            raise ValueError(f"input '{key}' of signature '{signature}' has no fixed shape past dimension 0: pass --inputs")
        dims = [batch, *shape[1:]]
        if dtype.is_floating:
            inputs[key] = np.zeros(dims, dtype.as_numpy_dtype)
        elif dtype.is_integer:
            rows = np.arange(batch, dtype=dtype.as_numpy_dtype).reshape([batch] + [1] * (len(dims) - 1))
            inputs[key] = np.broadcast_to(rows, dims).copy()
        else:
            raise ValueError(f"input '{key}' of signature '{signature}' is {dtype.name}: pass --inputs")
    return inputs


def check(model: SessionModel, inputs_by_signature: dict | None = None) -> dict:
    """Run every signature (on the given inputs, else a default batch); raise ValueError
    when an output loses dimension 0 or a float output is not finite.

    Returns {signature: {key: ndarray}}.
    """
    results = {}
    for signature in model.signatures:
        inputs = (inputs_by_signature or {}).get(signature) or default_inputs(model, signature)
        batch = len(next(iter(inputs.values())))
        outputs = model.run(signature, inputs)
        for key, value in outputs.items():
            if value.ndim == 0 or value.shape[0] != batch:
                raise ValueError(f"{signature}: output '{key}' has shape {list(value.shape)}, expected dimension 0 = {batch}")
            if value.dtype.kind == "f" and not np.isfinite(value).all():
                raise ValueError(f"{signature}: output '{key}' holds NaN or infinite values")
        results[signature] = outputs
    return results


MISSING_VARIABLE_HINT = (
    " (a Keras 3 model held by a plain tf.Module and saved with tf.saved_model.save, as gan_pkg wrote before 0.2.0? "
    "write it with keras.export.ExportArchive instead: python -m gan_pkg.export --checkpoint RUN)"
)


def telling_line(message: str) -> str:
    """The line of a TensorFlow error message that says what went wrong (not "Graph execution error:")."""
    lines = [line.strip() for line in message.splitlines()]
    return next((line for line in lines if line and not line.endswith(":") and not line.startswith("[[")), "")


def summary(error: Exception) -> str:
    """telling_line of a TensorFlow error, with the likely cause when TF Serving would not find a variable."""
    text = f"{type(error).__name__}: {telling_line(str(error))}"
    return text + MISSING_VARIABLE_HINT if "Could not find variable" in text else text


def _flatten(grouped: dict) -> dict:
    """{signature: {key: array}} -> {"signature/key": array}, the npz layout."""
    return {f"{signature}/{key}": value for signature, tensors in grouped.items() for key, value in tensors.items()}


def _group(flat: dict) -> dict:
    grouped = {}
    for name, value in flat.items():
        signature, _, key = name.partition("/")
        grouped.setdefault(signature, {})[key] = value
    return grouped


class CheckFailed(RuntimeError):
    """An export that TF Serving's load path cannot load or run."""


def check_in_fresh_process(saved_model, inputs: dict | None = None, timeout: float = 300) -> dict:
    """`check` in a new interpreter that runs this file by path and never imports gan_pkg,
    so nothing this package registers or caches can make a load succeed.

    inputs: {signature: {key: ndarray}} (default: a small batch per signature).
    Returns {signature: {key: ndarray}}; raises CheckFailed with the child's error line.
    """
    import subprocess
    import tempfile

    with tempfile.TemporaryDirectory(prefix="session-check-") as scratch:
        command = [sys.executable, os.path.abspath(__file__), str(saved_model), "--outputs", os.path.join(scratch, "out.npz")]
        if inputs:
            np.savez(os.path.join(scratch, "in.npz"), **_flatten(inputs))
            command += ["--inputs", os.path.join(scratch, "in.npz")]
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
        if done.returncode != 0:
            raise CheckFailed((done.stderr.strip().splitlines() or [f"exit status {done.returncode}, no output"])[-1])
        with np.load(os.path.join(scratch, "out.npz"), allow_pickle=True) as stored:
            return _group({name: stored[name] for name in stored.files})


def main(argv=None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="session_loader.py", description=__doc__.splitlines()[0])
    parser.add_argument("saved_model", help="a SavedModel folder, e.g. export/gan/1")
    parser.add_argument("--tag-set", default=SERVE_TAG, help="comma-separated MetaGraph tags (default: %(default)s)")
    parser.add_argument("--inputs", help="npz of inputs keyed <signature>/<tensor key> (default: a small batch per signature)")
    parser.add_argument("--outputs", help="write every output to this npz, keyed <signature>/<tensor key>")
    args = parser.parse_args(argv)
    try:
        model = SessionModel(args.saved_model, tags=args.tag_set.split(","))
        inputs = None
        if args.inputs:
            with np.load(args.inputs, allow_pickle=False) as stored:
                inputs = _group({name: stored[name] for name in stored.files})
        results = check(model, inputs)
    except Exception as error:  # noqa: BLE001  one line a user (or a parent process) can read
        print(f"error: {args.saved_model} does not load or run the way TF Serving runs it: {summary(error)}", file=sys.stderr)
        return 1
    if args.outputs:
        np.savez(args.outputs, **_flatten(results))
    for signature, outputs in results.items():
        shapes = ", ".join(f"{k} {v.dtype.name}{list(v.shape)}" for k, v in sorted(outputs.items()))
        print(f"ok {signature}: {shapes}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
