"""What every command-line entry point shares: one-line flag errors and a
quiet TensorFlow import. Light on purpose: serving/ imports it too."""

from __future__ import annotations

import argparse
import os
import sys


class ArgumentParser(argparse.ArgumentParser):
    """A bad flag answers with one line (what was wrong, where to look), not the usage block."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def import_tensorflow_quietly() -> None:
    """Import TensorFlow with its C++ start-up banner muted.

    TF 2.21 logs "oneDNN custom operations are on" and "Could not find cuda
    drivers" through absl before TF_CPP_MIN_LOG_LEVEL is read (and "failed call
    to cuInit" when devices start), so only muting file descriptor 2 for the
    import keeps a CLI's error output to one line.
    Errors raised by the import itself still surface as Python exceptions.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if "tensorflow" in sys.modules:
        return
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    try:
        import tensorflow

        tensorflow.config.list_physical_devices()  # device start-up logs "failed call to cuInit"
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)
