"""Training throughput of DCGAN: the tutorials' loop vs GAN.fit variants, and FLOP/s vs peak.

    python bench/train_throughput.py [--batch-sizes 32 256] [--repeats 3] [--steps 30] [--variants NAME ...] [--parts] [--threads INTRA INTER]

Prints the CPU model and its ISA flags (avx2, avx512f, avx512_bf16, amx_bf16:
what decides whether bfloat16 pays) and the float32 matmul peak it measured (and
the bfloat16 one when a variant trains in bfloat16), so each result can go in the
docs/BENCHMARKS.md part of its machine type.

Every figure comes from one run on one machine: variants are interleaved
(round-robin over repeats, medians reported) so a noisy neighbour hits all of
them alike. Images/s counts real images consumed per training step (the
discriminator sees as many fakes, the generator step as many noise vectors).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import platform
import statistics
import time

from gan_pkg.cli import import_tensorflow_quietly

import_tensorflow_quietly()

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from gan_pkg import architectures, runtime, training  # noqa: E402
from gan_pkg.fused_norm import use_fused_op  # noqa: E402
from gan_pkg import config as config_lib  # noqa: E402
from gan_pkg.upsampled_conv import UpsampledConv2D  # noqa: E402

# -- analytic FLOPs -------------------------------------------------------------


def forward_flops(model: keras.Model) -> int:
    """Multiply-adds x 2 of every Conv2D/Dense layer for one example, as executed: an
    UpsampledConv2D runs (k+1)^2 taps per input pixel, not k^2 per upsampled one."""
    total = 0
    for layer in model.layers:
        inner = layer.layer if isinstance(layer, keras.layers.Wrapper) else layer  # SpectralNormalization
        if isinstance(inner, UpsampledConv2D):
            _, h, w, c_in = layer.input.shape
            total += 2 * h * w * (inner.kernel_size[0] + 1) ** 2 * c_in * inner.filters
        elif isinstance(inner, keras.layers.Conv2D):
            _, h, w, c_out = layer.output.shape
            k_h, k_w = inner.kernel_size
            total += 2 * h * w * k_h * k_w * layer.input.shape[-1] * c_out
        elif isinstance(inner, keras.layers.Dense):
            total += 2 * layer.input.shape[-1] * inner.units
    return total


def config_flops(cfg) -> int:
    """step_flops of the networks and step `cfg` trains."""
    return step_flops(*architectures.build(cfg), cfg.reuse_fakes)


def step_flops(generator, discriminator, reuse_fakes: bool = False) -> int:
    """FLOPs of one fused step per real image, counting a backward pass as 2x forward.

    D update: G forward (1 fake) + D forward and backward on real and fake (2 x 3 Fd).
    G update: G and D forward, backward through both (3 Fg + 3 Fd).
    With reuse_fakes the D update takes the G update's fakes: no G forward of its own.
    """
    fg, fd = forward_flops(generator), forward_flops(discriminator)
    return (0 if reuse_fakes else fg) + 6 * fd + 3 * fg + 3 * fd


ISA_FLAGS = ("avx2", "fma", "avx512f", "avx512_bf16", "amx_bf16")


def cpu_description() -> str:
    """CPU model and the ISA flags that decide float32/bfloat16 speed."""
    model, flags = runtime.cpu_model_and_flags()
    shown = ", ".join(f"{flag} {'yes' if flag in flags else 'no'}" for flag in ISA_FLAGS)
    return f"{model or platform.processor() or platform.machine()}; {shown}"


def matmul_peak(dtype: tf.DType, n: int = 4096, repeats: int = 5) -> float:
    """FLOP/s of the best of `repeats` n x n matmuls: the roof a compute-bound step is held to."""
    a = tf.cast(tf.random.normal((n, n)), dtype)
    matmul = tf.function(lambda x: tf.matmul(x, x))
    matmul(a).numpy()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        matmul(a).numpy()
        times.append(time.perf_counter() - start)
    return 2 * n**3 / min(times)


# -- the tutorials' loop, reproduced ------------------------------------------------


def with_seeds_layers(cfg):
    """`cfg` built with the seeds' own UpSampling2D then Conv2D, as they wrote them."""
    return dataclasses.replace(cfg, g_upsampled_conv=False)


