"""Where and how a run executes: the CPU found, the precision policy, the
tf.distribute strategy and which worker is the chief. Nothing here knows
about GANs; train, export, the tuner and the benchmarks all ask here."""

from __future__ import annotations

import contextlib
from pathlib import Path

import keras
import tensorflow as tf


def cpu_model_and_flags() -> tuple[str, set[str]]:
    """The CPU's model name and ISA flags from /proc/cpuinfo; ("", set()) where there is none."""
    model, flags = "", set()
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return model, flags
    for line in lines:
        key, _, value = line.partition(":")
        if key.strip() == "model name" and not model:
            model = value.strip()
        elif key.strip() == "flags":
            flags = set(value.split())
            break
    return model, flags


def _cpu_has_bf16() -> bool:
    return bool(cpu_model_and_flags()[1] & {"amx_bf16", "avx512_bf16"})


def resolve_precision(precision: str) -> str:
    """`auto`: float16 + loss scaling on GPU, bfloat16 where the CPU has it."""
    if precision != "auto":
        return precision
    if tf.config.list_physical_devices("GPU"):
        return "mixed_float16"
    return "mixed_bfloat16" if _cpu_has_bf16() else "float32"


def resolve_jit_compile(jit_compile, precision: str, strategy: str = "default") -> bool:
    """`auto`: XLA where it measured faster (docs/BENCHMARKS.md B2). On a CPU training in
    float32 (no bfloat16 hardware) XLA's fused kernels win; in bfloat16 oneDNN's kernels
    beat XLA, so bfloat16 runs go without it, as do GPUs (Keras' own `auto` is on there;
    unmeasured here) and multi-device strategies (unmeasured)."""
    if jit_compile != "auto":
        return bool(jit_compile)
    if strategy != "default" or tf.config.list_physical_devices("GPU"):
        return False
    return precision == "float32"


@contextlib.contextmanager
def dtype_policy(name: str):
    """Keras' dtype policy is global; scope it so runs in one process don't leak."""
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy(name)
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy(previous)


@contextlib.contextmanager
def grappler_remapper(enabled: bool):
    """Grappler's remapper (its op fusions) on or off for the function calls made inside
    (the setting travels with each call's config, so it holds only while inside)."""
    previous = tf.config.optimizer.get_experimental_options().get("remapping", True)
    tf.config.optimizer.set_experimental_options({"remapping": enabled})
    try:
        yield
    finally:
        tf.config.optimizer.set_experimental_options({"remapping": previous})


def is_chief(strategy: tf.distribute.Strategy) -> bool:
    """Only the chief of a multi-worker cluster writes checkpoints, pictures and
    exports (TF_CONFIG's "chief", or worker 0 when the cluster names none)."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.task_type:
        return True
    if resolver.task_type == "chief":
        return True
    return resolver.task_type == "worker" and resolver.task_id == 0 and "chief" not in resolver.cluster_spec().as_dict()


def make_strategy(name: str) -> tf.distribute.Strategy:
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "multi-worker":
        return tf.distribute.MultiWorkerMirroredStrategy()
    raise ValueError(f"unknown strategy {name!r}; use default, mirrored or multi-worker")
