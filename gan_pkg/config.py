"""One frozen config for a whole run, with one preset per tutorial.

Every field is a plain JSON value (tuples become lists on the way out and come
back as tuples), so a config round-trips through JSON, the checkpoint and the
export metadata unchanged. Presets are derived from the default (`DCGAN`) with
`dataclasses.replace`, so each one lists only what its seed does differently.
"""

from __future__ import annotations

import dataclasses
import json
import re
import typing
from dataclasses import dataclass

from gan_pkg import conditioning
from gan_pkg.conditioning import Conditioning


def option(default, doc: str):
    """A config field with its one-line user documentation (docs/CONFIG.md is generated from it)."""
    return dataclasses.field(default=default, metadata={"doc": doc})


@dataclass(frozen=True)
class GANConfig:
    # -- what is trained on what
    preset: str = option("dcgan", "the preset this config started from (`--preset`)")
    architecture: str = option("dcgan", "network family: dcgan | conv | mlp | dist1d | conv-tanh | resnet (gan_pkg.architectures)")
    data: str = option("mnist-sample", "a named data set, an `.npz`, an image folder, TFRecords or `normal1d` (DATA.md)")
    holdout_data: str = option("", "TFRecord data only: where the held-out split comes from (TFX's eval_files); empty: kept out of `data`")
    seed: int = option(0, "RNG seed of the weights' initialisation, the noise and the data's shuffle")

    # -- shapes: settled by gan_pkg.plan from the data before any model exists
    image_shape: tuple = option((28, 28, 1), "what the generator makes: (H, W, C), or (length,) for 1-D presets; set by the plan")
    image_size: int = option(0, "side of the square images trained (`--image-size`); 0: the data's, within the preset's supported sides")
    channels: int = option(0, "1 (grey) or 3 (RGB) (`--channels`); 0: RGB when the data has colour")
    resize: str = option("center-crop", "how other-sized images are fitted: center-crop | stretch (`--resize`)")
    background: str = option("white", "what transparent pixels are composited onto: white | black | grey | #rrggbb (`--background`)")
    class_names: tuple = option((), "names of the label values (an image folder's class subfolders); empty: the indices")
    latent_dim: int = option(100, "length of the noise vector the served generator takes")
    latent_distribution: str = option("normal", "noise distribution: normal (mean 0, std 1) | uniform")
    latent_range: tuple = option((-1.0, 1.0), "bounds of the uniform noise")
    output_range: tuple = option((-1.0, 1.0), "range real data is scaled to (the generator's output range); empty: unscaled")

    # -- classes (gan_pkg.conditioning)
    conditioning: str = option("none", "how a fake's class enters: none | label (G and the export take a label) | noise-code (the class is coded in the noise; the export takes noise only) (CONDITIONAL.md)")
    num_classes: int = option(0, "how many classes (label values 0..num_classes-1), settled by the plan from the data's labels")
    class_loss_weight: float = option(0.0, "> 0: D gets a class head that learns the real images' labels (AC-GAN, Odena et al. 2017), this weight in D's and G's losses; with conditioning none, G is trained to make fakes it reads confidently as one class, every class equally often")

    # -- generator: dense to g_initial_shape, one conv block per g_filters entry, an output conv
    g_dense_units: tuple = option((), "dense layers before the projection (conv-tanh)")
    g_initial_shape: tuple = option((7, 7, 128), "the grid the noise is projected to")
    g_filters: tuple = option((128, 64), "filters per conv block (hidden widths for dense architectures)")
    g_kernel_sizes: tuple = option((3, 3, 3), "kernel size per conv, the output conv included")
    g_upsample: tuple = option((2, 2, 1), "UpSampling2D factor per conv, the output conv included (1: none)")
    g_upsampled_conv: bool = option(True, "run each UpSampling2D(2) and odd-kernel conv after it as one stride-2 transposed conv (gan_pkg/upsampled_conv.py): the same function and weights, fewer multiply-adds; false: the tutorials' two layers")
    g_bn_momentum: float = option(0.8, "batch-norm momentum (0: no batch norm)")
    g_activation: str = option("relu", "hidden activation")
    g_dropout: float = option(0.0, "dropout after each hidden block")

    # -- discriminator: one conv block per d_filters entry (widths for dense ones)
    d_filters: tuple = option((32, 64, 128, 256), "filters per conv block")
    d_kernel_sizes: tuple = option((3, 3, 3, 3), "kernel size per conv block")
    d_strides: tuple = option((2, 2, 2, 1), "stride per conv block")
    d_dense_units: tuple = option((), "dense layers after the convs (conv-tanh)")
    d_bn_momentum: float = option(0.8, "batch-norm momentum (0: no batch norm)")
    d_activation: str = option("leaky_relu", "hidden activation")
    d_dropout: float = option(0.25, "dropout after each block")
    d_spectral_norm: bool = option(False, "spectral normalisation of D's conv and dense kernels (Miyato et al. 2018)")
    d_head: str = option("pool", "resnet: how D's last grid becomes its features: pool (global average) | dense (a 3x3 conv and a dense layer over the whole grid, as PGGAN/StyleGAN)")
    d_minibatch_std: bool = option(False, "resnet: give D's last grid the batch's standard deviation as an extra channel (PGGAN), so a collapsing generator is seen")

    # -- optimisation (tutorial 000: Adam(0.0002, 0.5) for both networks)
    optimizer: str = option("adam", "adam | rmsprop | sgd, for both networks")
    g_learning_rate: float = option(2e-4, "the generator's learning rate")
    d_learning_rate: float = option(2e-4, "the discriminator's learning rate")
    beta_1: float = option(0.5, "Adam's beta_1")
    beta_2: float = option(0.999, "Adam's beta_2")
    momentum: float = option(0.0, "SGD / RMSprop momentum")
    nesterov: bool = option(False, "Nesterov momentum (SGD)")
    lr_schedule: str = option("constant", "constant | linear | cosine: both learning rates decay to 0 over `steps`")

    # -- the training recipe
    loss: str = option("bce", "bce (non-saturating) | hinge | wgan-gp | rpgan (relativistic pairing) (gan_pkg.losses)")
    label_smoothing: float = option(0.0, "one-sided: D's target for real images is 1 - label_smoothing")
    gp_weight: float = option(10.0, "wgan-gp's gradient-penalty weight")
    r1_weight: float = option(0.0, "> 0: zero-centred gradient penalty on real images, gamma/2 E|grad D(x)|^2 (R1, Mescheder et al. 2018)")
    r2_weight: float = option(0.0, "> 0: the same penalty on fakes (R2; R3GAN pairs it with R1)")
    reg_every: int = option(1, "R1/R2 are taken on one image in every this many of each batch (the saving of StyleGAN2's lazy regularisation)")
    d_steps: int = option(1, "discriminator updates per generator update")
    reuse_fakes: bool = option(False, "one generator forward per step: the D step scores the G step's fakes")
    augment: str = option("", "DiffAugment policy for what D sees, comma-separated: translation, cutout, color (Zhao et al. 2020)")
    ema_decay: float = option(0.0, "> 0: keep an exponential moving average of the generator and export it (its batch-norm statistics re-measured each epoch)")

    # -- budget
    batch_size: int = option(32, "images per training step (global, across replicas)")
    steps: int = option(3000, "training steps (`--steps`)")
    epochs: int = option(0, "> 0: full passes over the training split instead of `steps` (`--epochs`)")
    holdout: int = option(500, "images kept out of training for evaluation (FID's reference)")

    # -- execution
    precision: str = option("auto", "auto | float32 | mixed_bfloat16 | mixed_float16; auto: bfloat16 on CPUs that have it, float16 with loss scaling on GPUs")
    jit_compile: bool | str = option("auto", "true | false | auto: XLA where it measured faster (float32 steps on a CPU; BENCHMARKS.md B2)")
    steps_per_execution: int = option(1, "training steps per call into the compiled function")
    strategy: str = option("default", "default | mirrored (every local GPU) | multi-worker (TF_CONFIG)")

    @property
    def is_image(self) -> bool:
        return len(self.image_shape) == 3

    @property
    def classes(self) -> "Conditioning":
        """How classes enter this run (gan_pkg.conditioning): what every part asks."""
        return Conditioning.of(self)

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, values: dict) -> "GANConfig":
        """A config as JSON holds it, one written before `conditioning` included."""
        return cls().replace(**conditioning.from_legacy(values))

    @classmethod
    def from_json(cls, text: str) -> "GANConfig":
        return cls.from_dict(json.loads(text))

    def replace(self, **values) -> "GANConfig":
        """A copy with `values` (JSON-typed: lists for tuples, ints for floats) coerced to each field's type."""
        fields = {f.name: f for f in dataclasses.fields(self)}
        unknown = sorted(set(values) - set(fields))
        if unknown:
            raise ValueError(f"unknown config field(s): {', '.join(unknown)} (fields: {', '.join(sorted(fields))})")
        return dataclasses.replace(self, **{name: _coerce(fields[name], value) for name, value in values.items()})

    @classmethod
    def resolve(cls, preset_name: str, values: dict | None = None, steps: int | None = None, epochs: int | None = None) -> "GANConfig":
        """The one way every entry point (CLIs, tuner, TFX module) turns its inputs into a config:
        the preset, then `values`, then a budget (`steps` trains that many steps and
        clears `epochs`; `epochs` trains that many passes). Raises ValueError saying what is wrong."""
        values = dict(values or {})
        config = preset(preset_name).replace(**values)
        if "image_shape" in values and config.is_image and not {"image_size", "channels"} & set(values):
            config = config.replace(**_size_request(config.image_shape))
        if steps is not None:
            config = dataclasses.replace(config, steps=int(steps), epochs=0)
        elif epochs is not None:
            config = dataclasses.replace(config, epochs=int(epochs))
        return config.validated()

    def validated(self) -> "GANConfig":
        """This config, once its fields agree with each other; raises ValueError saying what is wrong."""
        config = self
        for name in ("steps", "batch_size"):
            if getattr(config, name) < 1:
                raise ValueError(f"{name.replace('_', '-')} must be at least 1, got {getattr(config, name)}")
        if config.epochs < 0:
            raise ValueError(f"epochs must be at least 1 (or 0 to train --steps), got {config.epochs}")
        parse_augment_policy(config.augment)
        if config.augment and not config.is_image:
            raise ValueError(f"augment: preset {config.preset!r} makes 1-D samples; DiffAugment works on images")
        if config.resize not in RESIZE_MODES:
            raise ValueError(f"resize must be one of {', '.join(RESIZE_MODES)}, got {config.resize!r}")
        parse_background(config.background)
        if config.channels not in (0, 1, 3):
            raise ValueError(f"channels must be 1 (grayscale) or 3 (RGB), got {config.channels}")
        if config.image_size < 0:
            raise ValueError(f"image-size must be a positive side in pixels, got {config.image_size}")
        if config.d_head not in D_HEADS:
            raise ValueError(f"d_head must be one of {', '.join(D_HEADS)}, got {config.d_head!r}")
        if config.lr_schedule not in LR_SCHEDULES:
            raise ValueError(f"lr_schedule must be one of {', '.join(LR_SCHEDULES)}, got {config.lr_schedule!r}")
        if config.class_loss_weight < 0:
            raise ValueError(f"class_loss_weight must be 0 (no class head) or more, got {config.class_loss_weight}")
        # (how many classes fit in the noise depends on the data's classes: gan_pkg.plan checks it)
        problem = config.classes.problem(config.is_image)
        if problem:
            raise ValueError(problem)
        return config


