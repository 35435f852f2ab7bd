"""Shared helpers: an old-format export, and running a CLI in a fresh interpreter."""

import os
import subprocess
import sys
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# Every test (and every CLI it starts) sees an empty Keras home and cache: which feature space
# a run is scored in must not depend on weights or classifiers this machine happens to hold.
_ISOLATED = tempfile.mkdtemp(prefix="gan_pkg-tests-")
os.environ["KERAS_HOME"] = os.path.join(_ISOLATED, "keras")
os.environ["XDG_CACHE_HOME"] = os.path.join(_ISOLATED, "cache")

TESTS = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(TESTS)


def module_held_export(directory, config, model_name: str = "gan"):
    """The format this package wrote before 0.2.0: a Keras 3 generator held by a plain
    tf.Module (serving_default and generate), saved with tf.saved_model.save, with
    warmup records and gan_pkg.json. tf.saved_model.load runs it; TF Serving's
    loader cannot find its variables (keras-team/keras#19274)."""
    import json
    from pathlib import Path

    import tensorflow as tf

    from gan_pkg import architectures, contract, export
    from gan_pkg.gan import latent_for_seeds

    generator, _ = architectures.build(config)

    class Held(tf.Module):
        def __init__(self):
            super().__init__()
            self.generator = generator

        @tf.function(input_signature=[tf.TensorSpec([None, config.latent_dim], tf.float32, name=contract.NOISE)])
        def serve(self, noise):
            return {contract.IMAGES: self.generator(noise, training=False)}

        @tf.function(input_signature=[tf.TensorSpec([None], tf.int64, name=contract.SEED)])
        def generate(self, seed):
            noise = latent_for_seeds(seed, config.latent_dim, config.latent_distribution, config.latent_range)
            return {contract.IMAGES: self.generator(noise, training=False), contract.NOISE: noise}

    held = Held()
    signatures = {contract.SERVING_DEFAULT: held.serve, contract.GENERATE: held.generate}
    tf.saved_model.save(held, str(directory), signatures=signatures)
    extra = Path(directory) / contract.ASSETS_EXTRA
    extra.mkdir(exist_ok=True)
    with tf.io.TFRecordWriter(str(extra / contract.WARMUP_FILE)) as writer:
        for record in export._warmup_records(signatures, config, model_name):
            writer.write(record)
    metadata = export.metadata(config, signatures, None, None) | {"package_version": "0.1.0"}
    (extra / contract.METADATA_FILE).write_text(json.dumps(metadata))
    return Path(directory)


def run_python(*args, timeout=240, env_extra=None, **kwargs) -> subprocess.CompletedProcess:
    """Run `python args...` in a fresh interpreter (the user's view of a CLI)."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=os.pathsep.join([REPO, TESTS]), **(env_extra or {}))
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=timeout, env=env, **kwargs)
