"""Every export loads and runs the way TensorFlow Serving loads it.

TF Serving's C++ loader imports the MetaGraph, runs the restore op into a
Session and runs signatures by tensor name; gan_pkg/session_loader.py does the
same from Python, in a fresh interpreter that never imports gan_pkg. Outputs
must equal what the Python object loader computes from the same export, and
what the C API TF Serving links (TF_LoadSessionFromSavedModel, driven through
ctypes by tests/tf_c_api.py) computes.
A Keras model held by a plain tf.Module (keras-team/keras#19274) runs under
tf.saved_model.load but not there: the check and the embedded server refuse it.
"""

import io
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from conftest import module_held_export
from tiny import tiny
from PIL import Image

from gan_pkg import architectures, contract, export, session_loader
from gan_pkg import config as config_lib

REPO = Path(__file__).resolve().parents[2]
PRESETS = ["dcgan-classcode", "dcgan", "conv", "mlp", "dist1d", "conv-tanh", "resnet"]  # the default first
BATCH = 3


def python_loader_outputs(version_dir: Path, inputs: dict) -> dict:
    loaded = tf.saved_model.load(str(version_dir))
    return {
        name: {k: v.numpy() for k, v in loaded.signatures[name](**{k: tf.constant(v) for k, v in tensors.items()}).items()}
        for name, tensors in inputs.items()
    }


def decode_png(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)))


@pytest.mark.parametrize("preset", PRESETS)
def test_every_signature_runs_under_the_session_loader_and_matches_the_python_loader(preset, tmp_path):
    config = tiny(preset)
    generator, _ = architectures.build(config)
    version_dir = export.export_generator(generator, config, tmp_path, "gan")
    rng = np.random.default_rng(0)
    seeds = np.array([0, 7, 2**40], np.int64)
    inputs = {
        contract.SERVING_DEFAULT: {contract.NOISE: rng.standard_normal((BATCH, config.latent_dim)).astype(np.float32)},
        contract.GENERATE: {contract.SEED: seeds},
    }
    if config.is_image:
        inputs[contract.GENERATE_PNG] = {contract.SEED: seeds}

    served = session_loader.check_in_fresh_process(version_dir, inputs)
    expected = python_loader_outputs(version_dir, inputs)

    assert sorted(served) == sorted(inputs)  # every signature, nothing else (no init op)
    key = contract.IMAGES if config.is_image else contract.SAMPLES
    shape = [BATCH, *config.image_shape]
    for signature in inputs:
        assert sorted(served[signature]) == sorted(expected[signature])
        for name, value in served[signature].items():
            if name == contract.PNG:
                pictures = [decode_png(b) for b in value]
                wanted = [decode_png(b) for b in expected[signature][name]]
                assert all(p.shape[:2] == tuple(config.image_shape[:2]) for p in pictures)
                assert all(np.abs(p.astype(int) - w.astype(int)).max() <= 1 for p, w in zip(pictures, wanted))
            else:
                np.testing.assert_allclose(value, expected[signature][name], atol=1e-5, rtol=0)
    assert list(served[contract.SERVING_DEFAULT][key].shape) == shape
    assert list(served[contract.GENERATE][contract.NOISE].shape) == [BATCH, config.latent_dim]
    # The same seed gives the same row whatever else is in the batch.
    alone = session_loader.SessionModel(version_dir).run(contract.GENERATE, {contract.SEED: seeds[1:2]})
    np.testing.assert_allclose(alone[key][0], served[contract.GENERATE][key][1], atol=1e-5)


def stored_values(version_dir: Path) -> int:
    """How many values the export's checkpoint holds: what TF Serving restores into memory."""
    return sum(int(np.prod(shape)) for name, shape in tf.train.list_variables(str(version_dir / "variables" / "variables"))
               if name != "_CHECKPOINTABLE_OBJECT_GRAPH")


@pytest.mark.parametrize("preset", sorted(config_lib.PRESETS))
def test_every_weight_is_stored_once(preset, tmp_path):
    """keras-team/keras#23553: ExportArchive.track() beside the endpoints' captures stored every
    weight twice. The checkpoint holds exactly the served generator's values (tutorial 000's DCGAN:
    856,705), for every preset, an EMA generator's export and a conditional one's included."""
    from gan_pkg.training import build_gan

    config = config_lib.preset(preset) if preset == "dcgan" else tiny(preset, ema_decay=0.9 if preset == "dcgan-aux" else 0.0)
    model = build_gan(config)
    version_dir = export.export_model(model, config, tmp_path, "gan")
    assert stored_values(version_dir) == model.inference_generator.count_params()
    if preset == "dcgan":
        assert stored_values(version_dir) == 856_705
    if model.ema_generator is not None:
        assert model.inference_generator is model.ema_generator


def test_an_export_that_stores_weights_twice_still_loads_and_serves(tmp_path):
    """What gan_pkg wrote before the fix (track() plus the endpoints): still served as it is."""
    import keras

    config = tiny("dcgan")
    generator, _ = architectures.build(config)
    endpoints = export._Endpoints(generator, config)
    archive = keras.export.ExportArchive()
    archive.track(generator)
    for name, (function, specs) in endpoints.signatures().items():
        archive.add_endpoint(name, function, input_signature=specs)
    archive.write_out(str(tmp_path / "old"), verbose=False)
    assert stored_values(tmp_path / "old") == 2 * generator.count_params()
    noise = np.random.default_rng(0).standard_normal((2, config.latent_dim)).astype(np.float32)
    served = session_loader.SessionModel(tmp_path / "old").run(contract.SERVING_DEFAULT, {contract.NOISE: noise})[contract.IMAGES]
    np.testing.assert_allclose(served, (np.asarray(generator(noise, training=False)) + 1) / 2, atol=1e-5)


