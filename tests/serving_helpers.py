"""What the serving tests share (not a test file): a tiny DCGAN export, in-process server
flags, free ports and bounded waits."""

import socket
import time
from pathlib import Path
from types import SimpleNamespace

from tiny import tiny

REPO = Path(__file__).resolve().parent.parent
LATENT = 100


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(predicate, timeout=30.0, interval=0.1, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def export_tiny(base, preset="dcgan", model_name="gan"):
    from gan_pkg import architectures, config, export

    cfg = tiny("dcgan") if preset == "dcgan" else config.preset(preset)
    generator, _ = architectures.build(cfg)
    return export.export_generator(generator, cfg, base, model_name)


def server_args(**overrides):
    """What serving.main.parse_args returns, for serving.main.start in-process."""
    values = dict(
        port=0, rest_api_port=free_port(), host="127.0.0.1", model_name="gan", model_base_path=None, model_config_file=None,
        file_system_poll_wait_seconds=0.2, enable_batching=False, batching_parameters_file=None, max_batch_size=8,
        ssl_config_file=None, monitoring_config_file=None,
    )
    values.update(overrides)
    return SimpleNamespace(**values)


def quiet(*args, **kwargs):
    pass
