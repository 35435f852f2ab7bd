"""gan_pkg: train the seed GANs with one compiled train_step and export the
generator for TensorFlow Serving. Importing the package loads nothing heavy;
see gan_pkg.train, gan_pkg.export and python -m gan_pkg.fit."""

__version__ = "0.2.0"  # 0.2.0: exports written with keras.export.ExportArchive (TF Serving loads them)
