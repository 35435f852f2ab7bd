"""The one tiny configuration the tests train: each preset's own architecture and
training rules, shrunk to run in seconds. In-process tests take `tiny(preset)`; tests
that drive a CLI take the same shrink as `--set` flags from `tiny_flags(preset)`."""

import json

from gan_pkg import config as config_lib

SHRINK = {
    "dcgan": dict(g_initial_shape=(7, 7, 8), g_filters=(8, 4), d_filters=(4, 4, 4, 4)),
    "cdcgan": dict(g_initial_shape=(7, 7, 8), g_filters=(8, 4), d_filters=(4, 4, 4, 4)),
    "sndcgan": dict(g_initial_shape=(7, 7, 8), g_filters=(8, 4), d_filters=(4, 4, 4, 4)),
    "dcgan-aux": dict(g_initial_shape=(7, 7, 8), g_filters=(8, 4), d_filters=(4, 4, 4, 4)),
    "dcgan-classcode": dict(g_initial_shape=(7, 7, 8), g_filters=(8, 4), d_filters=(4, 4, 4, 4)),
    "conv": dict(g_initial_shape=(7, 7, 4), g_filters=(8, 4, 4), d_filters=(4, 4, 8, 8)),
    "mlp": dict(g_filters=(16, 16, 16), d_filters=(16, 16, 16)),
    "dist1d": dict(),
    "resnet": dict(g_initial_shape=(8, 8, 8), g_filters=(8, 4), d_filters=(4, 8)),
    "conv-tanh": dict(g_dense_units=(16,), g_initial_shape=(7, 7, 8), g_filters=(4,), d_filters=(4, 4), d_dense_units=(16,)),
}
# float32 and no XLA: results do not depend on the CPU's bf16, and a tiny model's steps
# take less time than XLA takes to compile them.
RUN = dict(batch_size=8, holdout=100, precision="float32", jit_compile=False)


def tiny_values(preset: str = "dcgan", **changes) -> dict:
    """The shrink as config values (a TFX custom_config, GANConfig.resolve's values); steps are the caller's."""
    return {**SHRINK[preset], **RUN, **changes}


def tiny(preset: str, **changes) -> config_lib.GANConfig:
    """The preset shrunk, batch 8, 4 steps, float32, no XLA."""
    return config_lib.GANConfig.resolve(preset, tiny_values(preset, **{"steps": 4, **changes}))


def tiny_flags(preset: str = "dcgan", **changes) -> list[str]:
    """The same shrink as CLI flags: ["--set", "field=<json>", ...]."""
    values = tiny_values(preset, **changes)
    return [arg for field, value in values.items() for arg in ("--set", f"{field}={json.dumps(value, separators=(',', ':'))}")]
