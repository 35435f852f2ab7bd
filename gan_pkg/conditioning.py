"""How classes enter a GAN, as one object every part asks instead of testing field combinations.

Three config fields say it all (gan_pkg.config):
- `conditioning`: how a fake's class enters: "none"; "label" (G takes the label beside its
  noise, and so does every signature of the export); "noise-code" (the class is coded in the
  noise, gan_pkg.class_code, and the served generator takes noise only);
- `num_classes`: how many classes (the data's, settled by gan_pkg.plan);
- `class_loss_weight`: > 0 gives D a class head that learns the real images' labels (AC-GAN,
  Odena et al. 2017), that weight in D's and G's losses. With conditioning "none" it is the
  only use of the labels: G is trained to make fakes the head reads confidently as one
  class, every class equally often.
"""

from __future__ import annotations

import dataclasses

NONE, LABEL, NOISE_CODE = "none", "label", "noise-code"
MODES = (NONE, LABEL, NOISE_CODE)
# Fields configs and checkpoints written before `conditioning` existed used instead.
LEGACY_FIELDS = ("aux_classes", "aux_class_weight", "noise_class_code")


@dataclasses.dataclass(frozen=True)
class Conditioning:
    mode: str = NONE
    classes: int = 0
    class_head: bool = False

    @classmethod
    def of(cls, config) -> "Conditioning":
        return cls(config.conditioning, config.num_classes, config.class_loss_weight > 0)

    @property
    def generator_takes_label(self) -> bool:
        """G (and every signature of its export) takes [noise, label]."""
        return self.mode == LABEL

    @property
    def label_input_classes(self) -> int:
        """The classes a served `label` ranges over; 0 when the export takes no label."""
        return self.classes if self.mode == LABEL else 0

    @property
    def noise_code(self) -> int:
        """Classes coded in the noise's first values; 0 when the noise carries no class."""
        return self.classes if self.mode == NOISE_CODE else 0

    @property
    def drawn_classes(self) -> int:
        """Classes each fake is drawn for, which D is conditioned on (projection); 0: fakes have no class."""
        return self.classes if self.mode != NONE else 0

    @property
    def uses_labels(self) -> bool:
        """Training reads the data's labels: fakes are drawn for a class, or D's class head learns them."""
        return self.mode != NONE or self.class_head

    @property
    def label_classes(self) -> int:
        """Classes the training labels range over; 0 when training needs no labels."""
        return self.classes if self.uses_labels else 0

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def problem(self, is_image: bool) -> str | None:
        """What is inconsistent, in one line, or None. `classes` may still be 0 where labels are
        used: gan_pkg.plan sets it to the data's count."""
        if self.mode not in MODES:
            return f"conditioning must be one of {', '.join(MODES)}, got {self.mode!r}"
        if self.classes < 0 or self.classes == 1:
            return f"num_classes must be 0 (from the data) or at least 2, got {self.classes}"
        if self.classes and not self.uses_labels:
            return (f"num_classes={self.classes} has no use with conditioning=none and class_loss_weight 0: "
                    "set conditioning=label (or noise-code), or class_loss_weight > 0 for a class head")
        if self.uses_labels and not is_image:
            return "1-D presets make samples that carry no class: conditioning must be none and class_loss_weight 0"
        return None

    def unsized(self) -> str | None:
        """Why no network can be built yet (labels used, their count not settled), or None."""
        if self.uses_labels and self.classes < 2:
            return f"conditioning={self.mode} (class_loss_weight > 0: {self.class_head}) needs num_classes >= 2; plan the config with its data first (gan_pkg.plan)"
        return None


def from_legacy(values: dict) -> dict:
    """A config dict written before `conditioning` (num_classes for a label-conditional G,
    aux_classes/aux_class_weight for a class head, noise_class_code for the class in the
    noise) in today's three fields."""
    if not set(LEGACY_FIELDS) & set(values):
        return values
    values = dict(values)
    weight = float(values.pop("aux_class_weight", 0.0) or 0.0)
    head_classes = int(values.pop("aux_classes", 0) or 0)
    in_noise = bool(values.pop("noise_class_code", False))
    if values.get("num_classes"):
        values["conditioning"] = LABEL
    elif in_noise:
        values.update(conditioning=NOISE_CODE, num_classes=head_classes)
    else:
        values.update(conditioning=NONE, num_classes=head_classes if weight else 0)
    values["class_loss_weight"] = weight
    return values
