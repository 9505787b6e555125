"""Sources from the inventory (issue 18): a source may name an inventory group
("@web_servers"), checked before pyinfra connects and resolved to the members'
addresses at deploy time and in the audit, by one resolver (``model/groups.py``); and
``dns_transfer_sources``: who may reach 53/tcp (zone transfers) on a dns host."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from pyinfra.api import Config, FunctionCommand, Host, State
from pyinfra.api.state import StateStage
from pyinfra.context import ctx_host, ctx_inventory, ctx_state

from froxlor_fleet import deploys
from froxlor_fleet.audit.fact import LISTENING_SECTION
from froxlor_fleet.facts import host_state
from froxlor_fleet.model.groups import NO_ADDRESS, NOT_IN_RUN, Member, resolve_groups
from froxlor_fleet.operations import ftp, ufw
from helpers import addrs_from_ip, build_fact, make_inventory
from test_cli import SCHEMA, SS_WEB, Fleet
from test_diff import Capture, log  # noqa: F401 (the fixture)
from test_fleetcheck import (
    Trap,
    assert_stopped_before_connecting,
    assert_went_on_to_connect,
    pyinfra,
    write_fleet,
    write_group_data,
)
from test_validation import errors, one_error, plan_of, plans, ports

# --- dns_transfer_sources ---------------------------------------------------------------


def test_dns_transfer_sources_admit_53_tcp_from_them_only_and_53_udp_stays_open() -> None:
    plan = plan_of({"froxlor_roles": ["dns"],
                    "dns_transfer_sources": ["192.0.2.53/32", "2001:db8::53"]})
    assert {p for p in ports(plan) if p[3] == "dns"} == {
        ("53", "tcp", "192.0.2.53", "dns"), ("53", "tcp", "2001:db8::53", "dns"),
        ("53", "udp", None, "dns")}


def test_dns_transfer_sources_default_to_anywhere() -> None:
    plan = plan_of({"froxlor_roles": ["dns"]})
    assert {p for p in ports(plan) if p[3] == "dns"} == {
        ("53", "tcp", None, "dns"), ("53", "udp", None, "dns")}


def test_dns_transfer_sources_are_checked_like_other_sources() -> None:
    line = one_error({"froxlor_roles": ["dns"], "dns_transfer_sources": ["10.0.0.300"]})
    assert line.startswith("host web1 (group web_servers): dns_transfer_sources = ")
    assert "not a valid IP address" in line
    assert "must be a list" in one_error({"froxlor_roles": ["dns"],
                                          "dns_transfer_sources": "10.0.0.1"})


def test_dns_transfer_sources_are_ours_and_a_near_miss_is_named() -> None:
    line = one_error({"froxlor_roles": ["dns"], "dns_transfer_source": ["10.0.0.1"]})
    assert "dns_transfer_source: unknown key, did you mean 'dns_transfer_sources'?" in line
    assert "10.0.0.1" not in line


def test_dns_transfer_sources_without_the_dns_role_are_ignored() -> None:
    # like mysql_allowed_sources: all.py may set it for every host
    assert plans({"web_servers": (["web1"], {"froxlor_roles": ["web"]})},
                 all_data={"dns_transfer_sources": ["10.0.0.1"]})["web1"]


# --- sources naming an inventory group: checked before connecting ------------------------

FLEET = {"web_servers": (["web1", "web2"], {"froxlor_roles": ["web"]}),
         "dns_servers": (["ns1", "ns2"], {"froxlor_roles": ["dns"]})}


def db(data: dict, **groups) -> dict:
    return {**FLEET, "db_servers": (["db1"], {"froxlor_roles": ["mysql"], **data}), **groups}


def db_errors(data: dict, **groups) -> list[str]:
    return [line for line in errors(db(data, **groups)) if line.startswith("host db1")]


def test_every_sources_key_may_name_a_group_and_the_plan_says_where() -> None:
    plan = plans(db({
        "mysql_allowed_sources": ["@web_servers", "10.9.0.0/16"],
        "ssh_allowed_sources": ["@web_servers"],
        "froxlor_roles": ["mysql", "dns"], "dns_transfer_sources": ["@dns_servers"],
        "firewall_extra_rules": [{"port": 9100, "sources": ["@web_servers", "192.0.2.9"]}]}),
        all_data={"ssh_allowed_sources": ["198.51.100.0/24"]})["db1"]
    assert {p for p in ports(plan) if p[2] and p[2].startswith("@")} == {
        ("3306", "tcp", "@web_servers", "mysql"), ("22", "tcp", "@web_servers", "ssh"),
        ("53", "tcp", "@dns_servers", "dns"), ("9100", "tcp", "@web_servers", "extra")}
    assert [(g.key, g.group, g.where) for g in plan.source_groups] == [
        ("dns_transfer_sources", "dns_servers", "group db_servers"),
        ("mysql_allowed_sources", "web_servers", "group db_servers"),
        ("ssh_allowed_sources", "web_servers", "group db_servers"),
        ("firewall_extra_rules", "web_servers", "group db_servers")]


@pytest.mark.parametrize("value,needle", [
    ("@web_server", "unknown inventory group 'web_server', did you mean 'web_servers'?"),
    ("@frontends", "unknown inventory group 'frontends' (groups: db_servers, dns_servers, "
                   "web_servers)"),
    ("@web-servers", "a group's name is a Python identifier"),
    ("@", "a group's name is a Python identifier"),
    ("@old_servers", "inventory group 'old_servers' has no hosts"),
])
def test_a_group_that_is_unknown_or_empty_is_one_line_naming_host_group_key_and_value(
        value: str, needle: str) -> None:
    for key, data in (("mysql_allowed_sources", {"mysql_allowed_sources": [value]}),
                      ("firewall_extra_rules", {"mysql_allowed_sources": ["10.0.0.0/8"],
                                                "firewall_extra_rules": [
                                                    {"port": 9100, "sources": [value]}]})):
        found = db_errors(data, old_servers=([], {"froxlor_roles": ["web"]}))
        assert len(found) == 1, found
        assert found[0].startswith(f"host db1 (group db_servers): {key} = ")
        assert repr(value) in found[0] and needle in found[0], found[0]


def test_an_empty_group_is_named_also_when_it_only_has_group_data() -> None:
    # group_data/old_servers.py and no host in it: pyinfra knows the group, empty
    inventory_groups = {**FLEET, "old_servers": ([], {})}
    found = db_errors({"mysql_allowed_sources": ["@old_servers"]}, **inventory_groups)
    assert len(found) == 1 and "has no hosts" in found[0]


def test_the_group_named_after_the_inventory_file_is_a_group_too() -> None:
    plan = plans(db({"mysql_allowed_sources": ["@production"]},
                    production=(["web1", "web2", "ns1", "ns2", "db1"], {})))["db1"]
    assert ("3306", "tcp", "@production", "mysql") in ports(plan)


@pytest.fixture
def trap() -> Iterator[Trap]:
    """test_fleetcheck's: a port that counts connection attempts (nothing runs here)."""
    listener = Trap()
    yield listener
    listener.close()


