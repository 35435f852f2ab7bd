"""What an export costs on disk and in a server's memory: each weight stored once, or twice.

    python bench/export_size.py [--preset dcgan]

Writes the preset's (untrained) generator twice with gan_pkg.export: as it is now (the
endpoints alone: every weight once) and as before keras-team/keras#23553 was worked
around (the generator also `track()`ed: every weight twice). For each: the values its
checkpoint holds, its size on disk, and the resident memory of the embedded server
(serving/server.py, which loads through TF Serving's session loader) once it serves it.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from gan_pkg.cli import import_tensorflow_quietly

import_tensorflow_quietly()

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from gan_pkg import architectures, export  # noqa: E402
from gan_pkg import config as config_lib  # noqa: E402

SERVER = Path(__file__).resolve().parent.parent / "serving" / "server.py"


def write(config, base: Path, twice: bool) -> Path:
    generator, _ = architectures.build(config)
    archive = export._Endpoints.archive
    if twice:  # what the exporter did before: track() beside the endpoints' own captures
        def tracked(self):
            built = archive(self)
            built.track(self.generator)
            return built

        export._Endpoints.archive = tracked
    try:
        return export.export_generator(generator, config, base, "gan")
    finally:
        export._Endpoints.archive = archive


def stored_values(version_dir: Path) -> int:
    found = tf.train.list_variables(str(version_dir / "variables" / "variables"))
    return sum(int(np.prod(shape)) for name, shape in found if name != "_CHECKPOINTABLE_OBJECT_GRAPH")


def disk_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def served_rss_mib(model_base: Path, timeout: float = 120.0) -> float:
    """VmRSS of the embedded server once it prints its ready line."""
    server = subprocess.Popen([sys.executable, str(SERVER), "--model_base_path", str(model_base), "--port", "0", "--rest_api_port", "0"],
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not server.stdout.readline().startswith("serving "):
            pass
        status = Path(f"/proc/{server.pid}/status").read_text()
        return int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmRSS:"))) / 1024
    finally:
        server.terminate()
        server.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="dcgan", choices=sorted(config_lib.PRESETS))
    args = parser.parse_args()
    config = config_lib.preset(args.preset)
    print(f"# Export size, {args.preset} (generator {architectures.build(config)[0].count_params():,} parameters)\n")
    print("| weights stored | values in checkpoint | export on disk (MB) | server RSS serving it (MiB) |")
    print("|---|---:|---:|---:|")
    with tempfile.TemporaryDirectory() as scratch:
        for twice in (True, False):
            base = Path(scratch) / ("twice" if twice else "once")
            version = write(config, base, twice)
            print(f"| {'twice (before)' if twice else 'once (now)'} | {stored_values(version):,} | {disk_bytes(version) / 1e6:.1f} | "
                  f"{served_rss_mib(base / 'gan'):.0f} |", flush=True)


if __name__ == "__main__":
    main()
