"""Export the generator as a versioned SavedModel that TF Serving loads as is.

This module owns the model repository, `<base>/<model_name>/<version>/` with
integer versions: listing and resolving versions, publishing a new one
atomically, reading an export's metadata and recording its evaluation.
Signatures, tensor keys and file names come from `gan_pkg.contract`.

CLI: `python -m gan_pkg.export --checkpoint runs/dcgan` re-exports a run.
"""

from __future__ import annotations

import datetime
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Callable

if __name__ == "__main__":  # run as the CLI: keep TensorFlow's start-up banner off stderr
    from gan_pkg.cli import import_tensorflow_quietly

    import_tensorflow_quietly()

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import gan_pkg  # noqa: E402
from gan_pkg import architectures, contract
from gan_pkg.cli import ArgumentParser
from gan_pkg.config import GANConfig
from gan_pkg.data import to_unit_range
from gan_pkg.features import STORED_FILES
from gan_pkg.files import TEMPORARY_PREFIX, write_json
from gan_pkg.gan import latent_for_seeds
from gan_pkg.runs import load_run
from gan_pkg.runtime import dtype_policy


# -- the model repository: <base>/<model_name>/<version>/ --------------------------
def versions(model_dir: Path) -> list[int]:
    """Integer version directories under `<base>/<model_name>` (contract.version_of), ascending."""
    if not Path(model_dir).is_dir():
        return []
    found = {contract.version_of(p.name) for p in Path(model_dir).iterdir() if p.is_dir()}
    return sorted(found - {None})


def resolve_version(path: Path, version: int | None = None) -> Path:
    """The version folder `path` names: a version folder itself (export/gan/3), the
    latest version of a model folder (export/gan), or its `version`.
    Raises FileNotFoundError saying what was expected."""
    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(f"{path}: no such export folder (expected <export-base>/<model-name>, e.g. export/gan)")
    if version is None and (path / "saved_model.pb").is_file():
        return path
    found = versions(path)
    if version is None:
        if not found:
            raise FileNotFoundError(f"{path}: no exported version (expected integer subfolders such as 1/)")
        return path / str(found[-1])
    if version not in found:
        raise FileNotFoundError(f"{path / str(version)}: no such version (have: {', '.join(map(str, found)) or 'none'})")
    return path / str(version)


def read_metadata(version_dir: Path) -> dict:
    """An export's gan_pkg.json: its config, shapes, package version and evaluation."""
    path = Path(version_dir) / contract.ASSETS_EXTRA / contract.METADATA_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path}: missing; {version_dir} is not a gan_pkg export")
    return json.loads(path.read_text())


def record_evaluation(version_dir: Path, evaluation: dict) -> Path:
    """Write `evaluation` into the export's gan_pkg.json (atomically: servers read it)."""
    path = Path(version_dir) / contract.ASSETS_EXTRA / contract.METADATA_FILE
    write_json(path, read_metadata(version_dir) | {"evaluation": evaluation})
    return path


def add_version(model_dir: Path, write: Callable[[Path], None]) -> Path:
    """Publish what `write(folder)` puts in a fresh folder as the next integer version of
    `model_dir`. The folder is hidden (`.tmp-*`, which TF Serving ignores) until one
    rename makes it a version, so a server polling the base never sees half a model;
    if `write` fails, it is removed."""
    model_dir = Path(model_dir)
    model_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f"{TEMPORARY_PREFIX}version-", dir=model_dir))
    os.chmod(staging, 0o755)  # mkdtemp's 0700 would hide the model from a server running as another user
    try:
        write(staging)
        while True:  # another exporter may take a number first: take the next
            target = model_dir / str((versions(model_dir) or [0])[-1] + 1)
            try:
                os.rename(staging, target)
                return target
            except OSError:
                if not target.exists():
                    raise
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)


# -- writing a SavedModel TF Serving runs -----------------------------------------
def float32_generator(generator: keras.Model, config: GANConfig) -> keras.Model:
    """A float32 twin of the (possibly mixed-precision) generator: served models
    must run on any CPU or GPU, whatever precision they were trained in."""
    with dtype_policy("float32"):
        twin, _ = architectures.build(config)
    twin.set_weights(generator.get_weights())
    return twin


