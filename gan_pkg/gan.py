"""GAN(keras.Model): one compiled train_step updates D then G.

Shaped after keras-io's `dcgan_overriding_train_step`: generator and
discriminator are injected, `compile` takes one optimizer each, and
`train_step` owns both updates, so nothing toggles `trainable` and no NumPy or
`train_on_batch` sits in the loop (under Keras 3 the tutorials' `trainable` toggling
leaves the discriminator untrained or trains at half speed: docs/PRESETS.md).
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf
from keras import ops

from gan_pkg import augment, fused_norm, losses, runtime
from gan_pkg.class_code import noise_with_class
from gan_pkg.conditioning import Conditioning
from gan_pkg.recipe import LEGACY_COMPILE_ARGS, Recipe


def sample_latent(shape, seed, distribution: str, latent_range=(-1.0, 1.0)):
    """Stateless draw from the latent distribution: same seed, same noise, anywhere.

    Training and the exported `generate` signature both draw through here, so a
    served model samples exactly the distribution it was trained on.
    """
    if distribution == "normal":
        return tf.random.stateless_normal(shape, seed)
    if distribution == "uniform":
        low, high = latent_range
        return tf.random.stateless_uniform(shape, seed, minval=low, maxval=high)
    raise ValueError(f"unknown latent distribution {distribution!r}; use 'normal' or 'uniform'")


def latent_for_seeds(seeds, latent_dim: int, distribution: str, latent_range=(-1.0, 1.0)):
    """One stateless draw per int64 seed: row i depends only on seeds[i].

    What the exported `generate` signature serves and what the evaluator
    samples from a checkpoint, so both see the same noise for the same seeds.
    """
    return tf.map_fn(
        lambda s: sample_latent([latent_dim], tf.stack([s, tf.constant(0, tf.int64)]), distribution, latent_range),
        seeds,
        fn_output_signature=tf.TensorSpec([latent_dim], tf.float32),
    )


def class_rows(num_classes: int, columns: int):
    """Inputs for a grid with one row per class and the same noise down each column:
    (noise row indices, labels), both of length num_classes * columns."""
    return np.tile(np.arange(columns), num_classes), np.repeat(np.arange(num_classes), columns)


def update_ema(averaged: keras.Model, live: keras.Model, decay: float, step):
    """One step of an exponential moving average of `live`'s trainable weights into
    `averaged`, after optimizer step `step` (counting from 1). Warm-up as
    tf.train.ExponentialMovingAverage(num_updates=step): a plain 0.999 would still weigh
    the random initial weights by 0.999**700 = 0.5 at step 700."""
    step = ops.cast(step, "float32")
    decay = ops.minimum(decay, (1.0 + step) / (10.0 + step))
    for average, weight in zip(averaged.trainable_variables, live.trainable_variables):
        average.assign(decay * average + (1.0 - decay) * ops.cast(weight, average.dtype))


def _replica_id():
    context = tf.distribute.get_replica_context()
    return 0 if context is None else context.replica_id_in_sync_group


@keras.saving.register_keras_serializable(package="gan_pkg")
class GAN(keras.Model):
    """Any generator and discriminator, trained as a GAN by one compiled `train_step`.

    `conditioning` (gan_pkg.conditioning) says how classes enter: whether G and D take labels,
    whether the class is coded in the noise, whether D has a class head. `compile` takes the
    two optimizers and a `Recipe` (gan_pkg.recipe): the loss and everything else about how
    the two networks are trained.
    """

    def __init__(
        self,
        generator: keras.Model,
        discriminator: keras.Model,
        latent_dim: int,
        latent_distribution: str = "normal",
        latent_range=(-1.0, 1.0),
        seed: int | None = None,
        conditioning: Conditioning | dict | None = None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.generator = generator
        self.discriminator = discriminator
        self.latent_dim = int(latent_dim)
        self.latent_distribution = latent_distribution
        self.latent_range = tuple(latent_range)
        self.seed = seed
        if isinstance(conditioning, dict):
            conditioning = Conditioning(**conditioning)
        self.conditioning = conditioning or Conditioning()
        self.seed_generator = keras.random.SeedGenerator(seed)
        self.ema_generator = None  # compile makes it when the recipe keeps one
        self.recipe = Recipe()
        names = ("d_loss", "g_loss", "d_acc", "d_real", "d_fake")
        self.trackers = {name: keras.metrics.Mean(name=name) for name in names}
        self.built = True  # both sub-models arrive built

    # -- configuration -----------------------------------------------------
    def get_config(self):
        return {
            **super().get_config(),
            "generator": keras.saving.serialize_keras_object(self.generator),
            "discriminator": keras.saving.serialize_keras_object(self.discriminator),
            "latent_dim": self.latent_dim,
            "latent_distribution": self.latent_distribution,
            "latent_range": list(self.latent_range),
            "seed": self.seed,
            "conditioning": self.conditioning.to_dict(),
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        for key in ("generator", "discriminator"):
            config[key] = keras.saving.deserialize_keras_object(config[key])
        # Checkpoints written before Conditioning and Recipe: the same facts under older keys.
        legacy_ema = config.pop("ema_decay", None)
        if "conditioning" not in config:
            label, code = int(config.pop("num_classes", 0)), int(config.pop("noise_code_classes", 0))
            outputs = config["discriminator"].outputs
            head_classes = int(outputs[1].shape[-1]) if len(outputs) > 1 else 0
            mode = "label" if label else "noise-code" if code else "none"
            config["conditioning"] = Conditioning(mode, label or code or head_classes, bool(head_classes))
        model = cls(**config)
        model._legacy_ema_decay = legacy_ema
        return model

    def compile(self, d_optimizer: keras.optimizers.Optimizer, g_optimizer: keras.optimizers.Optimizer,
                recipe: Recipe | dict | None = None, **kwargs):
        """keras-io's shape: one optimizer per network; `recipe` (default: Recipe()) is how
        they are trained; other keyword arguments go to keras.Model.compile."""
        super().compile(**kwargs)
        fused_norm.use_fused_op(self, not self.jit_compile)
        if keras.mixed_precision.global_policy().name == "mixed_float16":
            # float16 gradients underflow without loss scaling; bfloat16 does not need it.
            wrap = keras.optimizers.LossScaleOptimizer
            d_optimizer = d_optimizer if isinstance(d_optimizer, wrap) else wrap(d_optimizer)
            g_optimizer = g_optimizer if isinstance(g_optimizer, wrap) else wrap(g_optimizer)
        self.d_optimizer = d_optimizer
        self.g_optimizer = g_optimizer
        self.recipe = Recipe.from_dict(recipe) if isinstance(recipe, dict) else (recipe or Recipe())
        self.gan_loss = losses.get(self.recipe.loss)
        # DiffAugment: D sees real and fake images augmented alike, in the D and the G step.
        self.augment_policy = self.recipe.augment_policy
        if self.recipe.ema_decay and self.ema_generator is None:
            # The EMA copy is what gets exported: averaged weights give smoother samples.
            self.ema_generator = keras.models.clone_model(self.generator)
            self.ema_generator.set_weights(self.generator.get_weights())
        self._compile_kwargs = kwargs

    def get_compile_config(self):
        return {
            "d_optimizer": keras.saving.serialize_keras_object(self.d_optimizer),
            "g_optimizer": keras.saving.serialize_keras_object(self.g_optimizer),
            "recipe": self.recipe.to_dict(),
            **self._compile_kwargs,
        }

    def compile_from_config(self, config):
        config = dict(config)
        for key in ("d_optimizer", "g_optimizer"):
            config[key] = keras.saving.deserialize_keras_object(config[key])
        if "recipe" not in config:  # written before the recipe: its fields were compile arguments
            legacy = {field: config.pop(name) for name, field in LEGACY_COMPILE_ARGS.items() if name in config}
            config["recipe"] = Recipe(**legacy, ema_decay=getattr(self, "_legacy_ema_decay", None) or 0.0)
        self.compile(**config)
        self.build_optimizers()

    def build_optimizers(self):
        """Create optimizer slots now: loading a checkpoint, or a tf.distribute
        strategy, needs every variable to exist before the first step."""
        self.d_optimizer.build(self.discriminator.trainable_variables)
        self.g_optimizer.build(self.generator.trainable_variables)

    @property
    def metrics(self):
        return list(self.trackers.values())

    @property
    def inference_generator(self) -> keras.Model:
        """The generator to sample from and export: the EMA copy when kept."""
        return self.ema_generator if self.ema_generator is not None else self.generator

    # -- training ----------------------------------------------------------
    def sample_noise(self, batch_size):
        # One seed per step from the model's SeedGenerator, offset by replica so
        # every replica (and worker) of a tf.distribute strategy draws its own noise.
        seed = self.seed_generator.next()
        seed = seed + ops.cast(ops.convert_to_tensor([0, 1]) * _replica_id(), seed.dtype)
        return sample_latent((batch_size, self.latent_dim), seed, self.latent_distribution, self.latent_range)

    def _step(self, optimizer, loss, tape, variables):
        grads = tape.gradient(optimizer.scale_loss(loss), variables)
        optimizer.apply_gradients(zip(grads, variables))

    def _conditioned(self, x, labels):
        """G's input: x alone, or [x, labels] when G takes a label."""
        return [x, labels] if self.conditioning.generator_takes_label else x

    def _generate(self, noise, labels, training=True):
        if self.conditioning.noise_code:
            noise = noise_with_class(noise, labels, self.conditioning.noise_code)
        return self.generator(self._conditioned(noise, labels), training=training)

    def _discriminate(self, images, labels, training=True):
        """(real/fake logits, class logits or None): a discriminator with a class head has both outputs."""
        outputs = self.discriminator([images, labels] if self.conditioning.drawn_classes else images, training=training)
        return tuple(outputs) if self.conditioning.class_head else (outputs, None)

    def _class_loss(self, class_logits, labels):
        """AC-GAN's auxiliary loss, weighted; 0 for a discriminator without a class head."""
        if class_logits is None:
            return 0.0
        if labels is None:
            raise ValueError("the discriminator has a class head (class_loss_weight) but the batches carry no labels")
        return self.recipe.class_loss_weight * ops.mean(
            keras.losses.sparse_categorical_crossentropy(labels, ops.cast(class_logits, "float32"), from_logits=True)
        )

    def _class_structure_loss(self, class_logits):
        """An unconditional G's class loss, weighted: mean entropy of the head's reading of each
        fake (low: each fake is clearly one class) minus the entropy of the batch's mean reading
        (high: every class equally often), i.e. minus the Inception score's log under D's head."""
        if class_logits is None:
            return 0.0
        probabilities = ops.softmax(ops.cast(class_logits, "float32"), axis=-1)
        entropy = lambda p: -ops.sum(p * ops.log(p + 1e-8), axis=-1)  # noqa: E731
        return self.recipe.class_loss_weight * (ops.mean(entropy(probabilities)) - entropy(ops.mean(probabilities, axis=0)))

    def _augment(self, images):
        """DiffAugment with a fresh draw per call (identity without a policy)."""
        if not self.augment_policy:
            return images
        return augment.diff_augment(images, self.augment_policy, self.seed_generator.next())

    def _gradient_penalties(self, real, fake, labels):
        """Zero-centred penalties, gamma/2 E|grad D|^2, on what D just saw: R1 on the reals, R2 on the
        fakes (both augmented alike). The double backward costs more than the step it regularises, so
        it is taken on one image in every `reg_every`: the saving of StyleGAN2's lazy regularisation
        (every k steps, weighted by k) without a branch in the compiled step, which XLA refuses."""
        recipe = self.recipe
        keep = ops.maximum(1, ops.shape(real)[0] // recipe.reg_every)
        labels = None if labels is None else labels[:keep]
        total = 0.0
        for weight, images in ((recipe.r1_weight, real), (recipe.r2_weight, fake)):
            if weight:
                images = images[:keep]
                with tf.GradientTape() as tape:
                    tape.watch(images)
                    score = ops.sum(ops.cast(self._discriminate(images, labels)[0], "float32"))
                grads = ops.cast(tape.gradient(score, images), "float32")
                total += 0.5 * weight * ops.mean(ops.sum(ops.square(grads), axis=list(range(1, len(images.shape)))))
        return total

    def _d_update(self, real, fake, labels):
        """One discriminator step on real images and (constant) fakes, both of `labels`."""
        real_seen, fake_seen = self._augment(real), self._augment(fake)
        with tf.GradientTape() as tape:
            real_logits, real_classes = self._discriminate(real_seen, labels)
            fake_logits, _ = self._discriminate(fake_seen, labels)
            d_loss = self.gan_loss.d_loss(real_logits, fake_logits, self.recipe.label_smoothing)
            if self.recipe.r1_weight or self.recipe.r2_weight:
                d_loss += self._gradient_penalties(real_seen, fake_seen, labels)
            # D learns the classes from real images only: a fake's label is what G was
            # asked for, not what it drew, and fitting those would reward G's mistakes.
            d_loss += self._class_loss(real_classes, labels)
            if self.gan_loss.needs_gradient_penalty:
                alpha_shape = (ops.shape(real)[0],) + (1,) * (len(real.shape) - 1)
                alpha = keras.random.uniform(alpha_shape, seed=self.seed_generator)
                critic = lambda x, training: self._discriminate(x, labels, training)[0]  # noqa: E731
                d_loss += self.recipe.gp_weight * losses.gradient_penalty(critic, real, ops.cast(fake, "float32"), alpha)
        self._step(self.d_optimizer, d_loss, tape, self.discriminator.trainable_variables)
        return real_logits, fake_logits, d_loss

    def _unpack(self, data):
        """A batch -> (images, labels or None). Fakes are drawn with the real batch's labels,
        so they follow the training data's label distribution."""
        real, labels = (data[0], data[1] if len(data) > 1 else None) if isinstance(data, (tuple, list)) else (data, None)
        if labels is None:
            if self.conditioning.drawn_classes:
                raise ValueError(f"this GAN draws fakes for labels (conditioning={self.conditioning.mode}): batches must be (images, labels)")
            return real, None
        return real, ops.cast(ops.reshape(labels, (-1,)), "int32")

    def fit(self, *args, **kwargs):
        # TensorFlow 2.21's remapper fails on this training graph without XLA (it fuses a
        # discriminator Conv2D+BiasAdd+LeakyRelu whose LeakyReluGrad still reads the BiasAdd),
        # logs an error line and keeps the graph as it was: without it, the same graph, no line.
        with runtime.grappler_remapper(False):
            return super().fit(*args, **kwargs)

    def train_step(self, data):
        real, labels = self._unpack(data)
        batch_size = ops.shape(real)[0]

        # reuse_fakes: the last D step takes the G step's fakes (stop-gradient), so each
        # step runs the generator forward once instead of twice (TF-GAN also scores one
        # generated batch with both losses); G still plays against the updated D.
        reuse_fakes, d_steps = self.recipe.reuse_fakes, self.recipe.d_steps
        for _ in range(d_steps - 1 if reuse_fakes else d_steps):
            fake = self._generate(self.sample_noise(batch_size), labels)
            real_logits, fake_logits, d_loss = self._d_update(real, fake, labels)

        noise = self.sample_noise(batch_size)
        with tf.GradientTape() as tape:
            fake = self._generate(noise, labels)
            if reuse_fakes:
                with tape.stop_recording():
                    real_logits, fake_logits, d_loss = self._d_update(real, tf.stop_gradient(fake), labels)
            g_logits, fake_classes = self._discriminate(self._augment(fake), labels)
            if self.gan_loss.relativistic:
                # Paired with the reals' scores of this step's D update (they do not depend on G).
                g_loss = self.gan_loss.g_loss(g_logits, tf.stop_gradient(real_logits))
            else:
                g_loss = self.gan_loss.g_loss(g_logits)
            if self.conditioning.drawn_classes:
                g_loss += self._class_loss(fake_classes, labels)
            else:
                g_loss += self._class_structure_loss(fake_classes)
        self._step(self.g_optimizer, g_loss, tape, self.generator.trainable_variables)
        if self.ema_generator is not None:
            self._update_ema()

        correct = ops.concatenate([ops.cast(real_logits > 0, "float32"), ops.cast(fake_logits < 0, "float32")])
        updates = {
            "d_loss": d_loss,
            "g_loss": g_loss,
            "d_acc": correct,
            "d_real": ops.sigmoid(real_logits),
            "d_fake": ops.sigmoid(fake_logits),
        }
        for name, value in updates.items():
            self.trackers[name].update_state(value)
        logs = {name: tracker.result() for name, tracker in self.trackers.items()}
        if isinstance(tf.distribute.get_strategy(), tf.distribute.MultiWorkerMirroredStrategy):
            # Keras reduces each log across workers along axis 0, which 0-d tensors lack.
            logs = {name: ops.reshape(value, (1,)) for name, value in logs.items()}
        return logs

    def _update_ema(self):
        update_ema(self.ema_generator, self.generator, self.recipe.ema_decay, self.g_optimizer.iterations)
        # Batch-norm statistics are not averaged: refresh_ema_statistics measures them.

    def refresh_ema_statistics(self, num_samples: int = 512, generator: keras.Model | None = None):
        """Measure the EMA generator's batch-norm statistics on its own weights (BigGAN's
        "standing statistics"). The live generator's running means belong to the live
        weights; paired with the averaged weights they shift every activation and blur
        the samples. One forward of `num_samples` fixed noise in training mode, with
        momentum 0, sets each moving mean/variance to that batch's. Called at the end of
        every epoch (callbacks.EMAStatistics), before anything samples. `generator`: another
        averaged copy of this GAN's generator to measure instead (bench/ema_sweep.py)."""
        generator = generator if generator is not None else self.ema_generator
        if generator is None:
            return
        norms = [layer for layer in generator._flatten_layers() if isinstance(layer, keras.layers.BatchNormalization)]
        if not norms:
            return
        noise = sample_latent((num_samples, self.latent_dim), [self.seed or 0, 1], self.latent_distribution, self.latent_range)
        classes = self.conditioning.label_input_classes
        labels = ops.arange(num_samples) % classes if classes else None
        momenta = [norm.momentum for norm in norms]
        try:
            for norm in norms:
                norm.momentum = 0.0
            generator(self._conditioned(noise, labels), training=True)
        finally:
            for norm, momentum in zip(norms, momenta):
                norm.momentum = momentum

    def call(self, inputs, training=False):
        """noise (or [noise, labels] when conditional) -> samples of the inference generator."""
        return self.inference_generator(inputs, training=training)

    def generate(self, num: int, seed: int = 0, labels=None):
        """`num` samples from fixed noise (same seed, same images); a conditional GAN draws
        `labels` (default: 0, 1, ..., num_classes-1, 0, 1, ...)."""
        noise = sample_latent((num, self.latent_dim), [seed, 0], self.latent_distribution, self.latent_range)
        classes = self.conditioning.label_input_classes
        if classes and labels is None:
            labels = tf.range(num) % classes
        return self.sample(noise, labels)

    def sample(self, noise, labels=None):
        """The inference generator on `noise` (and `labels`, for a conditional GAN)."""
        labels = tf.cast(labels, tf.int32) if self.conditioning.generator_takes_label else None
        return self.inference_generator(self._conditioned(noise, labels), training=False)