def test_an_unknown_group_stops_the_pyinfra_run_before_it_connects(tmp_path: Path,
                                                                   trap: Trap) -> None:
    write_fleet(tmp_path, trap, {"web_servers": ["web1"], "db_servers": ["db1"]}, {
        "web_servers": 'froxlor_roles = ["web"]\n',
        "db_servers": 'froxlor_roles = ["mysql"]\nmysql_allowed_sources = ["@web_server"]\n'})
    assert_stopped_before_connecting(
        *pyinfra(tmp_path), trap,
        "host db1 (group db_servers): mysql_allowed_sources = ['@web_server']: unknown "
        "inventory group 'web_server', did you mean 'web_servers'?")


def test_a_known_group_lets_the_pyinfra_run_connect(tmp_path: Path, trap: Trap) -> None:
    write_fleet(tmp_path, trap, {"web_servers": ["web1"], "db_servers": ["db1"]}, {
        "web_servers": 'froxlor_roles = ["web"]\n',
        "db_servers": 'froxlor_roles = ["mysql"]\nmysql_allowed_sources = ["@web_servers"]\n'})
    assert_went_on_to_connect(*pyinfra(tmp_path), trap)


# --- the resolver (model/groups.py): one for the deploy and the audit --------------------

WEB1 = Member("web1", "web1.example.net", ("10.0.0.5", "fd00::5"))
WEB2 = Member("web2", "10.0.0.6", ("10.0.0.6", "10.0.1.6"))
ALONE = Member("web3", "web3.example.net", None)  # not in this run, reached by name


def db_plan(**data):
    base = {"froxlor_roles": ["mysql"], "mysql_allowed_sources": ["@web_servers"]}
    return plans(db({**base, **data}))["db1"]


