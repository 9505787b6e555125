"""Sources that name an inventory group, end to end on the namespace lab (issue 18): the
database admits the web servers by ``mysql_allowed_sources = ["@web_servers"]``, zone
transfers come only from ``dns_transfer_sources``; what a group stands for is the
members' addresses as the hosts themselves report them (IPv4 and IPv6, a new address
included on the next run), shown in ``--dry --diff``; a misspelt group stops the run
before any host is contacted."""

from __future__ import annotations

import pytest

from conftest import results
from froxlor_fleet.model.plan import NOT_MANAGED
from lab.access import COMMAND_LOG
from labtools import assert_no_change, connect, reset_ufw, start_listener, stop_listener
from test_3_audit import audit_json

PIDFILE = "/run/fxt-groups-listener.pid"
EXTRA = "10.213.78.150"  # a second address on a web server (the lab's subnet)


def _hosts(lab) -> tuple[list[str], str, str, str]:
    webs = lab.by_kind("web")
    return webs, lab.by_kind("db")[0], lab.by_kind("dns")[0], lab.by_kind("mail")[0]


def _connect_from(lab, name: str, ip: str, port: int, source: str | None = None) -> str:
    """A TCP connect from lab host ``name`` (optionally from one of its addresses)."""
    bind = f", source_address=('{source}', 0)" if source else ""
    probe = (f"import socket\ntry:\n socket.create_connection(('{ip}', {port}), timeout=1.5{bind})"
             "\n print('connected')\nexcept OSError as e:\n print(type(e).__name__)")
    return lab.sh(name, f"python3 -c \"{probe}\"", check=False).stdout.strip()


def _ip6(lab, name: str) -> str:
    return lab.hosts[name]["ip6"]


@pytest.fixture
def grouped(lab):
    """db admits @web_servers on 3306; dns admits zone transfers from @db_servers only."""
    webs, db, dns, _ = _hosts(lab)
    lab.write_group_data("db_servers", 'froxlor_roles = ["mysql"]\n'
                                       'mysql_allowed_sources = ["@web_servers"]\n')
    lab.write_group_data("dns_servers", 'froxlor_roles = ["dns"]\n'
                                        'dns_transfer_sources = ["@db_servers"]\n')
    procs = {name: start_listener(lab, name, ["3306", "53"], PIDFILE) for name in (db, dns)}
    yield
    for name, proc in procs.items():
        stop_listener(lab, name, proc, PIDFILE)
    for web in webs:
        lab.sh(web, f"ip addr del {EXTRA}/24 dev eth0", check=False)


def test_01_the_preview_shows_what_a_group_stands_for(lab, grouped) -> None:
    webs, db, _, _ = _hosts(lab)
    before = lab.state_files()
    res = lab.deploy("--dry", "--diff")
    assert res.returncode == 0, res.out
    said = [x for x in res.out.splitlines() if "sources from the inventory: @web_servers =" in x]
    assert said, res.out
    for web in webs:  # each member's IPv4 and IPv6 address, as the host reports them
        assert lab.ip(web) in said[0] and _ip6(lab, web) in said[0], said
    assert any(f"@db_servers = {lab.ip(db)}" in x for x in res.out.splitlines()), res.out
    assert lab.state_files() == before  # a preview touches nothing


def test_02_the_rollout_admits_the_group_and_nobody_else(lab, grouped) -> None:
    webs, db, dns, mail = _hosts(lab)
    res = lab.deploy("-y")
    assert res.returncode == 0, res.out
    added = "\n".join(lab.show_added(db))
    for web in webs:
        for address in (lab.ip(web), _ip6(lab, web)):
            assert f"allow from {address} to any port 3306 proto tcp" in added, added
    # real connections: every web server reaches MySQL, the mail server and the control
    # side do not
    for web in webs:
        assert _connect_from(lab, web, lab.ip(db), 3306) == "connected"
    assert _connect_from(lab, mail, lab.ip(db), 3306) == "TimeoutError"
    assert connect(lab.ip(db), 3306, timeout=1.0) == "timeout"
    # zone transfers (53/tcp) from the db server only; 53/udp stays open to anywhere
    assert _connect_from(lab, db, lab.ip(dns), 53) == "connected"
    assert _connect_from(lab, webs[0], lab.ip(dns), 53) == "TimeoutError"
    dns_rules = "\n".join(lab.show_added(dns))
    assert f"allow from {lab.ip(db)} to any port 53 proto tcp" in dns_rules, dns_rules
    assert "allow 53/udp" in dns_rules, dns_rules
    assert_no_change(lab.deploy("-y"))  # converged: the second run changes nothing


def test_03_a_members_new_address_is_admitted_on_the_next_run(lab, grouped) -> None:
    webs, db, _, _ = _hosts(lab)
    assert lab.deploy("-y").returncode == 0
    lab.sh(webs[0], f"ip addr add {EXTRA}/24 dev eth0")
    assert _connect_from(lab, webs[0], lab.ip(db), 3306, source=EXTRA) == "TimeoutError"
    res = lab.deploy("-y")
    assert res.returncode == 0, res.out
    assert f"allow from {EXTRA} to any port 3306 proto tcp" in "\n".join(lab.show_added(db))
    assert _connect_from(lab, webs[0], lab.ip(db), 3306, source=EXTRA) == "connected"
    lab.sh(webs[0], f"ip addr del {EXTRA}/24 dev eth0")
    res = lab.deploy("-y")
    assert res.returncode == 0, res.out
    assert EXTRA not in "\n".join(lab.show_added(db))  # gone with the address


def test_04_a_misspelt_group_stops_the_run_before_any_host(lab, grouped) -> None:
    lab.write_group_data("db_servers", 'froxlor_roles = ["mysql"]\n'
                                       'mysql_allowed_sources = ["@web_server"]\n')
    before = lab.state_files()
    res = lab.deploy("-y")
    assert res.returncode != 0
    assert f"host {_hosts(lab)[1]} (group db_servers): mysql_allowed_sources = ['@web_server']" in res.out
    assert "did you mean 'web_servers'" in res.out, res.out
    assert "Traceback" not in res.out
    assert not results(res.out)  # no operation ran on any host
    assert lab.state_files() == before


def test_05_a_host_without_froxlor_roles_is_another_deploys_and_left_as_it_is(lab) -> None:
    """A shared inventory: the mail server's group data loses its roles (another team's
    host now). A run without --limit sends it no command and leaves its firewall as it
    is: a fresh UFW stays inactive and what it serves stays reachable; the audit leaves
    it out. (Before, it got UFW with SSH only.)"""
    _, _, _, mail = _hosts(lab)
    lab.write_group_data("mail_servers", "# another deploy's hosts: no froxlor_roles\n")
    reset_ufw(lab, mail)
    proc = start_listener(lab, mail, ["8025"], PIDFILE)
    try:
        lab.sh(mail, f": > {COMMAND_LOG}")
        res = lab.deploy("-y")
        assert res.returncode == 0, res.out
        assert f"[{mail}] {NOT_MANAGED}" in " ".join(res.out.split()), res.out
        assert lab.sh(mail, f"cat {COMMAND_LOG}").stdout == ""  # not one command
        assert "Status: inactive" in lab.sh(mail, "ufw status").stdout
        assert connect(lab.ip(mail), 8025) == "connected"
        _, doc = audit_json()
        assert mail not in [h["host"] for h in doc["hosts"]] and doc["not_managed"] == [mail]
    finally:
        stop_listener(lab, mail, proc, PIDFILE)
