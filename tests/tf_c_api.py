"""Run one SavedModel signature through TensorFlow's C API (ctypes + numpy only).

TF_LoadSessionFromSavedModel is the C entry point over the C++ `LoadSavedModel`
that TensorFlow Serving links: it imports the MetaGraph into a fresh graph,
runs the restore op and the init op, and hands back a Session. Tensors are then
fed/fetched by graph tensor name, as Serving does from a SignatureDef.

This script never imports tensorflow (nor any project package); the shared
libraries are located with importlib.util.find_spec, which does not execute
the package.

Used by tests/export/test_tf_serving_loader.py to confirm that the C API agrees with
gan_pkg/session_loader.py (the Python path to the same loader) on real exports.

Usage:
    python tests/tf_c_api.py SAVED_MODEL_DIR INPUT_TENSOR INPUT.npy OUTPUT_TENSOR [OUTPUT_TENSOR ...] --out OUT.npz

    e.g. python tests/tf_c_api.py export/gan/1 serving_default_noise:0 noise.npy \
             StatefulPartitionedCall_2:0 --out out.npz

npz keys are the output tensor names with ':' replaced by '_'.
TF_STRING outputs are stored as object arrays of bytes.
Exit status 1 with a one-line message on load or run failure.
"""

from __future__ import annotations

import argparse
import ctypes
import importlib.util
import os
import sys

import numpy as np

# ---- TF_DataType values (tensorflow/c/tf_datatype.h) -------------------------
TF_FLOAT, TF_DOUBLE, TF_INT32, TF_UINT8, TF_STRING, TF_INT64, TF_BOOL = 1, 2, 3, 4, 7, 9, 10
NUMERIC = {
    TF_FLOAT: np.float32,
    TF_DOUBLE: np.float64,
    TF_INT32: np.int32,
    TF_UINT8: np.uint8,
    TF_INT64: np.int64,
    TF_BOOL: np.bool_,
}
NP_TO_TF = {np.dtype(v): k for k, v in NUMERIC.items()}
TF_OK = 0
# sizeof(TF_TString) (tsl/platform/ctstring_internal.h: a 24-byte union)
TF_TSTRING_SIZE = 24
# Serialized tensorflow.ConfigProto{allow_soft_placement: true} (field 7, varint 1),
# as gan_pkg/session_loader.py and TF Serving's default session config use.
CONFIG_ALLOW_SOFT_PLACEMENT = b"\x38\x01"


class TF_Output(ctypes.Structure):
    _fields_ = [("oper", ctypes.c_void_p), ("index", ctypes.c_int)]


def fail(msg: str) -> "None":
    print("error: " + " ".join(str(msg).split()), file=sys.stderr)
    sys.exit(1)


def tf_lib_dir() -> str:
    spec = importlib.util.find_spec("tensorflow")  # locates, does not import
    if spec is None or not spec.submodule_search_locations:
        fail("tensorflow package not found on sys.path")
    for loc in spec.submodule_search_locations:
        if os.path.exists(os.path.join(loc, "libtensorflow_cc.so.2")):
            return loc
    fail("libtensorflow_cc.so.2 not found in " + ", ".join(spec.submodule_search_locations))