LR_SCHEDULES = ("constant", "linear", "cosine")
D_HEADS = ("pool", "dense")  # gan_pkg.architectures._residual_head
RESIZE_MODES = ("center-crop", "stretch")
AUGMENT_POLICIES = ("color", "translation", "cutout")  # gan_pkg.augment


BACKGROUNDS = {"white": (255, 255, 255), "black": (0, 0, 0), "grey": (128, 128, 128), "gray": (128, 128, 128)}


def parse_background(text: str) -> tuple[int, int, int]:
    """"white" / "black" / "grey" / "#rrggbb" -> an RGB triple; raises ValueError on anything else."""
    name = text.strip().lower()
    if name in BACKGROUNDS:
        return BACKGROUNDS[name]
    if re.fullmatch(r"#[0-9a-f]{6}", name):
        return tuple(int(name[i : i + 2], 16) for i in (1, 3, 5))
    raise ValueError(f"background must be white, black, grey or a colour as #rrggbb, got {text!r}")


def parse_augment_policy(text: str) -> tuple[str, ...]:
    """"translation,cutout" -> ("translation", "cutout"); "" -> (). Raises ValueError on unknown names."""
    names = tuple(name.strip() for name in text.split(",") if name.strip())
    unknown = [name for name in names if name not in AUGMENT_POLICIES]
    if unknown:
        raise ValueError(f"augment: unknown policy {', '.join(unknown)}; use a comma-separated subset of {', '.join(AUGMENT_POLICIES)}")
    return names


