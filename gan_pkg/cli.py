"""What every command-line entry point shares: one-line flag errors and a
quiet TensorFlow import. Light on purpose: serving/ imports it too."""

from __future__ import annotations

import argparse
import os
import re
import sys


class ArgumentParser(argparse.ArgumentParser):
    """A bad flag answers with one line (what was wrong, where to look), not the usage block."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)([dhms])")
_UNIT_SECONDS = {"d": 86400, "h": 3600, "m": 60, "s": 1}


def parse_duration(text: str) -> float:
    """A time budget in seconds: `90`, `90s`, `4m`, `1h30m`, `1.5h`, or PyTorch Lightning's
    `max_time` strings `HH:MM:SS` / `DD:HH:MM:SS`. Raises ValueError unless it is > 0."""
    value = str(text).strip().lower()
    seconds = None
    if re.fullmatch(r"\d+(?:\.\d+)?", value):
        seconds = float(value)
    elif re.fullmatch(r"(\d+:){1,3}\d+", value):
        parts = [int(p) for p in value.split(":")]
        seconds = float(sum(p * u for p, u in zip(reversed(parts), (1, 60, 3600, 86400))))
    elif value and _DURATION_PART.sub("", value) == "":
        seconds = sum(float(n) * _UNIT_SECONDS[u] for n, u in _DURATION_PART.findall(value))
    if seconds is None or seconds <= 0:
        raise ValueError(f"{text!r} is not a time budget: use e.g. 90s, 4m, 1h30m, 00:04:00 or 00:00:04:00")
    return seconds


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