def load_lib():
    d = tf_lib_dir()
    # libtensorflow_cc.so.2 leaves TF_NewStatus, TF_AllocateTensor, TF_Dim, ... undefined:
    # they live in libtensorflow_framework.so.2, which must be loaded globally first.
    ctypes.CDLL(os.path.join(d, "libtensorflow_framework.so.2"), mode=ctypes.RTLD_GLOBAL)
    lib = ctypes.CDLL(os.path.join(d, "libtensorflow_cc.so.2"), mode=ctypes.RTLD_GLOBAL)

    P, I, SZ, I64 = ctypes.c_void_p, ctypes.c_int, ctypes.c_size_t, ctypes.c_int64

    def sig(name, restype, *argtypes):
        f = getattr(lib, name)
        f.restype, f.argtypes = restype, list(argtypes)

    sig("TF_Version", ctypes.c_char_p)
    # tf_status.h
    sig("TF_NewStatus", P)
    sig("TF_DeleteStatus", None, P)
    sig("TF_GetCode", I, P)
    sig("TF_Message", ctypes.c_char_p, P)
    # c_api.h
    sig("TF_NewGraph", P)
    sig("TF_DeleteGraph", None, P)
    sig("TF_NewSessionOptions", P)
    sig("TF_DeleteSessionOptions", None, P)
    sig("TF_SetConfig", None, P, ctypes.c_char_p, SZ, P)
    sig("TF_LoadSessionFromSavedModel", P,
        P, P, ctypes.c_char_p, ctypes.POINTER(ctypes.c_char_p), I, P, P, P)
    sig("TF_CloseSession", None, P, P)
    sig("TF_DeleteSession", None, P, P)
    sig("TF_GraphOperationByName", P, P, ctypes.c_char_p)
    sig("TF_OperationNumOutputs", I, P)
    sig("TF_SessionRun", None,
        P, P,                                            # session, run_options
        ctypes.POINTER(TF_Output), ctypes.POINTER(P), I,  # inputs, input_values, ninputs
        ctypes.POINTER(TF_Output), ctypes.POINTER(P), I,  # outputs, output_values, noutputs
        ctypes.POINTER(P), I,                            # target_opers, ntargets
        P, P)                                            # run_metadata, status
    # tf_tensor.h
    sig("TF_AllocateTensor", P, I, ctypes.POINTER(I64), I, SZ)
    sig("TF_DeleteTensor", None, P)
    sig("TF_TensorType", I, P)
    sig("TF_NumDims", I, P)
    sig("TF_Dim", I64, P, I)
    sig("TF_TensorByteSize", SZ, P)
    sig("TF_TensorData", P, P)
    sig("TF_TensorElementCount", I64, P)
    # tf_tstring.h (exported from libtensorflow_cc.so.2 as TF_String*, not TF_TString_*)
    sig("TF_StringGetDataPointer", P, P)
    sig("TF_StringGetSize", SZ, P)
    return lib


def status_error(lib, status):
    code = lib.TF_GetCode(status)
    if code == TF_OK:
        return None
    return f"[TF code {code}] " + (lib.TF_Message(status) or b"").decode("utf-8", "replace")


def parse_tensor_name(name: str):
    op, sep, idx = name.rpartition(":")
    if not sep:
        return name, 0
    try:
        return op, int(idx)
    except ValueError:
        return name, 0


def make_output(lib, graph, name: str) -> TF_Output:
    op_name, index = parse_tensor_name(name)
    oper = lib.TF_GraphOperationByName(graph, op_name.encode())
    if not oper:
        fail(f"operation '{op_name}' (from tensor '{name}') not found in the graph")
    n = lib.TF_OperationNumOutputs(oper)
    if not 0 <= index < n:
        fail(f"tensor '{name}': operation '{op_name}' has {n} outputs")
    return TF_Output(oper, index)


def numpy_to_tensor(lib, arr: np.ndarray):
    arr = np.ascontiguousarray(arr)
    if arr.dtype not in NP_TO_TF:
        fail(f"unsupported input dtype {arr.dtype} (supported: float32, int64, float64, int32, uint8, bool)")
    dims = (ctypes.c_int64 * max(arr.ndim, 1))(*arr.shape)
    t = lib.TF_AllocateTensor(NP_TO_TF[arr.dtype], dims, arr.ndim, arr.nbytes)
    if not t:
        fail("TF_AllocateTensor failed")
    if lib.TF_TensorByteSize(t) != arr.nbytes:
        lib.TF_DeleteTensor(t)
        fail("TF_AllocateTensor returned an unexpected byte size")
    if arr.nbytes:
        ctypes.memmove(lib.TF_TensorData(t), arr.ctypes.data, arr.nbytes)
    return t


