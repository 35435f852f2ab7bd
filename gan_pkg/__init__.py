"""gan_pkg: train GANs with one compiled train_step and export the generator for
TensorFlow Serving.

    from gan_pkg import GANConfig, export_model, train
    from gan_pkg.plan import plan     # a module of that name, so not re-exported here

Importing the package loads nothing heavy: each name below imports its module
(and TensorFlow, where it needs it) on first use.
"""

import importlib

__version__ = "0.2.0"  # 0.2.0: exports written with keras.export.ExportArchive (TF Serving loads them)

# public name -> the module that defines it
_PUBLIC = {
    "GAN": "gan_pkg.gan",
    "GANConfig": "gan_pkg.config",
    "Conditioning": "gan_pkg.conditioning",
    "Recipe": "gan_pkg.recipe",
    "PRESETS": "gan_pkg.config",
    "DEFAULT_PRESET": "gan_pkg.config",
    "train": "gan_pkg.training",
    "build_gan": "gan_pkg.training",
    "export_model": "gan_pkg.export",
    "export_generator": "gan_pkg.export",
    "evaluate_export": "gan_pkg.evaluate",
    "evaluate_workdir": "gan_pkg.evaluate",
    "load_run": "gan_pkg.runs",
}
__all__ = sorted(_PUBLIC)


def __getattr__(name: str):
    if name not in _PUBLIC:
        raise AttributeError(f"module 'gan_pkg' has no attribute {name!r}")
    value = getattr(importlib.import_module(_PUBLIC[name]), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_PUBLIC))