def test_a_group_becomes_its_members_addresses_as_ufw_stores_them() -> None:
    resolved = resolve_groups(db_plan(), {"web_servers": [WEB1, WEB2]})
    assert resolved.errors == ()
    assert [r.source for r in resolved.plan.rules if r.label == "mysql"] == [
        "10.0.0.5", "10.0.0.6", "10.0.1.6", "fd00::5"]
    assert resolved.plan.source_groups == ()
    (web,) = resolved.groups
    assert web.describe() == "@web_servers = 10.0.0.5, 10.0.0.6, 10.0.1.6, fd00::5"


def test_a_member_outside_the_run_adds_its_connection_address_only_if_it_is_an_ip() -> None:
    outside = Member("web2", "10.0.0.6", None)
    resolved = resolve_groups(db_plan(), {"web_servers": [WEB1, outside, ALONE]})
    assert [r.source for r in resolved.plan.rules if r.label == "mysql"] == [
        "10.0.0.5", "10.0.0.6", "fd00::5"]
    (web,) = resolved.groups
    assert [host for host, _ in web.unknown] == ["web3"]
    assert web.describe() == ("@web_servers = 10.0.0.5, 10.0.0.6, fd00::5 (no address known: "
                              "web3 is not in this run and pyinfra reaches it by name)")


@pytest.mark.parametrize("address", ["127.0.0.1", "::1", "fe80::1", "0.0.0.0", "224.0.0.1",
                                     "::ffff:10.0.0.9", "fe80::1%eth0", "nonsense"])
def test_addresses_no_other_host_connects_from_are_left_out(address: str) -> None:
    members = [Member("web1", address, (address, "10.0.0.5"))]
    resolved = resolve_groups(db_plan(), {"web_servers": members})
    assert [r.source for r in resolved.plan.rules if r.label == "mysql"] == ["10.0.0.5"]


def test_a_group_with_no_address_at_all_is_the_hosts_error_one_line() -> None:
    resolved = resolve_groups(db_plan(), {"web_servers": [ALONE, Member("web4", "web4", ())]})
    assert resolved.errors == (
        "host db1 (group db_servers): mysql_allowed_sources = '@web_servers': no address of "
        "group web_servers is known: web3 is not in this run and pyinfra reaches it by name; "
        "web4 has no global address",)
    assert not [r for r in resolved.plan.rules if r.label == "mysql"]


def test_ipv6_addresses_of_a_group_are_left_out_where_ufw_has_ipv6_off() -> None:
    resolved = resolve_groups(db_plan(), {"web_servers": [WEB1]}, ipv6=False)
    assert [r.source for r in resolved.plan.rules if r.label == "mysql"] == ["10.0.0.5"]
    assert resolved.groups[0].describe() == (
        "@web_servers = 10.0.0.5 (IPV6=no here: fd00::5 left out)")
    only_v6 = Member("web1", "fd00::5", ("fd00::5",))
    assert resolve_groups(db_plan(), {"web_servers": [only_v6]}, ipv6=False).errors


def test_every_key_and_extra_rules_resolve_and_literals_stay() -> None:
    plan = db_plan(ssh_allowed_sources=["@web_servers", "198.51.100.0/24"],
                   firewall_extra_rules=[{"port": 9100, "sources": ["@web_servers"],
                                          "comment": "node exporter"}])
    resolved = resolve_groups(plan, {"web_servers": [WEB2]})
    assert {(r.dport, r.source, r.label, r.note) for r in resolved.plan.rules
            if r.source} == {
        ("3306", "10.0.0.6", "mysql", ""), ("3306", "10.0.1.6", "mysql", ""),
        ("22", "10.0.0.6", "ssh", ""), ("22", "10.0.1.6", "ssh", ""),
        ("22", "198.51.100.0/24", "ssh", ""),
        ("9100", "10.0.0.6", "extra", "node exporter"), ("9100", "10.0.1.6", "extra", "node exporter")}


def test_a_group_address_that_another_rule_acts_on_otherwise_is_the_hosts_error() -> None:
    plan = db_plan(mysql_allowed_sources=["10.0.0.6"],
                   firewall_extra_rules=[{"port": 3306, "action": "deny",
                                          "sources": ["@web_servers"]}])
    resolved = resolve_groups(plan, {"web_servers": [WEB2]})
    (line,) = resolved.errors
    assert line.startswith("host db1 (group db_servers): firewall_extra_rules = '@web_servers': ")
    assert "deny on exactly the rule the 'mysql' role allows (3306/tcp from 10.0.0.6)" in line