class TutorialLoop:
    """Seeds 000/004: generator.predict, discriminator.train_on_batch on real then
    fake, combined.train_on_batch, toggling discriminator.trainable per step (the
    variant that trains the discriminator under Keras 3, as tutorial 000 does)."""

    def __init__(self, cfg, images):
        keras.mixed_precision.set_global_policy("float32")
        self.generator, body = architectures.build(with_seeds_layers(cfg))
        # The tutorials' discriminator ends in a sigmoid; ours ends in a logit.
        image = keras.Input(cfg.image_shape)
        self.discriminator = keras.Model(image, keras.layers.Activation("sigmoid")(body(image)))
        self.discriminator.compile(loss="binary_crossentropy", optimizer=keras.optimizers.Adam(2e-4, 0.5), metrics=["accuracy"])
        noise = keras.Input((cfg.latent_dim,))
        self.discriminator.trainable = False
        self.combined = keras.Model(noise, self.discriminator(self.generator(noise)))
        self.combined.compile(loss="binary_crossentropy", optimizer=keras.optimizers.Adam(2e-4, 0.5))
        self.images, self.batch, self.latent = images, cfg.batch_size, cfg.latent_dim
        self.ones, self.zeros = np.ones((self.batch, 1)), np.zeros((self.batch, 1))

    def run(self, steps: int) -> tuple[float, int]:
        start = time.perf_counter()
        for _ in range(steps):
            self.discriminator.trainable = True
            real = self.images[np.random.randint(0, len(self.images), self.batch)]
            self.discriminator.train_on_batch(real, self.ones)
            fake = self.generator.predict(np.random.normal(0, 1, (self.batch, self.latent)), verbose=0)
            self.discriminator.train_on_batch(fake, self.zeros)
            self.discriminator.trainable = False
            self.combined.train_on_batch(np.random.normal(0, 1, (self.batch, self.latent)), self.ones)
        return time.perf_counter() - start, steps


class _Clock(keras.callbacks.Callback):
    def on_train_batch_end(self, batch, logs=None):
        if not hasattr(self, "first"):
            self.first = time.perf_counter()

    def on_train_end(self, logs=None):
        self.end = time.perf_counter()


class FusedFit:
    """GAN.fit with the package's own train_step under one configuration."""

    def __init__(self, cfg, images, fused_norm: bool = True, labels=None):
        """`labels`: one per image, for a config whose fakes are drawn per class."""
        self.policy = runtime.resolve_precision(cfg.precision)
        with runtime.dtype_policy(self.policy):
            self.model = training.build_gan(cfg)
        if not fused_norm:  # batch norm trained through Keras' own ops, as before FusedBatchNormalization
            use_fused_op(self.model, False)
        examples = (images, labels) if labels is not None and cfg.classes.drawn_classes else images
        self.dataset = (
            tf.data.Dataset.from_tensor_slices(examples).repeat().batch(cfg.batch_size, drop_remainder=True).prefetch(tf.data.AUTOTUNE)
        )
        self.spe = cfg.steps_per_execution

    def run(self, steps: int) -> tuple[float, int]:
        """Seconds and steps from the end of the first execution to the end: each
        fit() call sets up a fresh iterator (and may retrace), which a long
        training run pays once, not per step."""
        steps = max(self.spe, steps - steps % self.spe) + self.spe  # whole executions, plus the untimed first
        clock = _Clock()
        with runtime.dtype_policy(self.policy):
            self.model.fit(self.dataset, steps_per_epoch=steps, epochs=1, verbose=0, shuffle=False, callbacks=[clock])
        return clock.end - clock.first, steps - self.spe


def _variant(precision: str, jit_compile: bool = False, **changes):
    return lambda cfg: dataclasses.replace(cfg, precision=precision, jit_compile=jit_compile, **changes)


