"""keras-tuner HyperModel: hyperparameters -> GANConfig -> trained GAN -> val_fid.

`build(hp)` maps the searched values onto the preset's config and builds the
GAN; `fit(hp, model, ...)` trains it with `training.train` (keras-tuner's own
callbacks ride along) and returns `val_fid`, the objective keras-tuner minimises,
with `val_kid` and `val_swd` beside it, measured as `python -m gan_pkg.fit
--val-fid-every` measures them (callbacks.ValFID). Data with no feature space
(unlabelled images, no InceptionV3 weights) has no FID: its trials are ranked by
`val_swd`, and `GANHyperModel.objective` says which one a tuner must minimise.
"""

from __future__ import annotations

import dataclasses
import tempfile
import time
from pathlib import Path

import keras_tuner as kt

from gan_pkg import callbacks as callbacks_lib
from gan_pkg import features, runtime, training
from gan_pkg.config import LR_SCHEDULES, GANConfig

# The recipe options --tune-recipe searches (image presets): DiffAugment policies, spectral
# norm in D, learning-rate schedules, an EMA generator and, with labels, the class loss's weight.
AUGMENT_CHOICES = ["", "translation", "translation,cutout", "color,translation,cutout"]
EMA_CHOICES = [0.0, 0.999]
CLASS_LOSS_WEIGHT_CHOICES = [0.0, 0.5, 1.0]  # only where the data's labels are in use

OBJECTIVE = kt.Objective("val_fid", direction="min")
SWD_OBJECTIVE = kt.Objective("val_swd", direction="min")  # for data without a feature space


def scaled(filters: tuple, first: int) -> tuple:
    """Keep the preset's layer-to-layer ratios, with `first` filters up front."""
    return tuple(max(1, round(f * first / filters[0])) for f in filters)


class GANHyperModel(kt.HyperModel):
    def __init__(self, base: GANConfig, runs_dir: str | Path, num_eval_samples: int = 1000, tune_batch_size: bool = False,
                 tune_recipe: bool = False, data=None):
        """`base`: a planned config (gan_pkg.plan), `data` its plan's data (None: each trial plans and checks)."""
        super().__init__(name=f"gan-{base.preset}", tunable=True)
        if tune_recipe and not base.is_image:
            raise ValueError(f"--tune-recipe searches image training options; preset {base.preset!r} makes 1-D samples")
        self.base = base
        self.runs_dir = Path(runs_dir)
        self.num_eval_samples = num_eval_samples
        self.tune_batch_size = tune_batch_size
        self.tune_recipe = tune_recipe
        self.data = data
        # The objective's feature space, chosen once so every trial is scored in the same one;
        # none for the data: trials are ranked by SWD, which needs none.
        self.features, self.features_missing = None, None
        if base.is_image and data is not None:
            try:
                self.features = features.feature_space(base, data, store=self.runs_dir)
            except features.FeatureSpaceUnavailable as error:
                self.features_missing = str(error)
        self.objective = SWD_OBJECTIVE if self.features_missing else OBJECTIVE

    def config_for(self, hp: kt.HyperParameters) -> GANConfig:
        base = self.base
        g_first = hp.Choice("g_filters", sorted({max(8, base.g_filters[0] // 2), base.g_filters[0], base.g_filters[0] * 2}))
        d_first = hp.Choice("d_filters", sorted({max(8, base.d_filters[0] // 2), base.d_filters[0], base.d_filters[0] * 2}))
        changes = dict(
            g_filters=scaled(base.g_filters, g_first),
            d_filters=scaled(base.d_filters, d_first),
            g_learning_rate=hp.Float("g_learning_rate", 5e-5, 2e-3, sampling="log", default=base.g_learning_rate),
            d_learning_rate=hp.Float("d_learning_rate", 5e-5, 2e-3, sampling="log", default=base.d_learning_rate),
        )
        if self.tune_batch_size:
            changes["batch_size"] = hp.Choice("batch_size", [16, 32, 64], default=base.batch_size)
            changes["beta_1"] = hp.Float("beta_1", 0.0, 0.9, step=0.1, default=base.beta_1)
        if self.tune_recipe:
            changes["augment"] = hp.Choice("augment", AUGMENT_CHOICES, default=base.augment if base.augment in AUGMENT_CHOICES else "")
            changes["d_spectral_norm"] = hp.Boolean("d_spectral_norm", default=base.d_spectral_norm)
            changes["lr_schedule"] = hp.Choice("lr_schedule", list(LR_SCHEDULES), default=base.lr_schedule)
            changes["ema_decay"] = hp.Choice("ema_decay", EMA_CHOICES, default=base.ema_decay if base.ema_decay in EMA_CHOICES else 0.0)
            classes = base.classes
            if classes.label_classes:  # labelled training: the class loss's weight
                # (with conditioning none the class head is the only use of the classes, so 0 is not a choice)
                weights = CLASS_LOSS_WEIGHT_CHOICES if classes.drawn_classes else [w for w in CLASS_LOSS_WEIGHT_CHOICES if w]
                default = base.class_loss_weight if base.class_loss_weight in weights else weights[-1]
                changes["class_loss_weight"] = hp.Choice("class_loss_weight", weights, default=default)
        return dataclasses.replace(base, **changes)

    def build(self, hp: kt.HyperParameters):
        config = self.config_for(hp)
        with runtime.dtype_policy(runtime.resolve_precision(config.precision)):
            return training.build_gan(config)

    def fit(self, hp, model, *args, epochs=None, initial_epoch=0, callbacks=(), verbose=1, **kwargs):
        """Train and score one trial. Hyperband passes epochs/initial_epoch and
        has already loaded the earlier trial's weights into `model`."""
        config = self.config_for(hp)
        if epochs:
            config = dataclasses.replace(config, epochs=max(1, epochs - initial_epoch))
        self.runs_dir.mkdir(parents=True, exist_ok=True)
        workdir = tempfile.mkdtemp(prefix="trial-", dir=self.runs_dir)
        started = time.monotonic()
        # verbose=None: train() picks a live bar on a terminal, a line per epoch in logs.
        result = training.train(config, workdir, verbose=None if verbose else 0, extra_callbacks=list(callbacks), model=model, data=self.data)
        # The same val_fid as `fit --val-fid-every` logs (callbacks.ValFID): one implementation.
        scorer = callbacks_lib.ValFID(config, data=result.data, features=self.features, num_samples=self.num_eval_samples)
        scorer.set_model(result.model)
        return {
            **scorer.compute(),
            "seconds": time.monotonic() - started,
        }