def test_a_plan_without_groups_is_left_as_it_is() -> None:
    plan = plans(db({"mysql_allowed_sources": ["10.0.0.0/8"]}))["db1"]
    resolved = resolve_groups(plan, {})
    assert resolved.plan == plan and resolved.groups == () and resolved.errors == ()


# --- the deploy: resolves at deploy time, shows it under --diff, fails the host ----------

def state_lines(*addresses: str) -> list[str]:
    """A converged web host's state read, with its own addresses (the addrs section, as
    state.sh writes it: an address a line, then its flags)."""
    return build_fact({"scenario": "converged-web-ftp", "addrs": list(addresses)})


FLEET_FACTS = {"web1": state_lines("10.0.0.5", "fd00::5", "fe80::5"),
               "web2": state_lines("10.0.0.6"),
               "db1": state_lines("10.0.9.1")}
WEB_DB = {"web_servers": (["web1", ("web2", {"ssh_hostname": "10.0.0.6"})],
                          {"froxlor_roles": ["web"]}),
          "db_servers": (["db1"], {"froxlor_roles": ["mysql"],
                                   "mysql_allowed_sources": ["@web_servers"]})}


@pytest.fixture
def messages(request: pytest.FixtureRequest) -> Capture:
    """test_diff's ``log`` fixture: pyinfra's logger, captured."""
    captured: Capture = request.getfixturevalue("log")
    return captured


def said(messages: Capture, level: int) -> list[str]:
    """What pyinfra logged at ``level``, host prefixes without their padding."""
    return [re.sub(r"^(\[[^]]+\]) +", r"\1 ", text) for text in messages.texts(level)]


