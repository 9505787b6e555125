"""The catalog, the README's data table and the fragment template agree."""

import ast
import re

from froxlor_fleet.model.catalog import DEFAULTS, ROLE_ALIASES, ROLE_SERVICES
from froxlor_fleet.operations.ftpplan import render_fragment
from helpers import TESTS

README = (TESTS.parent / "README.md").read_text()


def test_readme_data_table_mirrors_defaults() -> None:
    rows = dict(re.findall(r"^\| `(\w+)` \| `([^`]*)` \|", README, re.M))
    documented = {key: ast.literal_eval(value) for key, value in rows.items() if key in DEFAULTS}
    assert documented == DEFAULTS


def test_readme_role_table_lists_every_role() -> None:
    roles = set(re.findall(r"^\| `(\w+)` \| ", README, re.M)) - set(DEFAULTS)
    assert roles == set(ROLE_SERVICES) | set(ROLE_ALIASES)


def test_fragment_template() -> None:
    text = render_fragment((50000, 50100))
    lines = text.splitlines()
    assert lines[0].startswith("# Managed by froxlor-fleet") and "do not edit" in lines[0]
    assert [line for line in lines if not line.startswith("#")] == ["PassivePorts 50000 50100"]
    assert text.endswith("\n")
    masq = render_fragment((49152, 65534), "203.0.113.10")
    assert [line for line in masq.splitlines() if not line.startswith("#")] == [
        "PassivePorts 49152 65534", "MasqueradeAddress 203.0.113.10"]
