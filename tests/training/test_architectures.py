import numpy as np
import pytest

from gan_pkg import architectures
from gan_pkg import config as config_lib
from gan_pkg.gan import sample_latent


@pytest.mark.parametrize(
    "preset, generator_params, discriminator_params",
    [
        ("dcgan", 856_705, 392_705),  # printed by tutorial 000's summary()
        # Tutorial 000's generator as served; D without batch norm (-768) and with
        # spectral norm's power-iteration vectors (+481, not trained).
        ("sndcgan", 856_705, 392_418),
        # Tutorial 000's networks; D adds a class head (4,096 features x 10 digits + 10 biases).
        ("dcgan-aux", 856_705, 392_705 + 40_970),
        ("dcgan-classcode", 856_705, 392_705 + 40_970 + 40_960),  # + cdcgan's projection rows
        ("mlp", 1_486_352, 1_460_225),  # tutorial 002's dense layers
        ("dist1d", 2_701, 12_651),  # tutorial 003 section 7.2, 50 hidden units
    ],
)
def test_golden_parameter_counts(preset, generator_params, discriminator_params):
    generator, discriminator = architectures.build(config_lib.preset(preset))
    assert generator.count_params() == generator_params
    assert discriminator.count_params() == discriminator_params


@pytest.mark.parametrize("name", sorted(config_lib.PRESETS))
def test_every_preset_maps_noise_to_its_output_shape_and_range(name):
    cfg = config_lib.preset(name)
    generator, discriminator = architectures.build(cfg)
    noise = sample_latent((4, cfg.latent_dim), [0, 0], cfg.latent_distribution, cfg.latent_range)
    classes = cfg.classes
    labels = np.arange(4, dtype="int32") % max(classes.drawn_classes, 1)
    noise = np.asarray(noise)
    condition = (lambda x: [x, labels]) if classes.generator_takes_label else (lambda x: x)  # noqa: E731
    out = np.asarray(generator(condition(noise), training=False))
    condition = (lambda x: [x, labels]) if classes.drawn_classes else (lambda x: x)  # noqa: E731  D: a class code's too
    assert out.shape == (4, *cfg.image_shape)
    assert np.isfinite(out).all()
    if cfg.output_range:
        low, high = cfg.output_range
        assert out.min() >= low and out.max() <= high
    scores = discriminator(condition(out))
    if classes.class_head:  # a class head too: the logits of the data's classes
        scores, class_logits = scores
        assert tuple(class_logits.shape) == (4, classes.label_classes)
    assert tuple(scores.shape) == (4, 1)


def test_filters_come_from_the_config():
    cfg = config_lib.preset("dcgan").replace(g_filters=[16, 8], d_filters=[8, 8, 8, 8])
    generator, discriminator = architectures.build(cfg)
    assert generator.count_params() < 856_705 and discriminator.count_params() < 392_705
    assert generator.output_shape[1:] == (28, 28, 1)


def test_mismatched_sizes_say_which_field_to_fix():
    cfg = config_lib.preset("dcgan").replace(g_upsample=[2, 1, 1])
    with pytest.raises(ValueError, match="g_upsample"):
        architectures.build(cfg)
    with pytest.raises(ValueError, match="d_strides"):
        architectures.build(config_lib.preset("dcgan").replace(d_strides=[2, 2]))