class DeployRun:
    """The packaged deploy on ``host`` of a small fleet, as pyinfra runs it after
    connecting to ``in_run`` (the others: outside --limit). Every host answers the state
    fact from ``FLEET_FACTS``; ``reads`` lists each read, ``calls`` each operation's
    keyword arguments (the operations are recorded, not run)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, in_run: tuple[str, ...],
                 groups: dict | None = None, host: str = "db1") -> None:
        self.inventory = make_inventory(groups or WEB_DB)
        config = Config()
        config.DIFF = True
        self.state = State(self.inventory, config)
        self.state.current_stage = StateStage.Prepare
        for member in self.inventory:
            if member.name in in_run:
                self.state.activate_host(member)
        self.reads: list[str] = []
        self.calls: dict[str, list[dict]] = {}
        self.host = self.inventory.get_host(host)
        runner = self

        def get_fact(member: Host, cls: type, *args: object, **kwargs: object) -> object:
            assert member in runner.state.active_hosts, f"read {member.name} outside the run"
            runner.reads.append(member.name)
            return cls().process(list(FLEET_FACTS[member.name]))

        monkeypatch.setattr(Host, "get_fact", get_fact)
        for module, name in ((ftp, "ready_for_ftp"), (ufw, "rules_and_policies"),
                             (ftp, "passive_ports_fragment"), (ftp, "passive_port_range")):
            monkeypatch.setattr(module, name, lambda _name=name, **kw: self.calls.setdefault(
                _name, []).append(kw))
        with self.context():
            deploys.froxlor_firewall._inner()

    @contextmanager
    def context(self) -> Iterator[None]:
        with ctx_state.use(self.state), ctx_inventory.use(self.inventory), \
                ctx_host.use(self.host):
            yield

    def ufw_call(self) -> dict:
        (kwargs,) = self.calls["rules_and_policies"]
        return {k: v for k, v in kwargs.items() if k != "name"}

    def ufw_commands(self, monkeypatch: pytest.MonkeyPatch) -> list[object]:
        """The real UFW operation with what the deploy gave it, on the same host."""
        monkeypatch.undo()
        with self.context():
            return list(ufw.rules_and_policies._inner(**self.ufw_call()))


def test_the_deploy_reads_the_members_in_the_run_once_and_opens_3306_to_them(
        monkeypatch: pytest.MonkeyPatch, messages: Capture) -> None:
    run = DeployRun(monkeypatch, in_run=("web1", "web2", "db1"))
    mysql = [r.source for r in run.ufw_call()["rules"] if r.label == "mysql"]
    assert mysql == ["10.0.0.5", "10.0.0.6", "fd00::5"]
    assert sorted(run.reads) == ["db1", "web1", "web2"]  # one state read per host
    run.ufw_commands(monkeypatch)
    texts = said(messages, logging.INFO)
    assert "[db1] sources from the inventory: @web_servers = 10.0.0.5, 10.0.0.6, fd00::5" in texts
    assert "  + allow 3306/tcp from 10.0.0.5  (mysql)" in texts
    assert "  - allow 3306/tcp from 10.0.0.0/8" not in texts


def test_a_group_stands_for_every_address_its_members_hold_temporary_ones_too(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """web1's own addresses as its state read gives them (state.sh on a real-looking
    ``ip -o addr show``): a temporary (privacy) address is one web1 connects from, a
    deprecated or tentative one is still web1's, so 3306 admits them all; one that failed
    duplicate address detection is another host's, and link-local is no source at all.
    (The probe tries only those customers reach: test_probe.)"""
    tail = "\\       valid_lft forever preferred_lft forever\n"
    ip = "".join(line + tail for line in (
        "2: eth0    inet 10.0.0.5/24 brd 10.0.0.255 scope global eth0",
        "2: eth0    inet6 2001:db8::99/64 scope global temporary dynamic ",
        "2: eth0    inet6 fd00::5/64 scope global ",
        "2: eth0    inet6 2001:db8::98/64 scope global deprecated dynamic ",
        "2: eth0    inet6 2001:db8::97/64 scope global tentative ",
        "2: eth0    inet6 fd00::bad/64 scope global tentative dadfailed ",
        "2: eth0    inet6 fe80::5/64 scope link ",
    ))
    monkeypatch.setitem(FLEET_FACTS, "web1", state_lines(*addrs_from_ip(ip, tmp_path)))
    run = DeployRun(monkeypatch, in_run=("web1", "web2", "db1"))
    assert [r.source for r in run.ufw_call()["rules"] if r.label == "mysql"] == [
        "10.0.0.5", "10.0.0.6", "2001:db8::97", "2001:db8::98", "2001:db8::99", "fd00::5"]


def test_members_outside_the_run_are_never_read_and_add_only_an_ip_they_are_reached_by(
        monkeypatch: pytest.MonkeyPatch, messages: Capture) -> None:
    run = DeployRun(monkeypatch, in_run=("db1",))  # --limit db1
    assert run.reads == ["db1"]
    assert [r.source for r in run.ufw_call()["rules"] if r.label == "mysql"] == ["10.0.0.6"]
    assert ("[db1] @web_servers = 10.0.0.6 (no address known: web1 is not in this run and "
            "pyinfra reaches it by name)") in said(messages, logging.WARNING)


def test_a_group_without_any_address_fails_that_host_only_unchanged(
        monkeypatch: pytest.MonkeyPatch, messages: Capture) -> None:
    groups = {**WEB_DB, "web_servers": (["web1"], {"froxlor_roles": ["web"]})}
    run = DeployRun(monkeypatch, in_run=("db1",), groups=groups)
    why = ("host db1 (group db_servers): mysql_allowed_sources = '@web_servers': no address "
           "of group web_servers is known: web1 is not in this run and pyinfra reaches it by name")
    assert run.ufw_call()["refusal"] == why
    assert "passive_ports_fragment" not in run.calls and "passive_port_range" not in run.calls
    (command,) = run.ufw_commands(monkeypatch)  # the one command: it fails this host
    assert isinstance(command, FunctionCommand) and command.args == (why,)
    assert f"[db1] will fail: {why}" in said(messages, logging.WARNING)


def test_a_member_read_for_another_hosts_deploy_is_not_read_again(
        monkeypatch: pytest.MonkeyPatch) -> None:
    run = DeployRun(monkeypatch, in_run=("web1", "web2", "db1"))
    web1 = run.inventory.get_host("web1")
    with ctx_state.use(run.state), ctx_inventory.use(run.inventory), ctx_host.use(web1):
        host_state(web1)  # web1's own deploy, later in the run
        assert run.reads.count("web1") == 1
        # ...unless its deploy reads with other connector arguments (sudo): then the
        # earlier read, made without them, is not taken for its own
        with web1.deploy("froxlor firewall", {"_sudo": True}, None):  # type: ignore[arg-type]
            host_state(web1)
        assert run.reads.count("web1") == 2


# --- end to end: pyinfra --dry --diff on canned hosts (tests/fakeconn, as test_cli) --------

FAKE_INVENTORY = """\
from froxlor_fleet.fleetcheck import check_fleet
web_servers = ["@canned/web1", ("@canned/web2", {"ssh_hostname": "10.0.0.6"})]
db_servers = ["@canned/db1"]
check_fleet(__file__)
"""


def dry_diff(tmp_path: Path, *args: str, inventory: str = FAKE_INVENTORY,
             more_hosts: dict[str, list[str]] | None = None,
             more_data: dict[str, str] | None = None) -> tuple[str, list[str]]:
    """``pyinfra inventory.py deploy.py --dry --diff``: its output (host prefixes
    without padding, colours off) and the hosts each command ran on. ``more_hosts``:
    canned hosts beside ``FLEET_FACTS`` (name -> state lines), ``more_data``: group
    data files beside web_servers' and db_servers' (group -> text)."""
    import json
    import os
    import subprocess
    import sys

    from test_cli import FAKECONN, ROOT

    (tmp_path / "inventory.py").write_text(inventory)
    write_group_data(tmp_path / "group_data", {
        "web_servers": 'froxlor_roles = ["web"]\n',
        "db_servers": 'froxlor_roles = ["mysql"]\nmysql_allowed_sources = ["@web_servers"]\n',
        **(more_data or {})})
    (tmp_path / "fleet.json").write_text(json.dumps(
        {name: {"lines": lines} for name, lines in {**FLEET_FACTS, **(more_hosts or {})}.items()}))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), str(FAKECONN)]),
               CANNED_FLEET=str(tmp_path / "fleet.json"),
               CANNED_FLEET_LOG=str(tmp_path / "commands.log"), NO_COLOR="1")
    res = subprocess.run([sys.executable, "-m", "pyinfra", "inventory.py",
                          str(ROOT / "examples" / "deploy.py"), "--dry", "--diff", *args],
                         cwd=tmp_path, capture_output=True, text=True, env=env, timeout=120)
    out = res.stdout + res.stderr
    assert res.returncode == 0 and "Traceback" not in out, out
    ran = (tmp_path / "commands.log").read_text().splitlines()
    text = re.sub(r"\x1b\[[0-9;]*m", "", out)
    return re.sub(r"(\[@canned/\w+\]) +", r"\1 ", text), [json.loads(line)["host"] for line in ran]


def test_dry_diff_shows_what_a_group_became_and_reads_each_host_once(tmp_path: Path) -> None:
    out, commands = dry_diff(tmp_path)
    assert ("[@canned/db1] sources from the inventory: @web_servers = 10.0.0.5, 10.0.0.6, "
            "fd00::5") in out
    for address in ("10.0.0.5", "10.0.0.6", "fd00::5"):
        assert f"+ allow 3306/tcp from {address}  (mysql)" in out
    assert sorted(commands) == ["@canned/db1", "@canned/web1", "@canned/web2"]


def test_dry_diff_with_limit_never_contacts_the_members_outside_it(tmp_path: Path) -> None:
    out, commands = dry_diff(tmp_path, "--limit", "@canned/db1")
    assert commands == ["@canned/db1"]
    assert ("[@canned/db1] sources from the inventory: @web_servers = 10.0.0.6 (no address "
            "known: @canned/web1 is not in this run and pyinfra reaches it by name)") in out
    assert "+ allow 3306/tcp from 10.0.0.6  (mysql)" in out
    assert "from 10.0.0.5" not in out


def test_dry_diff_says_a_host_whose_group_has_no_address_will_fail(tmp_path: Path) -> None:
    by_name = FAKE_INVENTORY.replace('("@canned/web2", {"ssh_hostname": "10.0.0.6"})',
                                     '"@canned/web2"')
    out, commands = dry_diff(tmp_path, "--limit", "db_servers", inventory=by_name)
    assert commands == ["@canned/db1"]
    assert ("[@canned/db1] will fail: host @canned/db1 (group db_servers): "
            "mysql_allowed_sources = '@web_servers': no address of group web_servers is "
            "known: @canned/web1 and @canned/web2 are not in this run and pyinfra reaches "
            "them by name") in out
    assert "3306" not in out


# --- the audit: the same resolver, its facts, shown in its report and JSON ----------------

def audit_fleet(tmp_path: Path, db_data: str = 'mysql_allowed_sources = ["@web_servers"]\n',
                ) -> Fleet:
    """test_cli's fleet of canned hosts: web1, web2 (reached at 10.0.0.6) and db1."""
    fleet = Fleet(tmp_path)
    (tmp_path / "inventory.py").write_text(FAKE_INVENTORY)
    fleet.group_data("group_data", {"web_servers": 'froxlor_roles = ["web"]\n',
                                    "db_servers": f'froxlor_roles = ["mysql"]\n{db_data}'})
    fleet.hosts = {name: {"lines": [*lines, LISTENING_SECTION, *SS_WEB]}
                   for name, lines in FLEET_FACTS.items()}
    return fleet