class _Endpoints:
    """The serving functions, written into the SavedModel by keras.export.ExportArchive.

    ExportArchive tracks the variables the endpoints capture, so the restore op
    TF Serving's loader runs finds every one, once; a plain tf.Module holding a
    Keras 3 model does not (its variables exist only for tf.saved_model.load,
    keras-team/keras#19274). Plain TF ops only: no XLA, no py_function.

    A conditional generator's signatures each take a `label` too. Its range is
    checked by an Assert op in the graph, so TF Serving itself refuses an
    out-of-range label (INVALID_ARGUMENT) instead of returning an image of no class.
    """

    def __init__(self, generator: keras.Model, config: GANConfig):
        self.generator = generator
        self.config = config
        self.output_key = contract.IMAGES if config.is_image else contract.SAMPLES

    def _render(self, noise, label=None):
        inputs = noise if label is None else [noise, self._checked(label)]
        return to_unit_range(self.generator(inputs, training=False), self.config.output_range)

    def _checked(self, label):
        classes = self.config.classes.label_input_classes
        message = contract.label_range_message(classes)
        checks = [
            tf.debugging.assert_non_negative(label, message=message),
            tf.debugging.assert_less(label, tf.constant(classes, tf.int64), message=message),
        ]
        with tf.control_dependencies(checks):
            return tf.cast(label, tf.int32)

    def _noise_for(self, seed):
        cfg = self.config
        return latent_for_seeds(seed, cfg.latent_dim, cfg.latent_distribution, cfg.latent_range)

    def from_noise(self, noise, label=None):
        return {self.output_key: self._render(noise, label)}

    def from_seed(self, seed, label=None):
        noise = self._noise_for(seed)
        return {self.output_key: self._render(noise, label), contract.NOISE: noise}

    def png_from_seed(self, seed, label=None):
        pixels = tf.cast(tf.round(self._render(self._noise_for(seed), label) * 255.0), tf.uint8)
        return {contract.PNG: tf.map_fn(tf.io.encode_png, pixels, fn_output_signature=tf.TensorSpec([], tf.string))}

    def signatures(self) -> dict:
        """signature name -> (function, its inputs' TensorSpecs); a spec's name is its tensor key."""
        noise = [tf.TensorSpec([None, self.config.latent_dim], tf.float32, name=contract.NOISE)]
        seed = [tf.TensorSpec([None], tf.int64, name=contract.SEED)]
        if self.config.classes.generator_takes_label:
            label = tf.TensorSpec([None], tf.int64, name=contract.LABEL)
            noise, seed = noise + [label], seed + [label]
        found = {contract.SERVING_DEFAULT: (self.from_noise, noise), contract.GENERATE: (self.from_seed, seed)}
        if self.config.is_image:
            found[contract.GENERATE_PNG] = (self.png_from_seed, seed)
        return found

    def archive(self) -> keras.export.ExportArchive:
        """The endpoints alone: ExportArchive tracks every variable they capture, the raw
        tf.Variables the restore op TF Serving runs must find. `track(generator)` would add
        the Keras variable wrappers beside them, and the checkpoint would hold every weight
        twice (keras-team/keras#23553): twice the disk and twice the memory in every server."""
        archive = keras.export.ExportArchive()
        for name, (function, specs) in self.signatures().items():
            archive.add_endpoint(name, function, input_signature=specs)
        return archive


def _warmup_records(signatures: dict, config: GANConfig, model_name: str) -> list[bytes]:
    """One PredictionLog per signature, replayed by TF Serving before it serves."""
    from tensorflow_serving.apis import model_pb2, predict_pb2, prediction_log_pb2

    records = []
    for name in signatures:
        request = predict_pb2.PredictRequest(model_spec=model_pb2.ModelSpec(name=model_name, signature_name=name))
        if name == contract.SERVING_DEFAULT:
            noise = np.zeros((1, config.latent_dim), np.float32)
            request.inputs[contract.NOISE].CopyFrom(tf.make_tensor_proto(noise))
        else:
            request.inputs[contract.SEED].CopyFrom(tf.make_tensor_proto(np.array([0], np.int64)))
        if config.classes.generator_takes_label:
            request.inputs[contract.LABEL].CopyFrom(tf.make_tensor_proto(np.array([0], np.int64)))
        log = prediction_log_pb2.PredictionLog(predict_log=prediction_log_pb2.PredictLog(request=request))
        records.append(log.SerializeToString())
    return records


