"""docs/CONFIG.md lists every config field and nothing else, as the config documents itself."""

import dataclasses
import re
from pathlib import Path

from gan_pkg import config_docs
from gan_pkg.config import GANConfig

CONFIG_MD = Path(__file__).resolve().parents[2] / "docs" / "CONFIG.md"


def test_config_md_is_what_the_config_generates():
    assert CONFIG_MD.read_text() == config_docs.markdown(), "regenerate: python -m gan_pkg.config_docs > docs/CONFIG.md"


def test_every_field_is_documented_in_config_md_and_every_documented_field_exists():
    fields = {field.name for field in dataclasses.fields(GANConfig)}
    fields_part = CONFIG_MD.read_text().split("\n## Presets\n")[0]
    documented = set(re.findall(r"^\| `(\w+)` \| `", fields_part, flags=re.MULTILINE))
    assert documented == fields
    assert all(field.metadata.get("doc") for field in dataclasses.fields(GANConfig))


def test_every_section_heading_names_a_field():
    fields = [field.name for field in dataclasses.fields(GANConfig)]
    assert set(config_docs.SECTIONS) <= set(fields)
    assert fields[0] in config_docs.SECTIONS  # no field sits above the first heading