def test_the_audit_resolves_groups_from_the_hosts_it_read_and_shows_it(tmp_path: Path) -> None:
    fleet = audit_fleet(tmp_path)
    res = fleet.audit("--json")
    db1 = next(h for h in res.doc["hosts"] if h["host"] == "@canned/db1")  # schema-checked
    assert db1["source_groups"] == [{"group": "web_servers",
                                     "addresses": ["10.0.0.5", "10.0.0.6", "fd00::5"],
                                     "unknown": [], "ipv6_left_out": []}]
    missing = {f["detail"] for f in res.doc["findings"]
               if f["host"] == "@canned/db1" and f["kind"] == "missing_rule"}
    assert missing == {f"missing rule allow 3306/tcp from {a} (mysql)"
                       for a in ("10.0.0.5", "10.0.0.6", "fd00::5")}
    assert sorted(c["host"] for c in fleet.commands()) == [
        "@canned/db1", "@canned/web1", "@canned/web2"]  # each read once
    web1 = next(h for h in res.doc["hosts"] if h["host"] == "@canned/web1")
    assert "source_groups" not in web1  # its data names no group
    text = fleet.audit().stdout
    assert ("sources from the inventory:\n  @canned/db1: @web_servers = 10.0.0.5, 10.0.0.6, "
            "fd00::5") in text


