import dataclasses

import pytest

from gan_pkg import config as config_lib
from gan_pkg import runtime
from gan_pkg.config import GANConfig


@pytest.mark.parametrize("name", sorted(config_lib.PRESETS))
def test_every_preset_round_trips_through_json(name):
    cfg = config_lib.preset(name)
    assert GANConfig.from_json(cfg.to_json()) == cfg
    assert cfg.preset == name


def test_presets_carry_their_seeds_training_rules():
    assert config_lib.preset("dcgan").optimizer == "adam" and config_lib.preset("dcgan").beta_1 == 0.5
    assert config_lib.preset("conv").optimizer == "rmsprop"
    assert config_lib.preset("mlp").label_smoothing == pytest.approx(0.1)  # real target 0.9
    dist = config_lib.preset("dist1d")
    assert (dist.latent_distribution, dist.latent_range, dist.beta_1) == ("uniform", (0.0, 1.0), 0.9)
    tanh = config_lib.preset("conv-tanh")
    assert (tanh.optimizer, tanh.nesterov, tanh.latent_dim, tanh.latent_distribution) == ("sgd", True, 10, "uniform")


def test_sndcgan_keeps_seed_000s_generator_and_dcgan_keeps_seed_000s_recipe():
    from gan_pkg import fit

    assert fit.parse_args([]).preset == config_lib.DEFAULT_PRESET == "dcgan-classcode"
    # The default is tutorial 000's networks plus the class code, the class head, 10,000 steps
    # (docs/BENCHMARKS.md B12, C7), 3x the learning rates and an EMA generator (A6), half the batch
    # with one generator forward per step (C6), nothing else.
    default = config_lib.preset(config_lib.DEFAULT_PRESET)
    assert (default.steps, config_lib.preset("dcgan").steps) == (10000, 3000)
    assert (default.g_learning_rate, default.d_learning_rate, default.ema_decay) == (6e-4, 6e-4, 0.99)
    assert (default.batch_size, default.reuse_fakes, config_lib.preset("dcgan").batch_size) == (16, True, 32)
    seed_000 = default.replace(preset="dcgan", conditioning="none", num_classes=0, class_loss_weight=0.0, steps=3000,
                               g_learning_rate=2e-4, d_learning_rate=2e-4, ema_decay=0.0, batch_size=32, reuse_fakes=False)
    assert seed_000 == config_lib.preset("dcgan")
    fast, seed = config_lib.preset("sndcgan"), config_lib.preset("dcgan")
    generator_fields = [f for f in GANConfig.__dataclass_fields__ if f.startswith(("g_", "latent")) and f != "g_learning_rate"]
    assert all(getattr(fast, f) == getattr(seed, f) for f in generator_fields)
    assert (fast.loss, fast.d_spectral_norm, fast.d_bn_momentum, fast.d_dropout) == ("hinge", True, 0.0, 0.0)
    assert (fast.ema_decay, fast.reuse_fakes) == (0.999, True)
    assert (seed.loss, seed.d_spectral_norm, seed.d_bn_momentum, seed.d_dropout, seed.ema_decay, seed.reuse_fakes) == ("bce", False, 0.8, 0.25, 0.0, False)


def test_set_flags_parse_json_values_and_bare_strings():
    values = config_lib.parse_assignments(["g_filters=[64, 32]", "optimizer=rmsprop", "g-learning-rate=1e-3", "jit_compile=true"])
    cfg = GANConfig.resolve("dcgan", values)
    assert cfg.g_filters == (64, 32) and cfg.optimizer == "rmsprop"
    assert cfg.g_learning_rate == 1e-3 and cfg.jit_compile is True


def test_jit_compile_auto_turns_xla_on_only_for_float32_steps_on_one_cpu_device():
    assert GANConfig().jit_compile == "auto"
    assert GANConfig.resolve("dcgan", config_lib.parse_assignments(["jit_compile=auto"])).jit_compile == "auto"
    assert GANConfig.from_json(GANConfig().to_json()).jit_compile == "auto"
    assert runtime.resolve_jit_compile("auto", "float32") is True  # measured 1.3-1.5x on AVX2-only CPUs
    assert runtime.resolve_jit_compile("auto", "mixed_bfloat16") is False  # measured slower on AMX
    assert runtime.resolve_jit_compile("auto", "float32", "mirrored") is False
    assert runtime.resolve_jit_compile(False, "float32") is False and runtime.resolve_jit_compile(True, "mixed_bfloat16") is True


@pytest.mark.parametrize("item", ["nosuch=1", "g_filters", "batch_size=1.5", "jit_compile=maybe"])
def test_set_flags_reject_bad_assignments_with_the_field_named(item):
    with pytest.raises(ValueError) as error:
        GANConfig.resolve("dcgan", config_lib.parse_assignments([item]))
    assert item.split("=")[0] in str(error.value)


def test_unknown_preset_lists_the_choices():
    with pytest.raises(ValueError, match="dcgan"):
        config_lib.preset("nope")


def test_from_dict_rejects_unknown_fields():
    values = dataclasses.asdict(config_lib.preset("dcgan"))
    values["bogus"] = 1
    with pytest.raises(ValueError, match="bogus"):
        GANConfig.from_dict(values)


def test_resolve_applies_values_then_the_budget():
    cfg = GANConfig.resolve("conv", {"epochs": 3, "batch_size": 16, "g_filters": [8, 4, 4]}, steps=50)
    assert (cfg.preset, cfg.optimizer) == ("conv", "rmsprop")  # the preset's own rules stay
    assert (cfg.steps, cfg.epochs, cfg.batch_size, cfg.g_filters) == (50, 0, 16, (8, 4, 4))  # steps clear epochs
    assert GANConfig.resolve("dcgan", epochs=2).epochs == 2


@pytest.mark.parametrize("values, steps, message", [({"batch_size": 0}, None, "batch-size must be at least 1"),
                                                    ({}, 0, "steps must be at least 1"),
                                                    ({"max_trials": 4}, None, "max_trials")])
def test_resolve_refuses_what_cannot_train(values, steps, message):
    with pytest.raises(ValueError, match=message):
        GANConfig.resolve("dcgan", values, steps=steps)