def test_the_check_process_never_imports_gan_pkg(tmp_path):
    config = tiny("dcgan")
    generator, _ = architectures.build(config)
    version_dir = export.export_generator(generator, config, tmp_path, "gan")
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    done = subprocess.run(
        [sys.executable, "-X", "importtime", session_loader.__file__, str(version_dir)],
        capture_output=True, text=True, timeout=240, env=env, cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    imported = [line.rsplit("|", 1)[-1].strip() for line in done.stderr.splitlines() if line.startswith("import time:")]
    assert "tensorflow" in imported  # the log is real
    assert not [name for name in imported if name.split(".")[0] == "gan_pkg"]
    assert "ok serving_default: images float32[3, 28, 28, 1]" in done.stdout


def test_saved_model_cli_runs_serving_default(tmp_path):
    """The command a user runs to check an export themselves (docs/SERVING.md)."""
    config = tiny("dcgan")
    generator, _ = architectures.build(config)
    version_dir = export.export_generator(generator, config, tmp_path / "export", "gan")
    np.save(tmp_path / "z.npy", np.zeros((2, config.latent_dim), np.float32))
    cli = Path(sys.executable).with_name("saved_model_cli")
    done = subprocess.run(
        [str(cli), "run", "--dir", str(version_dir), "--tag_set", "serve", "--signature_def", "serving_default",
         "--inputs", f"noise={tmp_path / 'z.npy'}", "--outdir", str(tmp_path / "out")],
        capture_output=True, text=True, timeout=240, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"),
    )
    assert done.returncode == 0, done.stderr[-2000:]
    images = np.load(tmp_path / "out" / f"{contract.IMAGES}.npy")
    assert images.shape == (2, *config.image_shape) and np.isfinite(images).all()
    assert images.min() >= 0.0 and images.max() <= 1.0


def c_api_run(version_dir: Path, signature_def, inputs: dict, scratch: Path) -> dict:
    """One signature through TF_LoadSessionFromSavedModel + TF_SessionRun, by tensor name."""
    ((key, info),) = signature_def.inputs.items()
    np.save(scratch / "in.npy", inputs[key])
    keys = sorted(signature_def.outputs)
    done = subprocess.run(
        [sys.executable, str(REPO / "tests" / "tf_c_api.py"), str(version_dir), info.name, str(scratch / "in.npy"),
         *[signature_def.outputs[k].name for k in keys], "--out", str(scratch / "out.npz")],
        capture_output=True, text=True, timeout=120, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"),
    )
    if done.returncode != 0:
        raise session_loader.CheckFailed((done.stderr.strip().splitlines() or ["no output"])[-1])
    with np.load(scratch / "out.npz", allow_pickle=True) as out:
        return {k: out[signature_def.outputs[k].name.replace(":", "_")] for k in keys}


def test_tf_serving_c_api_agrees_with_the_session_loader(tmp_path):
    config = tiny("dcgan")
    generator, _ = architectures.build(config)
    version_dir = export.export_generator(generator, config, tmp_path / "export", "gan")
    model = session_loader.SessionModel(version_dir)
    seeds = np.array([3, 1, 4], np.int64)
    inputs = {
        contract.SERVING_DEFAULT: {contract.NOISE: np.random.default_rng(1).standard_normal((BATCH, config.latent_dim)).astype(np.float32)},
        contract.GENERATE: {contract.SEED: seeds},
        contract.GENERATE_PNG: {contract.SEED: seeds},
    }
    assert model.signatures == sorted(inputs)
    for signature, tensors in inputs.items():
        from_c = c_api_run(version_dir, model.signature_defs[signature], tensors, tmp_path)
        from_python = model.run(signature, tensors)
        assert sorted(from_c) == sorted(from_python)
        for key, value in from_python.items():
            if value.dtype == object:
                assert list(from_c[key]) == list(value)  # the very same PNG bytes
            else:
                np.testing.assert_allclose(from_c[key], value, atol=1e-6, rtol=0)


def test_a_module_held_keras_export_runs_in_python_but_fails_the_check(tmp_path):
    bad = module_held_export(tmp_path / "1", tiny("dcgan"))
    noise = np.zeros((1, 100), np.float32)
    assert tf.saved_model.load(str(bad)).signatures[contract.SERVING_DEFAULT](noise=tf.constant(noise))[contract.IMAGES].shape[0] == 1
    with pytest.raises(session_loader.CheckFailed, match="Could not find variable"):
        session_loader.check_in_fresh_process(bad)
    signature_def = session_loader.SessionModel(bad).signature_defs[contract.SERVING_DEFAULT]
    with pytest.raises(session_loader.CheckFailed, match="Could not find variable"):  # and so does TF Serving's C API
        c_api_run(bad, signature_def, {contract.NOISE: noise}, tmp_path)