VARIANTS = {
    "tutorials' loop (train_on_batch)": with_seeds_layers,
    "GAN.fit dcgan (precision=auto, jit_compile=auto)": lambda cfg: cfg,
    "GAN.fit sndcgan": lambda cfg: config_lib.preset("sndcgan").replace(batch_size=cfg.batch_size),
    "GAN.fit float32": _variant("float32"),
    "GAN.fit float32, one G forward": _variant("float32", reuse_fakes=True),
    "GAN.fit mixed_bfloat16, one G forward": _variant("mixed_bfloat16", reuse_fakes=True),
    "GAN.fit mixed_bfloat16, one G forward, the seeds' layers": _variant("mixed_bfloat16", reuse_fakes=True, g_upsampled_conv=False),
    "GAN.fit float32 + jit_compile, one G forward, the seeds' layers": _variant("float32", True, reuse_fakes=True, g_upsampled_conv=False),
    "GAN.fit mixed_bfloat16": _variant("mixed_bfloat16"),
    "GAN.fit float32 + jit_compile": _variant("float32", True),
    "GAN.fit float32 + jit_compile, one G forward": _variant("float32", True, reuse_fakes=True),
    "GAN.fit mixed_bfloat16 + jit_compile": _variant("mixed_bfloat16", True),
    "GAN.fit mixed_bfloat16, 10 steps/execution": _variant("mixed_bfloat16", steps_per_execution=10),
    "GAN.fit mixed_bfloat16, one G forward, 10 steps/execution": _variant("mixed_bfloat16", reuse_fakes=True, steps_per_execution=10),
    "GAN.fit mixed_bfloat16, one G forward, Keras' batch-norm ops": _variant("mixed_bfloat16", reuse_fakes=True),
    "GAN.fit dcgan, Keras' batch-norm ops": lambda cfg: cfg,
}
KERAS_NORM = "Keras' batch-norm ops"  # variants whose batch norm trains through Keras' ops, not the fused one


