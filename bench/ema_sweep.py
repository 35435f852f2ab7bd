"""EMA sweep: one training run, its live generator and EMA copies at several decays, each scored.

    python bench/ema_sweep.py [--preset dcgan-classcode] [--set seed=1 ...] [--steps N]
                              [--decays 0.99 0.995 0.999] [--probe-steps 3000 10000 ...]

Trains as `python -m gan_pkg.fit` trains (gan_pkg.training.train: the same callbacks,
checkpoints and pictures, in a fresh `--workdir`) while keeping an exponential moving
average of the generator's weights at each decay, with `ema_decay`'s warm-up and its
standing batch-norm statistics. Averaging never feeds back into training, so one run
answers "what would `--set ema_decay=d` give?" for every d at once. At the end of the
epoch that crosses each probe step (default: the last step) the live generator and every
copy are scored by `gan_pkg.evaluate` (FID, classifier score, precision / recall, classes,
memorisation; 2,000 samples against the held-out split). Prints the CPU, then one
markdown row per (step, generator).
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from gan_pkg.cli import import_tensorflow_quietly

import_tensorflow_quietly()

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402
from train_throughput import cpu_description  # noqa: E402  (bench/ is the script's directory)

from gan_pkg import config as config_lib  # noqa: E402
from gan_pkg import evaluate, runs, training  # noqa: E402
from gan_pkg.gan import update_ema  # noqa: E402
from gan_pkg.plan import plan  # noqa: E402

COLUMNS = ("fid", "kid", "classifier_score", "precision", "recall", "modes_covered", "nn_l1_below_real")
HEADER = "| step | generator | FID | KID | classifier score | precision | recall | classes | memorisation |"


class EMACopies(keras.callbacks.Callback):
    """Averaged copies of the generator, one per decay, updated after every step and
    scored (with the live generator) at the end of each epoch that crosses a probe step."""

    def __init__(self, decays, probe_steps, score):
        super().__init__()
        self.decays, self.probe_steps, self.score = tuple(decays), sorted(probe_steps), score
        self.copies: dict[float, keras.Model] = {}
        self.rows: list[tuple[int, str, dict]] = []

    def on_train_begin(self, logs=None):
        live = self.model.generator
        for decay in self.decays:
            self.copies[decay] = keras.models.clone_model(live)
            self.copies[decay].set_weights(live.get_weights())

        @tf.function
        def update(step):
            for decay, copy in self.copies.items():
                update_ema(copy, live, decay, step)

        self._update = update

    def on_train_batch_end(self, batch, logs=None):
        self._update(self.model.g_optimizer.iterations)

    def on_epoch_end(self, epoch, logs=None):
        step = int(self.model.g_optimizer.iterations.numpy())
        if not self.probe_steps or step < self.probe_steps[0]:
            return
        self.probe_steps = [s for s in self.probe_steps if s > step]
        generators = {"live": self.model.generator}
        for decay, copy in self.copies.items():
            self.model.refresh_ema_statistics(generator=copy)
            generators[f"EMA {decay:g}"] = copy
        for name, generator in generators.items():
            figures = self.score(generator)
            self.rows.append((step, name, figures))
            print(row(step, name, figures), flush=True)


def row(step: int, name: str, figures: dict) -> str:
    cells = [f"{figures[key]:.3f}" if isinstance(figures[key], float) else str(figures[key]) for key in COLUMNS]
    return f"| {step} | {name} | " + " | ".join(cells) + " |"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default=config_lib.DEFAULT_PRESET, choices=sorted(config_lib.PRESETS))
    parser.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE", help="override a config field, as in gan_pkg.fit")
    parser.add_argument("--steps", type=int, help="training steps (default: the preset's)")
    parser.add_argument("--decays", type=float, nargs="+", default=[0.99, 0.995, 0.999], help="EMA decays to keep copies at")
    parser.add_argument("--probe-steps", type=int, nargs="+", help="score at the end of the epochs crossing these steps (default: the last)")
    parser.add_argument("--num-samples", type=int, default=evaluate.DEFAULT_NUM_SAMPLES)
    parser.add_argument("--workdir", help="a fresh run directory (default: a temporary one)")
    args = parser.parse_args(argv)
    config = config_lib.GANConfig.resolve(args.preset, config_lib.parse_assignments(args.set), steps=args.steps)
    if not config.is_image:
        parser.error("the sweep scores images; choose an image preset")
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="ema_sweep_"))
    if runs.list_checkpoints(workdir / runs.CHECKPOINTS):
        parser.error(f"{workdir} holds checkpoints; the copies must start with the run, so give a fresh --workdir")

    print(f"# EMA sweep (TF {tf.__version__}); CPU: {cpu_description()}", flush=True)
    planned = plan(config)
    config, data = planned.config, planned.data

    def score(generator):
        return evaluate.evaluate_generator(evaluate.keras_sample_fn(generator, config), config, args.num_samples, data=data)["generated"]

    copies = EMACopies(args.decays, args.probe_steps or [config.steps], score)
    print(f"{config.preset} {config.steps} steps, seed {config.seed}, workdir {workdir}\n\n{HEADER}\n|---|---|" + "---:|" * len(COLUMNS), flush=True)
    training.train(config, workdir, verbose=0, extra_callbacks=[copies], data=data)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
