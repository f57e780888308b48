"""docs/configuration.md stays true: its full tree is exactly the validated defaults."""

import json
import re
from pathlib import Path

import yaml

from controlplane.config import FlotillaConfig

DOC = Path(__file__).resolve().parents[2] / "docs" / "configuration.md"


def test_documented_tree_equals_the_defaults():
    block = re.search(r"## The full tree with its defaults\s+```yaml\n(.*?)```", DOC.read_text(), re.DOTALL).group(1)
    documented = yaml.safe_load(block)
    assert FlotillaConfig.model_validate(documented) == FlotillaConfig()
    assert documented == json.loads(FlotillaConfig().model_dump_json())