def measure(batch_size: int, steps: int, repeats: int, images: np.ndarray, variants: list[str]) -> list[dict]:
    base = dataclasses.replace(config_lib.preset("dcgan"), batch_size=batch_size)
    configs = {name: VARIANTS[name](base) for name in variants}
    runners = {}
    for name, cfg in configs.items():
        runners[name] = TutorialLoop(cfg, images) if name.startswith("tutorials") else FusedFit(cfg, images, fused_norm=KERAS_NORM not in name)
        runners[name].run(max(3, steps // 5))  # warm-up: tracing, compilation, first allocations
    times = {name: [] for name in runners}
    for _ in range(repeats):
        for name, runner in runners.items():  # interleaved
            seconds, done = runner.run(steps)
            times[name].append(seconds / done)
    return [
        {"variant": name, "batch": batch_size, "seconds_per_step": statistics.median(t), "flops": config_flops(configs[name]),
         "precision": runtime.resolve_precision(configs[name].precision)}
        for name, t in times.items()
    ]


PART_HOWS = {"float32": ("float32", False), "float32 + XLA": ("float32", True), "mixed_bfloat16": ("mixed_bfloat16", False)}


def time_parts(batch: int = 32, hows: tuple[str, ...] = ("float32", "float32 + XLA"), repeats: int = 20) -> list[tuple[str, str, float, float]]:
    """(part, how, ms, GFLOP/s) of the step's parts, each its own tf.function, for each of
    `hows` (PART_HOWS): the generator (folded upsampling and the seeds' layers) forward and
    forward + backward at `batch`, the discriminator forward + backward at 2 x `batch` (real
    and fake): where the step spends its time, and how far each part is from compute-bound."""
    rows = []
    for how in hows:
        policy, jit = PART_HOWS[how]
        with runtime.dtype_policy(policy):
            folded, discriminator = architectures.build(config_lib.preset("dcgan"))
            seeds_layers = architectures.build(with_seeds_layers(config_lib.preset("dcgan")))[0]
            noise = tf.random.normal((batch, folded.input_shape[-1]))
            images = tf.random.normal((2 * batch, *discriminator.input_shape[1:]))
            parts = {}
            for layers, generator in (("folded", folded), ("the seeds' layers", seeds_layers)):
                fg = forward_flops(generator)
                parts[f"generator forward, {layers}, batch {batch}"] = (lambda g=generator: g(noise, training=True), batch * fg)
                parts[f"generator forward + backward, {layers}, batch {batch}"] = (lambda g=generator: _forward_backward(g, noise), 3 * batch * fg)
            parts[f"discriminator forward + backward, batch {2 * batch}"] = (
                lambda: _forward_backward(discriminator, images), 3 * 2 * batch * forward_flops(discriminator))
            for part, (fn, flops) in parts.items():
                compiled = tf.function(fn, jit_compile=jit)
                tf.nest.map_structure(lambda t: t.numpy(), compiled())  # trace, compile
                times = []
                for _ in range(repeats):
                    start = time.perf_counter()
                    tf.nest.map_structure(lambda t: t.numpy(), compiled())
                    times.append(time.perf_counter() - start)
                seconds = statistics.median(times)
                rows.append((part, how, 1e3 * seconds, flops / seconds / 1e9))
    return rows


def _forward_backward(model, x):
    with tf.GradientTape() as tape:
        loss = tf.reduce_mean(tf.cast(model(x, training=True), tf.float32))
    return tape.gradient(loss, model.trainable_variables)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[32, 256])
    parser.add_argument("--steps", type=int, default=30, help="timed steps per repeat at batch 32 (scaled down for larger batches)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=list(VARIANTS),
                        help="which rows to measure (the tutorials' loop is always first: the ratios are against it)")
    parser.add_argument("--parts", action="store_true",
                        help="also time the step's parts (G forward, G and D forward+backward) at the first batch size, in float32 with and without XLA, and in bfloat16 where a variant trains in it")
    parser.add_argument("--threads", type=int, nargs=2, metavar=("INTRA", "INTER"),
                        help="TF's intra-op and inter-op thread pools (default: TF's choice, one per core)")
    args = parser.parse_args()
    if args.threads:  # before the first op creates the pools
        tf.config.threading.set_intra_op_parallelism_threads(args.threads[0])
        tf.config.threading.set_inter_op_parallelism_threads(args.threads[1])
    variants = [next(iter(VARIANTS))] + [v for v in args.variants if not v.startswith("tutorials")]

    images = (np.random.default_rng(0).uniform(-1, 1, (2048, 28, 28, 1))).astype(np.float32)
    seeds_layers = with_seeds_layers(config_lib.preset("dcgan"))
    flops = {(fold, reuse): config_flops(dataclasses.replace(seeds_layers, g_upsampled_conv=fold, reuse_fakes=reuse))
             for fold in (False, True) for reuse in (False, True)}
    # Only the precisions measured: a CPU held to AVX2 (ONEDNN_MAX_CPU_ISA) has no fast bfloat16 matmul to time.
    precisions = {"float32"} | {"bfloat16" for v in variants if not v.startswith("tutorials") and runtime.resolve_precision(VARIANTS[v](seeds_layers).precision) == "mixed_bfloat16"}
    peaks = {name: matmul_peak(getattr(tf, name)) for name in sorted(precisions)}

    threads = f"intra/inter-op threads {args.threads[0]}/{args.threads[1]}" if args.threads else "TF's default thread pools"
    print(f"# DCGAN training throughput (TF {tf.__version__}, {len(os.sched_getaffinity(0))} cores, {threads})")
    print(f"CPU: {cpu_description()}")
    print(f"analytic FLOPs per image per step, the seeds' layers: {flops[False, False] / 1e6:.1f} MFLOP (one G forward: "
          f"{flops[False, True] / 1e6:.1f}); upsampling folded into the convs: {flops[True, False] / 1e6:.1f} ({flops[True, True] / 1e6:.1f})")
    print(f"matmul peak: {', '.join(f'{name} {peak / 1e9:.0f} GFLOP/s' for name, peak in peaks.items())}\n")
    print("| batch | variant | images/s | vs tutorials' loop | GFLOP/s | % of matmul peak |")
    print("|---:|---|---:|---:|---:|---:|")
    for batch in args.batch_sizes:
        steps = max(4, args.steps * 32 // batch)
        rows = measure(batch, steps, args.repeats, images, variants)
        baseline = batch / rows[0]["seconds_per_step"]
        for row in rows:
            rate = batch / row["seconds_per_step"]
            gflops = rate * row["flops"] / 1e9
            if row["variant"].startswith("tutorials"):
                peak_text = "n/a"
            else:
                peak = peaks["bfloat16" if row["precision"] == "mixed_bfloat16" else "float32"]
                peak_text = f"{100 * gflops * 1e9 / peak:.0f}%"
            print(f"| {batch} | {row['variant']} | {rate:.0f} | {rate / baseline:.2f}x | {gflops:.1f} | {peak_text} |", flush=True)

    if args.parts:
        hows = ("float32", "float32 + XLA") + (("mixed_bfloat16",) if "bfloat16" in peaks else ())
        print("\n| part | precision | ms | GFLOP/s | % of its precision's matmul peak |")
        print("|---|---|---:|---:|---:|")
        for part, how, ms, gflops in time_parts(args.batch_sizes[0], hows):
            peak = peaks["bfloat16" if how == "mixed_bfloat16" else "float32"]
            print(f"| {part} | {how} | {ms:.1f} | {gflops:.0f} | {100 * gflops * 1e9 / peak:.0f}% |", flush=True)


if __name__ == "__main__":
    main()
