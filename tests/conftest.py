"""Shared fixtures: tiny configs so every test trains in seconds."""

import dataclasses
import os
import subprocess
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pytest

from gan_pkg import config as config_lib

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def tiny(preset: str, **changes) -> config_lib.GANConfig:
    """The preset's own architecture and training rules, shrunk to run in seconds."""
    base = config_lib.preset(preset)
    shrink = {
        "dcgan": dict(g_initial_shape=(7, 7, 8), g_filters=(8, 4), d_filters=(4, 4, 4, 4)),
        "conv": dict(g_initial_shape=(7, 7, 4), g_filters=(8, 4, 4), d_filters=(4, 4, 8, 8)),
        "mlp": dict(g_filters=(16, 16, 16), d_filters=(16, 16, 16)),
        "dist1d": dict(),
        "conv-tanh": dict(g_dense_units=(16,), g_initial_shape=(7, 7, 8), g_filters=(4,), d_filters=(4, 4), d_dense_units=(16,)),
    }[preset]
    defaults = dict(batch_size=8, steps=4, holdout=100, precision="float32")
    return dataclasses.replace(base, **{**shrink, **defaults, **changes})


def run_python(*args, timeout=240, **kwargs) -> subprocess.CompletedProcess:
    """Run `python args...` in a fresh interpreter (the user's view of a CLI)."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=REPO)
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=timeout, env=env, **kwargs)


@pytest.fixture
def tiny_config():
    return tiny