def _size_request(shape: tuple) -> dict:
    """An image_shape typed by the user as the request it stands for (plan settles the rest)."""
    height, width, channels = shape
    if height != width:
        raise ValueError(f"image_shape {tuple(shape)}: presets train square images; use image_size (and resize) instead")
    return {"image_size": height, "channels": channels}


def parse_assignments(items: typing.Iterable[str]) -> dict:
    """The CLIs' `--set field=value` (repeatable) as {field: value}; values parse as
    JSON, anything else is a bare string (`--set optimizer=rmsprop`)."""
    fields = {f.name for f in dataclasses.fields(GANConfig)}
    values = {}
    for item in items:
        name, sep, raw = item.partition("=")
        name = name.strip().replace("-", "_")
        if not sep or name not in fields:
            raise ValueError(f"--set {item!r}: expected field=value with a field of GANConfig (one of: {', '.join(sorted(fields))})")
        try:
            values[name] = json.loads(raw)
        except json.JSONDecodeError:
            values[name] = raw
    return values


def _coerce(field: dataclasses.Field, value):
    """JSON gives lists and ints; the dataclass wants tuples and floats."""
    kind = field.type if isinstance(field.type, str) else field.type.__name__
    try:
        if kind == "tuple":
            if isinstance(value, str):  # as users type it: 64,64,3 or (64, 64, 3)
                value = [_number(part) for part in value.strip("()[] ").split(",") if part.strip()]
            return tuple(value) if isinstance(value, (list, tuple)) else (value,)
        if kind == "float":
            return float(value)
        if kind == "int":
            if isinstance(value, float) and not value.is_integer():
                raise ValueError
            return int(value)
        if kind == "bool | str" and isinstance(value, str) and value.lower() == "auto":
            return "auto"  # jit_compile: True, False or "auto"
        if kind in ("bool", "bool | str"):
            if isinstance(value, str):
                return {"true": True, "false": False}[value.lower()]
            return bool(value)
        if kind == "str":
            return str(value)
    except (ValueError, TypeError, KeyError):
        raise ValueError(f"config field {field.name!r} expects {kind}, got {value!r}") from None
    return value


