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

from froxlor_fleet.audit.fact import LISTENING_SECTION
from froxlor_fleet.model.plan import NOT_MANAGED
from test_cli import SS_WEB, Fleet
from test_fleetcheck import (
    WEB,
    Trap,
    assert_stopped_before_connecting,
    assert_went_on_to_connect,
    pyinfra,
    write_fleet,
)
from test_sources import FAKE_INVENTORY, audit_fleet, dry_diff, state_lines

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


# --- hosts of other deploys: no froxlor_roles in their data ------------------------------
#
# A shared inventory holds hosts that are not froxlor servers (a monitoring box, a mail
# relay of another team). A run without --limit must leave them as they are: before,
# they got UFW with SSH only, which cut whatever else they serve.

MONITORING = FAKE_INVENTORY.replace("check_fleet(__file__)",
                                    'monitoring = ["@canned/mon1"]\ncheck_fleet(__file__)')
MON1 = {"mon1": state_lines("10.0.7.1")}


def test_a_host_without_froxlor_roles_is_left_alone_without_a_command(tmp_path: Path) -> None:
    out, commands = dry_diff(tmp_path, inventory=MONITORING, more_hosts=MON1)
    assert "@canned/mon1" not in commands  # not even the state read
    assert sorted(set(commands)) == ["@canned/db1", "@canned/web1", "@canned/web2"]
    assert f"[@canned/mon1] {NOT_MANAGED}" in out
    assert not [line for line in out.splitlines() if "[@canned/mon1]" in line and "allow" in line]


def test_froxlor_roles_empty_is_a_managed_host_with_ssh_only(tmp_path: Path) -> None:
    out, commands = dry_diff(tmp_path, inventory=MONITORING, more_hosts=MON1,
                             more_data={"monitoring": "froxlor_roles = []\n"})
    assert commands.count("@canned/mon1") == 1  # its state read
    assert NOT_MANAGED not in out


def test_a_host_without_roles_is_read_when_a_group_it_is_in_is_a_source(tmp_path: Path) -> None:
    """Its own addresses count, as for any member: one read-only command, no change."""
    out, commands = dry_diff(tmp_path, inventory=MONITORING, more_hosts=MON1, more_data={
        "db_servers": 'froxlor_roles = ["mysql"]\nmysql_allowed_sources = ["@monitoring"]\n'})
    assert commands.count("@canned/mon1") == 1
    assert "+ allow 3306/tcp from 10.0.7.1  (mysql)" in out
    assert f"[@canned/mon1] {NOT_MANAGED}" in out


def _audit_with_monitoring(tmp_path: Path, db_sources: str = "@web_servers") -> Fleet:
    fleet = audit_fleet(tmp_path, db_data=f'mysql_allowed_sources = ["{db_sources}"]\n')
    (tmp_path / "inventory.py").write_text(MONITORING)
    fleet.hosts["mon1"] = {"lines": [*MON1["mon1"], LISTENING_SECTION, *SS_WEB]}
    return fleet


def test_the_audit_leaves_out_hosts_without_froxlor_roles_and_says_so(tmp_path: Path) -> None:
    fleet = _audit_with_monitoring(tmp_path)
    text = fleet.audit()  # (the canned hosts drift: web1's facts stand in for db1's)
    assert ("not audited, no froxlor_roles in their data (not managed by froxlor-fleet): "
            "@canned/mon1") in text.out
    doc = fleet.audit("--json").doc
    assert doc["not_managed"] == ["@canned/mon1"]
    assert [h["host"] for h in doc["hosts"]] == ["@canned/web1", "@canned/web2", "@canned/db1"]
    assert "@canned/mon1" not in {c["host"] for c in fleet.commands()}


def test_the_audit_reads_such_a_host_when_a_group_it_is_in_is_a_source(tmp_path: Path) -> None:
    fleet = _audit_with_monitoring(tmp_path, db_sources="@monitoring")
    doc = fleet.audit("--json").doc
    assert doc["not_managed"] == ["@canned/mon1"]
    assert "@canned/mon1" not in [h["host"] for h in doc["hosts"]]
    db1 = next(h for h in doc["hosts"] if h["host"] == "@canned/db1")
    assert [(g["group"], g["addresses"]) for g in db1["source_groups"]] == [
        ("monitoring", ["10.0.7.1"])]
    assert "@canned/mon1" in {c["host"] for c in fleet.commands()}
