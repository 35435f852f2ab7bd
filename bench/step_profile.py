"""Where a training step's time goes, op by op: a TensorFlow profiler trace of GAN.fit.

    python bench/step_profile.py [--config PRESET[:field=value,...]] [--steps 20] [--top 25] [--keras-norm]

Trains `--config` (default: the default preset, at its batch size and precision) on random
images for a warm-up, then traces `--steps` steps with TensorFlow's profiler and sums each
op's time on the host per step, by op type and by op: which kernels a faster step has to
change. Times are summed over threads, so ops that ran side by side add up to more than
the step's wall time. `--keras-norm`: batch norm through Keras' own ops, as before
FusedBatchNormalization.
"""

from __future__ import annotations

import argparse
import collections
import re
import tempfile
from pathlib import Path

from gan_pkg.cli import import_tensorflow_quietly

import_tensorflow_quietly()

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from tensorflow.tsl.profiler.protobuf import xplane_pb2  # noqa: E402

from gan_pkg import config as config_lib  # noqa: E402
from time_to_quality import parse_contender  # noqa: E402  bench/ is the script's directory
from train_throughput import FusedFit, cpu_description  # noqa: E402

# Executor and function-call spans ("ExecutorState::Process", "EagerLocalExecute: __inference_..",
# "...:StatefulPartitionedCall") hold the ops' own, which would count twice.
OP_EVENT = re.compile(r"[^:\s][^:]*:(?!__inference)[A-Za-z_][A-Za-z0-9_]*")
WRAPPERS = {"StatefulPartitionedCall", "PartitionedCall"}


def op_times(logdir: Path) -> collections.Counter:
    """Seconds per op ("node/name:OpType") on the host, summed over every trace under `logdir`."""
    times = collections.Counter()
    for path in Path(logdir).rglob("*.xplane.pb"):
        space = xplane_pb2.XSpace.FromString(path.read_bytes())
        for plane in space.planes:
            if plane.name != "/host:CPU":
                continue
            names = {key: meta.name for key, meta in plane.event_metadata.items()}
            for line in plane.lines:
                for event in line.events:
                    name = names.get(event.metadata_id, "")
                    if OP_EVENT.fullmatch(name) and name.rpartition(":")[2] not in WRAPPERS:
                        times[name] += event.duration_ps * 1e-12
    return times


def profile(runner: FusedFit, steps: int, logdir: Path) -> tuple[float, collections.Counter]:
    """(seconds per step, op -> seconds per step) over `steps` traced steps of `runner`."""
    tf.profiler.experimental.start(str(logdir))
    try:
        seconds, timed = runner.run(steps)
    finally:
        tf.profiler.experimental.stop()
    traced = timed + runner.spe  # run() also executes one untimed first execution
    return seconds / timed, collections.Counter({name: t / traced for name, t in op_times(logdir).items()})


def by_type(per_op: collections.Counter) -> collections.Counter:
    types = collections.Counter()
    for name, seconds in per_op.items():
        types[name.rpartition(":")[2]] += seconds
    return types


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=config_lib.DEFAULT_PRESET, help="a preset, optionally with changes: dcgan:batch_size=32")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--top", type=int, default=25, help="rows of each table")
    parser.add_argument("--keras-norm", action="store_true", help="batch norm through Keras' own ops, not the fused op")
    args = parser.parse_args()
    _, config = parse_contender(args.config)

    rng = np.random.default_rng(0)
    images = rng.uniform(-1, 1, (2048, *config.image_shape)).astype(np.float32)
    labels = rng.integers(0, config.num_classes or 10, len(images))
    runner = FusedFit(config, images, fused_norm=not args.keras_norm, labels=labels)
    runner.run(max(3, args.steps // 4))  # tracing, compilation, first allocations
    with tempfile.TemporaryDirectory() as logdir:
        seconds, per_op = profile(runner, args.steps, Path(logdir))

    total = sum(per_op.values())
    print(f"# {args.config}{', Keras batch-norm ops' if args.keras_norm else ''}: {args.steps} steps of batch {config.batch_size}, "
          f"{runner.policy}; CPU: {cpu_description()}")
    print(f"{1e3 * seconds:.1f} ms per step (wall); ops {1e3 * total:.1f} ms per step, summed over threads\n")
    for title, counter in (("op type", by_type(per_op)), ("op", per_op)):
        print(f"| {title} | ms per step | share of op time |\n|---|---:|---:|")
        for name, t in counter.most_common(args.top):
            print(f"| {name} | {1e3 * t:.2f} | {100 * t / total:.1f}% |")
        print()


if __name__ == "__main__":
    main()