def test_the_audit_with_limit_resolves_like_the_deploy(tmp_path: Path) -> None:
    fleet = audit_fleet(tmp_path)
    res = fleet.audit("--json", "--limit", "@canned/db1")
    (db1,) = res.doc["hosts"]
    assert db1["source_groups"] == [{"group": "web_servers", "addresses": ["10.0.0.6"],
                                     "unknown": [{"host": "@canned/web1",
                                                  "why": "not_in_run"}],
                                     "ipv6_left_out": []}]
    assert [c["host"] for c in fleet.commands()] == ["@canned/db1"]


def test_a_group_without_any_address_is_the_audited_hosts_data_error(tmp_path: Path) -> None:
    fleet = audit_fleet(tmp_path, 'mysql_allowed_sources = ["@web_servers", "10.9.0.0/16"]\n')
    (tmp_path / "inventory.py").write_text(FAKE_INVENTORY.replace(
        '("@canned/web2", {"ssh_hostname": "10.0.0.6"})', '"@canned/web2"'))
    res = fleet.audit("--json", "--limit", "db_servers")
    assert res.code == 2
    (db1,) = res.doc["hosts"]
    assert db1["verdict"] == "error"
    errors = [f["detail"] for f in res.doc["findings"] if f["kind"] == "data_error"]
    assert errors == ["host @canned/db1 (group db_servers): mysql_allowed_sources = "
                      "'@web_servers': no address of group web_servers is known: "
                      "@canned/web1 and @canned/web2 are not in this run and pyinfra reaches "
                      "them by name"]


def test_source_groups_is_an_optional_field_of_the_audit_schema() -> None:
    host = SCHEMA["$defs"]["host"]
    assert "source_groups" in host["properties"] and "source_groups" not in host["required"]
    item = host["properties"]["source_groups"]["items"]
    why = item["properties"]["unknown"]["items"]["properties"]["why"]["enum"]
    assert set(why) == {NOT_IN_RUN, NO_ADDRESS}


def test_an_unknown_group_lists_only_groups_a_source_can_name(tmp_path: Path) -> None:
    # a connector's group ("@canned") is no name a source can give
    fleet = audit_fleet(tmp_path, 'mysql_allowed_sources = ["@frontends"]\n')
    res = fleet.audit("--json")
    (line,) = [f["detail"] for f in res.doc["findings"] if f["kind"] == "data_error"]
    assert line.endswith("unknown inventory group 'frontends' (groups: db_servers, "
                         "inventory, web_servers)"), line