def metadata(config: GANConfig, signatures: dict, step: int | None, evaluation: dict | None) -> dict:
    return {
        "package": "gan_pkg",
        "package_version": gan_pkg.__version__,
        "export_contract": contract.EXPORT_CONTRACT,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "preset": config.preset,
        "config": json.loads(config.to_json()),
        "latent_dim": config.latent_dim,
        "latent_distribution": config.latent_distribution,
        "latent_range": list(config.latent_range),
        "output_key": contract.IMAGES if config.is_image else contract.SAMPLES,
        "output_shape": list(config.image_shape),
        # The classes a served `label` ranges over (0: the signatures take no label); serving checks it.
        "num_classes": config.classes.label_input_classes,
        "conditioning": config.conditioning,
        # What each class index (a label input, or a class coded in the noise) stands for.
        "class_names": list(config.class_names) or [str(i) for i in range(config.classes.drawn_classes)],
        "signatures": sorted(signatures),
        "training_step": step,
        "evaluation": evaluation or {},
    }


def write_saved_model(
    generator: keras.Model,
    config: GANConfig,
    directory: str | os.PathLike,
    model_name: str = contract.DEFAULT_MODEL_NAME,
    step: int | None = None,
    evaluation: dict | None = None,
    feature_store: str | os.PathLike | None = None,
) -> Path:
    """The complete SavedModel (signatures, warmup, metadata) in `directory`; `feature_store`:
    the run's workdir, whose data classifier (gan_pkg.features) goes into assets.extra."""
    endpoints = _Endpoints(float32_generator(generator, config), config)
    signatures = endpoints.signatures()
    endpoints.archive().write_out(str(directory), verbose=False)
    extra = Path(directory) / contract.ASSETS_EXTRA
    extra.mkdir(exist_ok=True)
    with tf.io.TFRecordWriter(str(extra / contract.WARMUP_FILE)) as writer:
        for record in _warmup_records(signatures, config, model_name):
            writer.write(record)
    (extra / contract.METADATA_FILE).write_text(json.dumps(metadata(config, signatures, step, evaluation), indent=2))
    if feature_store is not None and all((Path(feature_store) / name).is_file() for name in STORED_FILES):
        for name in STORED_FILES:  # the run's data classifier: the export is scored in the space the run was
            shutil.copyfile(Path(feature_store) / name, extra / name)
    return Path(directory)


def export_generator(
    generator: keras.Model,
    config: GANConfig,
    export_base: str | os.PathLike = contract.DEFAULT_EXPORT_BASE,
    model_name: str = contract.DEFAULT_MODEL_NAME,
    step: int | None = None,
    evaluation: dict | None = None,
    feature_store: str | os.PathLike | None = None,
) -> Path:
    """Write the next integer version atomically and return its path."""
    write = lambda folder: write_saved_model(generator, config, folder, model_name, step, evaluation, feature_store)  # noqa: E731
    return add_version(Path(export_base) / model_name, write)


def export_model(
    result_model,
    config: GANConfig,
    export_base: str | os.PathLike = contract.DEFAULT_EXPORT_BASE,
    model_name: str = contract.DEFAULT_MODEL_NAME,
    evaluation: dict | None = None,
    workdir: str | os.PathLike | None = None,
) -> Path:
    """Export a trained GAN (its EMA generator when it keeps one) as `<export_base>/<model_name>`'s
    next version and return that version's folder; `workdir`: its run's (for its feature classifier)."""
    step = int(result_model.g_optimizer.iterations.numpy())
    return export_generator(result_model.inference_generator, config, export_base, model_name, step, evaluation, workdir)


def main(argv=None) -> int:
    parser = ArgumentParser(prog="python -m gan_pkg.export", description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", required=True, help="a run's workdir (its latest checkpoint) or a .keras file")
    parser.add_argument("--export-base", default=contract.DEFAULT_EXPORT_BASE)
    parser.add_argument("--model-name", default=contract.DEFAULT_MODEL_NAME)
    args = parser.parse_args(argv)
    try:
        config, model, path = load_run(args.checkpoint)
        target = export_model(model, config, args.export_base, args.model_name, workdir=path.parent.parent)
    except (OSError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"exported {path} to {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
