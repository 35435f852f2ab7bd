"""docs/CONFIG.md, generated from GANConfig's own field metadata so it cannot go stale.

    python -m gan_pkg.config_docs > docs/CONFIG.md

tests/config/test_config_docs.py fails when the file and this output differ.
"""

from __future__ import annotations

import dataclasses
import json

from gan_pkg.config import DCGAN, DEFAULT_PRESET, PRESETS, GANConfig

# The heading above each group of fields, keyed by the group's first field (in declaration order).
SECTIONS = {
    "preset": "What is trained on what",
    "image_shape": "Shapes (settled by the plan from the data)",
    "num_classes": "Classes",
    "g_dense_units": "Generator",
    "d_filters": "Discriminator",
    "optimizer": "Optimisation",
    "loss": "Training recipe",
    "batch_size": "Budget",
    "precision": "Execution",
}

HEADER = """# Configuration

Every run is one `GANConfig` (gan_pkg/config.py): a preset, then the values you
change. From the command line, `--set field=value` (repeatable; values parse as
JSON, anything else is a string: `--set g_filters=[64,32]`, `--set loss=hinge`,
`--set image_shape=64,64,3`); `--steps`, `--epochs`, `--batch-size`,
`--image-size`, `--channels`, `--resize` and `--data` are shortcuts for their
fields. From Python, `GANConfig.resolve(preset, {field: value})`; from TFX,
`custom_config` and the Tuner's hyperparameters. `python -m gan_pkg.fit
--print-config` prints the resolved config as JSON.

This file is generated: `python -m gan_pkg.config_docs > docs/CONFIG.md`.
"""


def _json(value) -> str:
    return json.dumps(list(value) if isinstance(value, tuple) else value)


def field_docs() -> str:
    lines = []
    for field in dataclasses.fields(GANConfig):
        if field.name in SECTIONS:
            lines += ["", f"## {SECTIONS[field.name]}", "", "| field | default | what it does |", "|---|---|---|"]
        doc = field.metadata["doc"].replace("|", "\\|")
        lines.append(f"| `{field.name}` | `{_json(field.default)}` | {doc} |")
    return "\n".join(lines)


def preset_docs() -> str:
    lines = [
        "",
        "## Presets",
        "",
        f"Each preset is the default config (`dcgan`, tutorial 000) with these fields changed; "
        f"`{DEFAULT_PRESET}` is what `python -m gan_pkg.fit` trains without `--preset`.",
        "",
        "| preset | fields changed from `dcgan` |",
        "|---|---|",
    ]
    for name, config in PRESETS.items():
        changed = [
            f"`{f.name}={_json(getattr(config, f.name))}`"
            for f in dataclasses.fields(config)
            if f.name != "preset" and getattr(config, f.name) != getattr(DCGAN, f.name)
        ]
        lines.append(f"| `{name}` | {', '.join(changed) or '(none)'} |")
    return "\n".join(lines)


def markdown() -> str:
    return HEADER + field_docs() + "\n" + preset_docs() + "\n"


def main() -> int:
    print(markdown(), end="")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
