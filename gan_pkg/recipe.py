"""How a GAN trains, as one object: `GAN.compile(d_optimizer, g_optimizer, recipe=Recipe(...))`
takes it and the checkpoint stores it as one dict, so a new training option is its field here
and its use in gan_pkg.gan, nothing else. Each field is the config field of the same name
(gan_pkg.config documents them); `Recipe.of(config)` picks them."""

from __future__ import annotations

import dataclasses

from gan_pkg import losses
from gan_pkg.config import parse_augment_policy

# The compile arguments checkpoints written before the recipe held, and today's field for each.
LEGACY_COMPILE_ARGS = {
    "loss": "loss",
    "label_smoothing": "label_smoothing",
    "d_steps": "d_steps",
    "gp_weight": "gp_weight",
    "reuse_fakes": "reuse_fakes",
    "augment_policy": "augment",
    "aux_class_weight": "class_loss_weight",
}


@dataclasses.dataclass(frozen=True)
class Recipe:
    loss: str = "bce"
    label_smoothing: float = 0.0
    gp_weight: float = 10.0
    d_steps: int = 1
    reuse_fakes: bool = False
    augment: str = ""
    class_loss_weight: float = 0.0
    ema_decay: float = 0.0
    r1_weight: float = 0.0
    r2_weight: float = 0.0
    reg_every: int = 1

    def __post_init__(self):
        losses.get(self.loss)  # unknown names fail here, not in the first step
        parse_augment_policy(self.augment)
        if self.reg_every < 1:
            raise ValueError(f"reg_every must be at least 1 (the penalties on every image), got {self.reg_every}")

    @classmethod
    def of(cls, config) -> "Recipe":
        return cls(**{field.name: getattr(config, field.name) for field in dataclasses.fields(cls)})

    @classmethod
    def from_dict(cls, values: dict) -> "Recipe":
        return cls(**values)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @property
    def augment_policy(self) -> tuple[str, ...]:
        return parse_augment_policy(self.augment)
