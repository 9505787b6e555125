"""An inventory shared with other deploys, end to end: through the ``pyinfra`` command
and through ``froxlor-fleet audit``, as an operator runs them (issue 18).

Other deploys' keys (``mysql_root_password``...) are never refused and their values
never printed, by anything this package writes: errors, ``--debug``, the audit's text,
JSON and Prometheus. A near miss of one of our keys stops the run before connecting and
names the key meant, without its value.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from test_cli import Fleet
from test_fleetcheck import (
    WEB,
    Trap,
    assert_stopped_before_connecting,
    assert_went_on_to_connect,
    pyinfra,
    write_fleet,
)

SECRET = "Root-Pa55w0rd-of-another-deploy"
# What other deploys keep in the same group data: every one shares a prefix with a key of
# ours (mysql_, froxlor_, ftp_, firewall_, ssh_allowed_).
FOREIGN = f"""\
mysql_root_password = "{SECRET}"
froxlor_admin_password = "{SECRET}"
froxlor_version = "2.2.5"
ftp_users = [{{"name": "web1ftp", "password": "{SECRET}"}}]
firewall_backend = "nftables"
ssh_allowed_users = ["{SECRET}"]
"""


@pytest.fixture
def trap() -> Iterator[Trap]:
    t = Trap()
    yield t
    t.close()


def test_other_deploys_keys_are_not_refused_nor_printed_by_pyinfra(tmp_path: Path,
                                                                   trap: Trap) -> None:
    write_fleet(tmp_path, trap, {"web_servers": ["web1"]},
                {"web_servers": WEB["web_servers"] + FOREIGN})
    code, out = pyinfra(tmp_path)
    assert_went_on_to_connect(code, out, trap)
    assert SECRET not in out


def test_debug_prints_no_more_of_other_deploys_values_than_pyinfra_itself(
        tmp_path: Path, trap: Trap) -> None:
    """pyinfra's own ``--debug`` logs the group data it loads; the package's pre-connect
    check loads the inventory a second time and must not log it again."""
    write_fleet(tmp_path, trap, {"web_servers": ["web1"]},
                {"web_servers": WEB["web_servers"] + FOREIGN})
    _, with_check = pyinfra(tmp_path, "--debug")
    inventory = tmp_path / "inventory.py"
    inventory.write_text(inventory.read_text().replace("check_fleet(__file__)", ""))
    _, pyinfra_alone = pyinfra(tmp_path, "--debug")
    assert with_check.count(SECRET) == pyinfra_alone.count(SECRET)


def test_a_typo_of_our_key_stops_before_connecting_naming_the_key_meant(
        tmp_path: Path, trap: Trap) -> None:
    write_fleet(tmp_path, trap, {"web_servers": ["web1"]},
                {"web_servers": WEB["web_servers"] + FOREIGN
                 + f'ssh_allowd_sources = ["{SECRET}"]\n'})
    code, out = pyinfra(tmp_path)
    assert_stopped_before_connecting(
        code, out, trap, "host web1 (group web_servers): ssh_allowd_sources: unknown key, "
        "did you mean 'ssh_allowed_sources'?")
    assert SECRET not in out


def test_the_audit_ignores_other_deploys_keys_in_text_json_and_prometheus(
        tmp_path: Path) -> None:
    fleet = Fleet(tmp_path)
    fleet.group_data("group_data", {"web_servers": 'froxlor_roles = ["web"]\n' + FOREIGN})
    prom = tmp_path / "audit.prom"
    for args in ((), ("--json",), ("--prometheus", str(prom))):
        res = fleet.audit(*args)
        assert res.code == 0, res.out
        assert SECRET not in res.out
    assert SECRET not in prom.read_text()


def test_the_audit_names_a_typo_without_its_value(tmp_path: Path) -> None:
    fleet = Fleet(tmp_path)
    fleet.group_data("group_data", {"web_servers": 'froxlor_roles = ["web"]\n' + FOREIGN
                                    + f'msql_allowed_sources = ["{SECRET}"]\n'})
    prom = tmp_path / "audit.prom"
    res = fleet.audit("--json", "--prometheus", str(prom))
    assert res.code == 2
    details = [f["detail"] for f in res.doc["findings"]]
    assert any("msql_allowed_sources: unknown key, did you mean 'mysql_allowed_sources'?" in d
               for d in details), details
    assert SECRET not in res.out and SECRET not in prom.read_text()