def tensor_to_numpy(lib, t) -> np.ndarray:
    dtype = lib.TF_TensorType(t)
    shape = tuple(lib.TF_Dim(t, i) for i in range(lib.TF_NumDims(t)))
    count = int(np.prod(shape, dtype=np.int64)) if shape else 1
    data = lib.TF_TensorData(t)
    nbytes = lib.TF_TensorByteSize(t)
    if dtype in NUMERIC:
        np_dtype = np.dtype(NUMERIC[dtype])
        if count == 0:
            return np.zeros(shape, np_dtype)
        if nbytes != count * np_dtype.itemsize:
            raise RuntimeError(f"byte size {nbytes} does not match shape {shape} of {np_dtype}")
        buf = (ctypes.c_char * nbytes).from_address(data)
        return np.frombuffer(buf, dtype=np_dtype).reshape(shape).copy()
    if dtype == TF_STRING:
        # TF 2.x: the data is an array of TF_TString (24 bytes each); small strings are
        # stored inline, large ones out of line: the accessors resolve every layout.
        if count and nbytes != count * TF_TSTRING_SIZE:
            raise RuntimeError(f"string tensor byte size {nbytes} != {count} x {TF_TSTRING_SIZE}")
        out = np.empty(count, dtype=object)
        for i in range(count):
            tstr = data + i * TF_TSTRING_SIZE
            size = lib.TF_StringGetSize(tstr)
            ptr = lib.TF_StringGetDataPointer(tstr)
            out[i] = ctypes.string_at(ptr, size) if size else b""
        return out.reshape(shape)
    raise RuntimeError(f"unsupported output TF_DataType {dtype}")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("saved_model_dir")
    ap.add_argument("input_tensor", help="graph tensor name, e.g. serving_default_noise:0")
    ap.add_argument("input_npy")
    ap.add_argument("output_tensors", nargs="+", help="graph tensor names, e.g. StatefulPartitionedCall_2:0")
    ap.add_argument("--out", required=True, help="output .npz path")
    ap.add_argument("--tag", action="append", help="MetaGraph tag (repeatable; default: serve)")
    args = ap.parse_args(argv)

    feed = np.load(args.input_npy, allow_pickle=False)
    lib = load_lib()

    status = lib.TF_NewStatus()
    graph = lib.TF_NewGraph()
    opts = lib.TF_NewSessionOptions()
    session = None
    in_tensor = None
    out_values = None
    try:
        lib.TF_SetConfig(opts, CONFIG_ALLOW_SOFT_PLACEMENT, len(CONFIG_ALLOW_SOFT_PLACEMENT), status)
        err = status_error(lib, status)
        if err:
            fail("TF_SetConfig: " + err)

        tags = [t.encode() for t in (args.tag or ["serve"])]
        tags_arr = (ctypes.c_char_p * len(tags))(*tags)
        session = lib.TF_LoadSessionFromSavedModel(
            opts, None, os.fsencode(args.saved_model_dir), tags_arr, len(tags), graph, None, status)
        err = status_error(lib, status)
        if err or not session:
            session = None
            fail("TF_LoadSessionFromSavedModel: " + (err or "returned NULL"))

        inputs = (TF_Output * 1)(make_output(lib, graph, args.input_tensor))
        outputs = (TF_Output * len(args.output_tensors))(
            *[make_output(lib, graph, n) for n in args.output_tensors])

        in_tensor = numpy_to_tensor(lib, feed)
        in_values = (ctypes.c_void_p * 1)(in_tensor)
        out_values = (ctypes.c_void_p * len(args.output_tensors))()

        lib.TF_SessionRun(session, None,
                          inputs, in_values, 1,
                          outputs, out_values, len(args.output_tensors),
                          None, 0, None, status)
        err = status_error(lib, status)
        if err:
            fail("TF_SessionRun: " + err)

        results = {}
        for name, t in zip(args.output_tensors, out_values):
            try:
                arr = tensor_to_numpy(lib, t)
            except RuntimeError as e:
                fail(f"output '{name}': {e}")
            results[name.replace(":", "_")] = arr
            print(f"{name}: shape={arr.shape} dtype={'bytes(object)' if arr.dtype == object else arr.dtype}")
        np.savez(args.out, **results)
    finally:
        if out_values is not None:
            for t in out_values:
                if t:
                    lib.TF_DeleteTensor(t)
        if in_tensor:
            lib.TF_DeleteTensor(in_tensor)
        if session:
            lib.TF_CloseSession(session, status)
            lib.TF_DeleteSession(session, status)
        lib.TF_DeleteSessionOptions(opts)
        lib.TF_DeleteGraph(graph)
        lib.TF_DeleteStatus(status)
    return 0


if __name__ == "__main__":
    sys.exit(main())