def _number(text: str):
    text = text.strip()
    try:
        return int(text)
    except ValueError:
        try:
            return float(text)
        except ValueError:
            return text


DCGAN = GANConfig()

PRESETS: dict[str, GANConfig] = {
    # Tutorial 000 (param counts printed there), trained at tutorial 004's batch 32.
    "dcgan": DCGAN,
    # Tutorial 000's generator (856,705 parameters, as served) behind an SN-DCGAN discriminator
    # (spectral norm, hinge loss, no batch norm or dropout: Miyato et al. 2018, Kurach et
    # al. 2019's "SNDCGAN"), an EMA generator and one generator forward per step: half the
    # time per step of `dcgan` and ahead of it for the first minutes, but not better at the
    # full budget in the one run measured (docs/BENCHMARKS.md B7), so not the default.
    "sndcgan": dataclasses.replace(
        DCGAN,
        preset="sndcgan",
        loss="hinge",
        d_spectral_norm=True,
        d_bn_momentum=0.0,
        d_dropout=0.0,
        ema_decay=0.999,
        reuse_fakes=True,
    ),
    # Tutorial 000's DCGAN, the served generator unchanged (856,705 parameters, noise in), with a
    # class head in D that learns the training labels; G is trained to make fakes that head reads
    # confidently as one digit, every digit equally often. Better than `dcgan` in the runs
    # measured (docs/BENCHMARKS.md B8); superseded by the default. Data without labels trains
    # it without the head (gan_pkg.plan).
    "dcgan-aux": dataclasses.replace(DCGAN, preset="dcgan-aux", num_classes=10, class_loss_weight=1.0),
    # The default. Tutorial 000's DCGAN trained as a class-conditional GAN whose label hides in the
    # noise (gan_pkg/class_code.py): the served generator is tutorial 000's (856,705 parameters,
    # noise in), behind a weightless layer that reads the class from the noise; D is cdcgan's
    # (projection and class head). Far ahead of `dcgan` at `dcgan`'s budget (docs/BENCHMARKS.md
    # B9-B12). 10,000 steps: at batch 16 that is the images batch 32 saw in 5,000, and fewer
    # let recall slip under 0.8 in a seed (C7). Both learning rates 3x tutorial 000's and a
    # short-horizon EMA generator exported: far fewer steps to the same FID, so a time-limited
    # run (make demo) ends on good digits (BENCHMARKS.md A6). Batch 16 with one generator
    # forward per step: where the float32 step is at the CPU's roof (AVX2 only) that is twice
    # the updates in the same time; on a bfloat16 CPU it is ahead early and about level after
    # 4 minutes (C6).
    # Data without labels trains tutorial 000's networks without the code and head (gan_pkg.plan),
    # with these rates, EMA and batch.
    "dcgan-classcode": dataclasses.replace(
        DCGAN, preset="dcgan-classcode", conditioning="noise-code", num_classes=10, class_loss_weight=1.0, steps=10000,
        g_learning_rate=6e-4, d_learning_rate=6e-4, ema_decay=0.99, batch_size=16, reuse_fakes=True,
    ),
    # Tutorial 000's DCGAN conditioned on the digit: the label joins G's noise and D's projection
    # head; AC-GAN's class loss beside the projection raised label accuracy and lowered FID
    # (docs/BENCHMARKS.md, B5).
    "cdcgan": dataclasses.replace(DCGAN, preset="cdcgan", conditioning="label", num_classes=10, class_loss_weight=1.0),
    # Colour images at 16-256 px: residual G and D whose widths follow the side (gan_pkg.sizing),
    # D without normalisation, ending in PGGAN's epilogue (the batch's spread as a channel, a conv
    # and a dense layer over its last 4x4 grid), with the default's class code and head where the
    # data has labels, and its optimiser recipe, EMA and batch. DiffAugment for small folders. No
    # gradient penalty: at a CPU's budget the steps it costs are worth more. docs/PRESETS.md says
    # what it was measured against.
    "resnet": dataclasses.replace(
        DCGAN, preset="resnet", architecture="resnet", conditioning="noise-code", num_classes=10, class_loss_weight=1.0,
        image_shape=(32, 32, 3), g_initial_shape=(4, 4, 128), g_filters=(64, 32, 16), d_filters=(16, 32, 64),
        g_bn_momentum=0.9, d_bn_momentum=0.0, d_dropout=0.0, d_head="dense", d_minibatch_std=True,
        augment="color,translation,cutout", g_learning_rate=6e-4, d_learning_rate=6e-4, ema_decay=0.99,
        batch_size=16, reuse_fakes=True, steps=20000,
    ),
    # Tutorial 001: the book's configurable conv GAN, every per-layer list a field.
    "conv": dataclasses.replace(
        DCGAN,
        preset="conv",
        architecture="conv",
        g_initial_shape=(7, 7, 64),
        g_filters=(128, 64, 64),
        g_kernel_sizes=(5, 5, 5, 5),
        g_upsample=(2, 2, 1, 1),
        g_bn_momentum=0.9,
        d_filters=(64, 64, 128, 128),
        d_kernel_sizes=(5, 5, 5, 5),
        d_strides=(2, 2, 2, 1),
        d_bn_momentum=0.0,
        d_activation="relu",
        d_dropout=0.4,
        optimizer="rmsprop",
        d_learning_rate=8e-4,  # the tutorial prints 0.008; the book it follows uses 0.0008
        g_learning_rate=4e-4,
        batch_size=64,
    ),
    # Tutorial 002: dense 256-512-1024-784 / 1024-512-256, label smoothing 0.9.
    "mlp": dataclasses.replace(
        DCGAN,
        preset="mlp",
        architecture="mlp",
        g_filters=(256, 512, 1024),
        g_activation="leaky_relu",
        g_bn_momentum=0.0,
        d_filters=(1024, 512, 256),
        d_dropout=0.3,
        d_bn_momentum=0.0,
        label_smoothing=0.1,
        batch_size=128,
    ),
    # Tutorial 003 section 7.2: uniform [0, 1) noise to N(4, 1.25) vectors of 100.
    "dist1d": dataclasses.replace(
        DCGAN,
        preset="dist1d",
        architecture="dist1d",
        data="normal1d",
        image_shape=(100,),
        latent_dim=100,
        latent_distribution="uniform",
        latent_range=(0.0, 1.0),
        output_range=(),
        g_filters=(50, 50),
        d_filters=(50, 50),
        g_bn_momentum=0.0,
        d_bn_momentum=0.0,
        d_dropout=0.0,
        beta_1=0.9,
        batch_size=1,
        steps=40000,  # 200 stages of 200 epochs in the tutorial
        # Ours, not the tutorial's: at batch 1 the generator's mean swings between
        # about 3.5 and 5.5 from epoch to epoch; the EMA copy stays within 3.8-4.4.
        ema_decay=0.999,
        precision="float32",
    ),
    # Tutorial 003 section 7.3: tanh conv GAN, MaxPooling discriminator, SGD nesterov.
    "conv-tanh": dataclasses.replace(
        DCGAN,
        preset="conv-tanh",
        architecture="conv-tanh",
        latent_dim=10,
        latent_distribution="uniform",
        g_dense_units=(1024,),
        g_initial_shape=(7, 7, 128),
        g_filters=(64,),
        g_kernel_sizes=(5, 5),
        g_upsample=(2, 2),
        g_bn_momentum=0.99,
        g_activation="tanh",
        d_filters=(64, 128),
        d_kernel_sizes=(5, 5),
        d_strides=(1, 1),
        d_dense_units=(1024,),
        d_activation="tanh",
        d_bn_momentum=0.0,
        d_dropout=0.0,
        optimizer="sgd",
        g_learning_rate=5e-4,
        d_learning_rate=5e-4,
        momentum=0.9,
        nesterov=True,
        batch_size=16,
    ),
}


# What `python -m gan_pkg.fit` trains without --preset: tutorial 000's networks with the class
# code, well ahead of tutorial 000's own recipe (docs/BENCHMARKS.md B9-B12).
DEFAULT_PRESET = "dcgan-classcode"


def preset(name: str) -> GANConfig:
    try:
        return PRESETS[name]
    except KeyError:
        raise ValueError(f"unknown preset {name!r}; choose one of: {', '.join(PRESETS)}") from None
