"""``discover``'s proposal (issue 18) on state captured from real ufw, froxlor's ProFTPd tree
and a lab host's ``ss`` (the audit's fixtures, built with test_audit's helpers): roles
from listeners, the passive range, sources, hand-made rules, conflicts, files that the
deploy's validation accepts, and the key property: the deploy's own plan with the
proposal closes no port a process listens on publicly. The command end to end:
test_discover_cli.py."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest

from froxlor_fleet.audit.fact import LISTENING_SECTION
from froxlor_fleet.discover import host_data
from froxlor_fleet.discover.fact import DiscoverState, FleetDiscoverState, parse_bound
from froxlor_fleet.discover.propose import KEEP_OPEN_NOTE, HostProposal, propose
from froxlor_fleet.discover.render import OutputFile, host_file_name, layout, render
from froxlor_fleet.facts import SECTION
from froxlor_fleet.model.catalog import DEFAULTS
from froxlor_fleet.model.ufwrules import ANY, admits, plan_rules
from froxlor_fleet.model.validation import resolve
from helpers import build_fact
from test_audit import (
    CONVERGED,
    LOCAL_MYSQL,
    NAMED_UDP,
    POSTFIX,
    PURE_FTPD,
    SS_WEB,
    admin_passive,
    converged_rules,
    ftp_dump,
    tuple_line,
    with_rules,
)

NGINX = ['tcp LISTEN 0 511 0.0.0.0:80 0.0.0.0:* users:(("nginx",pid=30,fd=6))',
         'tcp LISTEN 0 511 [::]:80 [::]:* users:(("nginx",pid=30,fd=7))',
         'tcp LISTEN 0 511 0.0.0.0:443 0.0.0.0:* users:(("nginx",pid=30,fd=8))',
         'tcp LISTEN 0 511 [::]:443 [::]:* users:(("nginx",pid=30,fd=9))']
MARIADB = 'tcp LISTEN 0 80 0.0.0.0:3306 0.0.0.0:* users:(("mariadbd",pid=5,fd=20))'
MARIADB6 = 'tcp LISTEN 0 80 [::]:3306 [::]:* users:(("mariadbd",pid=5,fd=21))'
JAVA = 'tcp LISTEN 0 50 *:8080 *:* users:(("java",pid=9,fd=40))'
SSHD_2222 = 'tcp LISTEN 0 128 0.0.0.0:2222 0.0.0.0:* users:(("sshd",pid=18,fd=4))'
RESOLVER = 'udp UNCONN 0 0 0.0.0.0:41234 0.0.0.0:* users:(("unbound",pid=44,fd=3))'
PURE = 'tcp LISTEN 0 42 *:21 *:* users:(("pure-ftpd",pid=733,fd=4))'
SESSION_NET = "10.213.77.0/24"  # the captured SSH session comes from 10.213.77.1


def discovered(spec: dict, ss: list[str], proftpd_conf: tuple[tuple[str, str], ...] = ()
               ) -> DiscoverState:
    """What discover's one command prints for such a host, as test_audit.seen builds it
    (the state fact with froxlor's ProFTPd tree dumped, then ``ss``), read by its fact."""
    ftp = [f"{SECTION}ftp", *ftp_dump(spec.get("fragment"), proftpd_conf)]
    return FleetDiscoverState().process(build_fact(spec) + ftp + [LISTENING_SECTION, *ss])


def pure_host(range_line: str | None, extra: tuple[str, ...] = (), ss: list[str] | None = None,
              **spec) -> DiscoverState:
    """test_audit.pure_ftpd_host's host (pure-ftpd instead of ProFTPd), read by discover."""
    pure = [f"@pure PassivePortRange {range_line}"] if range_line is not None else []
    spec = {"scenario": "converged-web-ftp", "proftpd": [], "fragment": None,
            "ftp_lines": PURE_FTPD + pure + list(extra), **spec}
    return FleetDiscoverState().process(build_fact(spec) + [LISTENING_SECTION]
                                        + ([SS_WEB[0], PURE] if ss is None else ss))


def both(action: str, port: str, comment: str = "", proto: str = "tcp") -> list[list[str]]:
    """A hand-made rule from anywhere as ufw keeps it: a v4 and a v6 tuple."""
    return [[tuple_line(action, port, comment, proto=proto)],
            [tuple_line(action, port, comment, src="::/0", proto=proto, family=6)]]


def conflicts(proposal: HostProposal, text: str) -> list[str]:
    return [c for c in proposal.conflicts if text in c]


# --- the one read ------------------------------------------------------------------------

def test_discover_reads_with_the_audits_one_command() -> None:
    from froxlor_fleet.audit.fact import FleetAuditState

    # the audit's command, then froxlor's settings (test_discover_froxlor.py)
    assert FleetDiscoverState().command().get_raw_value().startswith(
        FleetAuditState().command().get_raw_value() + " ; echo ':::froxlor-fleet:froxlor'; ")
    assert DiscoverState(FleetDiscoverState.default().state).froxlor is None  # not read


def test_bound_addresses_come_from_the_same_ss_lines() -> None:
    bound = parse_bound([LISTENING_SECTION, *SS_WEB, *NGINX, MARIADB, LOCAL_MYSQL, JAVA])
    assert bound == {(22, "tcp"): ["10.213.77.11"], (21, "tcp"): ["*"],
                     (80, "tcp"): ["0.0.0.0", "[::]"], (443, "tcp"): ["0.0.0.0", "[::]"],
                     (3306, "tcp"): ["0.0.0.0"], (8080, "tcp"): ["*"]}


# --- roles from what listens and what UFW admits -----------------------------------------

def test_roles_are_the_listeners_ufw_admits() -> None:
    p = propose("web1", discovered(CONVERGED, SS_WEB + NGINX + [POSTFIX]))
    assert p.data == {"froxlor_roles": ["ftp", "web"], "ftp_passive_ports": (49152, 65534)}
    # postfix listens on 25, UFW blocks it: proposing smtp would open it to the world
    assert conflicts(p, "25/tcp listens (master) but UFW blocks it: smtp not proposed")
    p = propose("web1", discovered(CONVERGED, SS_WEB + NGINX + [JAVA]))
    assert "8080/tcp java on * listens but UFW blocks it: it stays blocked (not proposed)" \
        in p.notes and "firewall_extra_rules" not in p.data
    web = next(e for e in p.evidence["froxlor_roles"] if e.topic == "web")
    assert web.columns() == (
        "web: froxlor says (not read) | the host runs 80/tcp nginx on 0.0.0.0, [::]; "
        "443/tcp nginx on 0.0.0.0, [::] | UFW admits allow 80,443/tcp (froxlor-fleet:web)")


def test_with_ufw_not_filtering_every_role_that_listens_is_proposed() -> None:
    pristine = {"scenario": "pristine"}  # ufw installed, inactive, no rules
    p = propose("web1", discovered(pristine, SS_WEB + NGINX + [POSTFIX, NAMED_UDP, RESOLVER]))
    assert p.data["froxlor_roles"] == ["dns", "ftp", "smtp", "web"]
    assert conflicts(p, "UFW is not filtering today (inactive): the deploy enables it")
    assert any("ephemeral ports (41234/udp)" in n for n in p.notes)  # a resolver's socket


def test_a_role_port_admitted_where_nothing_listens_is_a_conflict_not_a_role() -> None:
    p = propose("web1", discovered(CONVERGED, SS_WEB))
    assert p.data["froxlor_roles"] == ["ftp"]
    assert conflicts(p, "UFW admits 80,443/tcp (web's ports) but nothing listens there: web "
                        "not proposed")


def test_http3_listening_and_admitted_sets_web_http3() -> None:
    quic = 'udp UNCONN 0 0 0.0.0.0:443 0.0.0.0:* users:(("nginx",pid=30,fd=10))'
    rules = both("allow", "443", proto="udp")
    spec = with_rules(converged_rules(4) + rules[0], converged_rules(6) + rules[1])
    p = propose("web1", discovered(spec, SS_WEB + NGINX + [quic]))
    assert p.data["web_http3"] is True and "web" in p.data["froxlor_roles"]


# --- the FTP daemon's passive range and masquerade address -------------------------------

def test_passive_range_is_the_one_proftpd_really_uses() -> None:
    p = propose("web1", discovered(CONVERGED, SS_WEB, admin_passive(40000, 40100)))
    assert p.data["ftp_passive_ports"] == (40000, 40100)
    assert p.evidence["ftp_passive_ports"][0].runs == \
        "ProFTPd: PassivePorts 40000 40100 (/etc/proftpd/proftpd.conf:29)"
    assert conflicts(p, "ProFTPd offers passive ports 40000:40100 but UFW admits 49152:65534: "
                        "passive transfers stall today")


def test_proftpds_masquerade_address_is_proposed() -> None:
    edit = (("# MasqueradeAddress\t\t1.2.3.4", "MasqueradeAddress 203.0.113.5"),)
    p = propose("web1", discovered(CONVERGED, SS_WEB, edit))
    assert p.data["ftp_masquerade_address"] == "203.0.113.5"
    assert p.evidence["ftp_masquerade_address"][0].runs == \
        "ProFTPd: 203.0.113.5 (/etc/proftpd/proftpd.conf:32)"


def test_passive_range_and_force_passive_ip_from_pure_ftpd() -> None:
    p = propose("web1", pure_host("50000 50100", ("@pure ForcePassiveIP 203.0.113.9",)))
    assert (p.data["ftp_passive_ports"], p.data["ftp_masquerade_address"]) == \
        ((50000, 50100), "203.0.113.9")
    assert p.evidence["ftp_passive_ports"][0].runs == \
        "pure-ftpd: PassivePortRange 50000 50100 (/etc/pure-ftpd/conf/PassivePortRange)"
    assert conflicts(p, "pure-ftpd offers passive ports 50000:50100 but UFW admits 49152:65534")


def test_ftp_listening_without_a_passive_range_is_a_conflict() -> None:
    spec = with_rules([line for line in converged_rules(4) if "49152" not in line],
                      [line for line in converged_rules(6) if "49152" not in line],
                      fragment=None)
    p = propose("web1", discovered(spec, SS_WEB))
    assert p.data["ftp_passive_ports"] == DEFAULTS["ftp_passive_ports"]
    assert conflicts(p, "FTP listens but no passive range is known (ProFTPd sets none): "
                        "proposing the default 49152:65534")
    # no range in ProFTPd, one in UFW: that one (the deploy writes it into ProFTPd)
    p = propose("web1", discovered({**CONVERGED, "fragment": None}, SS_WEB))
    assert p.data["ftp_passive_ports"] == (49152, 65534)
    assert conflicts(p, "FTP listens but ProFTPd sets no passive range (any port); UFW admits "
                        "49152:65534: proposing it")


def test_a_value_read_from_the_host_that_validation_refuses_is_not_proposed() -> None:
    p = propose("web1", discovered(CONVERGED, SS_WEB, admin_passive(1000, 2000)))
    assert p.data["ftp_passive_ports"] == DEFAULTS["ftp_passive_ports"]
    assert conflicts(p, "ftp_passive_ports = (1000, 2000) read from the host is refused by "
                        "the deploy's validation (passive ports must lie within 1024-65535)")


# --- sources from UFW's restricted rules -------------------------------------------------

def test_ssh_and_mysql_sources_come_from_restricted_allow_rules() -> None:
    spec = with_rules([tuple_line("allow", "22", src=SESSION_NET),
                       tuple_line("allow", "3306", src="192.0.2.10"),
                       tuple_line("allow", "3306", "froxlor-fleet:mysql", src="192.0.2.0/28")],
                      [tuple_line("allow", "3306", src="2001:db8::5", family=6)],
                      fragment=None)
    p = propose("db1", discovered(spec, [SS_WEB[0], MARIADB, MARIADB6]))
    assert p.data == {"froxlor_roles": ["mysql"],
                      "ssh_allowed_sources": [SESSION_NET],
                      "mysql_allowed_sources": ["192.0.2.10", "192.0.2.0/28", "2001:db8::5"]}
    assert p.evidence["mysql_allowed_sources"][0].ufw == (
        "allow 3306/tcp from 192.0.2.10; allow 3306/tcp from 192.0.2.0/28 (froxlor-fleet:mysql); "
        "allow 3306/tcp from 2001:db8::5")
    assert p.conflicts == []


def test_ssh_limited_by_hand_proposes_the_rate_limit() -> None:
    rules = both("limit", "22")
    spec = with_rules(rules[0], rules[1], fragment=None)
    p = propose("h1", discovered(spec, [SS_WEB[0]]))
    assert p.data == {"froxlor_roles": [], "ssh_rate_limit": True}


# --- hand-made rules -> firewall_extra_rules ---------------------------------------------

def test_a_hand_made_rule_on_a_port_in_use_becomes_an_extra_rule_the_deploy_adopts() -> None:
    keep, idle = both("allow", "8080", "hand made"), both("allow", "9090")
    spec = with_rules(converged_rules(4) + keep[0] + idle[0]
                      + [tuple_line("deny", "25", src="203.0.113.0/24")],
                      converged_rules(6) + keep[1] + idle[1])
    seen = discovered(spec, SS_WEB + NGINX + [JAVA])
    p = propose("web1", seen)
    assert p.data["firewall_extra_rules"] == [
        {"port": 8080, "comment": "hand made"},
        {"port": 25, "sources": ["203.0.113.0/24"], "action": "deny"}]
    assert any("UFW rule allow 9090/tcp: nothing listens there, not proposed" in n
               for n in p.notes)
    extra = p.evidence["firewall_extra_rules"][0]
    assert (extra.runs, extra.ufw) == ("8080/tcp java on *", "allow 8080/tcp (hand made)")
    # the deploy takes the hand-made rules over in place: nothing added, nothing deleted
    plan, problems = resolve("web1", [("host data", p.data)])
    assert plan is not None, problems
    rules = plan_rules(seen.state.ufw.rules, plan.rules, True, plan.purge_unmanaged)
    assert rules.delete == []
    assert sorted({have.describe() for _, have in rules.retag}) == [
        "allow 8080/tcp", "deny 25/tcp from 203.0.113.0/24"]
    assert [w for w in rules.add if w not in {want for want, _ in rules.retag}] == []


def test_rules_the_data_cannot_say_stay_hand_made() -> None:
    mixed = {"scenario": "hand-made-mixed", "running": "yes", "conf": {"ENABLED": "yes"}}
    ss = [SS_WEB[0], SSHD_2222, 'tcp LISTEN 0 80 *:3306 *:* users:(("mariadbd",pid=5,fd=20))',
          NAMED_UDP, JAVA]
    p = propose("h1", discovered(mixed, ss))
    assert p.data["mysql_allowed_sources"] == ["10.0.0.0/8", "2001:db8::/32"]
    assert p.data["firewall_default_incoming"] == "reject"
    assert p.data["firewall_logging"] == "medium"
    assert {"port": 2222, "action": "limit"} in p.data["firewall_extra_rules"]
    assert {"port": 8080, "comment": "hand made"} in p.data["firewall_extra_rules"]
    notes = " ".join(p.notes)
    assert "deny any from 203.0.113.7 stays hand-made (for every protocol" in notes
    assert "allow 53/udp [in_eth0] stays hand-made (on interface eth0 only" in notes
    assert "stays hand-made (an application profile's rule" in notes


# --- conflicts ---------------------------------------------------------------------------

def test_mysql_listening_publicly_without_a_known_source() -> None:
    blocked = propose("db1", discovered(CONVERGED, SS_WEB + [MARIADB]))
    assert "mysql" not in blocked.data["froxlor_roles"]
    assert conflicts(blocked, "3306/tcp mariadbd on 0.0.0.0 listens publicly but no source is "
                              "known: mysql not proposed")
    # open to anywhere today (a hand-made rule): kept open, said loudly
    rules = both("allow", "3306")
    spec = with_rules(converged_rules(4) + rules[0], converged_rules(6) + rules[1])
    wide = propose("db1", discovered(spec, SS_WEB + [MARIADB]))
    assert conflicts(wide, "3306/tcp mariadbd on 0.0.0.0 is open to anywhere (UFW admits it) "
                           "and no source is known: mysql not proposed")
    assert wide.data["firewall_extra_rules"] == [{"port": 3306}]


def test_open_today_with_incoming_allow_is_kept_open_by_an_extra_rule() -> None:
    spec = {**CONVERGED, "default": {"DEFAULT_INPUT_POLICY": '"ACCEPT"'}}
    p = propose("web1", discovered(spec, SS_WEB + [JAVA, MARIADB]))
    assert {"port": 8080, "comment": KEEP_OPEN_NOTE} in p.data["firewall_extra_rules"]
    assert {"port": 3306, "comment": KEEP_OPEN_NOTE} in p.data["firewall_extra_rules"]
    assert conflicts(p, "8080/tcp java on * is open to anywhere today (UFW's default incoming "
                        "policy is allow) and no role covers it: kept open")
    assert conflicts(p, "UFW's default incoming policy is allow: the deploy sets deny")


# --- the output: valid data, nothing from a host becomes code ----------------------------

SCENARIOS = {
    "converged": discovered(CONVERGED, SS_WEB + NGINX + [POSTFIX]),
    "idle-web": discovered(CONVERGED, SS_WEB),
    "pristine": discovered({"scenario": "pristine"}, SS_WEB + NGINX + [POSTFIX, NAMED_UDP, JAVA,
                                                                       MARIADB, RESOLVER]),
    "no-ufw": discovered({"scenario": "pristine", "ufw": []}, SS_WEB + [JAVA, MARIADB6]),
    "mixed": discovered({"scenario": "hand-made-mixed", "running": "yes",
                         "conf": {"ENABLED": "yes"}},
                        [SS_WEB[0], SSHD_2222, MARIADB, NAMED_UDP, JAVA]),
    "mixed-inactive": discovered({"scenario": "hand-made-mixed"}, [SS_WEB[0], SSHD_2222, JAVA]),
    "admin-passive": discovered(CONVERGED, SS_WEB + [MARIADB], admin_passive(40000, 40100)),
    "incoming-allow": discovered({**CONVERGED, "default": {"DEFAULT_INPUT_POLICY": '"ACCEPT"'}},
                                 SS_WEB + NGINX + [JAVA, MARIADB]),
    "pure-ftpd": pure_host("50000 50100", ("@pure ForcePassiveIP 203.0.113.9",)),
    "ipv6-off": discovered({**CONVERGED, "default": {"IPV6": "no"}}, SS_WEB + [MARIADB6, JAVA]),
}


def written(tmp_path: Path, proposal: HostProposal) -> dict:
    """The proposal rendered as its host file, then read back as pyinfra reads data."""
    path = tmp_path / "host_data" / f"{host_file_name(proposal.host)}.py"
    path.parent.mkdir(exist_ok=True)
    path.write_text(render(OutputFile(str(path), None, (proposal,))))
    return host_data(path.parent, proposal.host)


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_every_proposal_is_data_the_deploys_validation_accepts(name: str, tmp_path: Path) -> None:
    proposal = propose("h1", SCENARIOS[name])
    data = written(tmp_path, proposal)
    assert data == proposal.data and set(data) <= set(DEFAULTS)
    plan, problems = resolve("h1", [("host data", data)])
    assert plan is not None and problems == []


def test_nothing_a_host_reports_becomes_code(tmp_path: Path) -> None:
    evil = "x\nimport os; os.system('touch /tmp/pwned')"
    rules = [tuple_line("allow", "8080", evil)]
    spec = with_rules(converged_rules(4) + rules, converged_rules(6))
    proposal = propose("web1", discovered(spec, SS_WEB + [JAVA]))
    assert proposal.data["firewall_extra_rules"] == [{"port": 8080}]  # the comment dropped
    text = render(OutputFile("host_data/web1.py", None, (proposal,)))
    code = [line for line in text.splitlines() if line and not line.startswith("#")]
    assert all(line.split(" = ")[0] in DEFAULTS or line in ("    {'port': 8080},", "]")
               for line in code), code
    assert "import os" not in "\n".join(code)
    assert written(tmp_path, proposal) == proposal.data


def test_files_per_group_when_all_members_agree_else_per_host() -> None:
    same = propose("web1", SCENARIOS["converged"])
    proposals = [same, HostProposal("web2", dict(same.data)), HostProposal("@ssh/db1", {}),
                 HostProposal("lonely", {"froxlor_roles": ["dns"]})]
    groups = {"all": ["web1", "web2", "@ssh/db1", "lonely", "db2"], "inventory": ["web1"],
              "web_servers": ["web1", "web2"], "ftp_servers": ["web1"],
              "db_servers": ["@ssh/db1", "db2"], "@ssh": ["@ssh/db1"]}
    files = layout(proposals, groups, ("all", "inventory"))
    assert [(f.path, [m.host for m in f.members]) for f in files] == [
        ("group_data/web_servers.py", ["web1", "web2"]),
        ("host_data/@ssh%2Fdb1.py", ["@ssh/db1"]),  # db2 was not read: no group file
        ("host_data/lonely.py", ["lonely"])]
    text = render(files[0])
    assert text.startswith("# Proposed by `froxlor-fleet discover` for group web_servers "
                           "(web1, web2): review before use.")
    assert "#   web1: web: froxlor says (not read) | the host runs 80/tcp nginx" in text


# --- the key property: the deploy's plan with the proposal closes nothing in use ---------

def _families(addresses: list[str]) -> set[int]:
    found: set[int] = set()
    for where in addresses:
        found |= {4, 6} if where == "*" else {6} if ":" in where else {4}
    return found


def closed_by_deploy(seen: DiscoverState, data: dict) -> list[str]:
    """Ports a process listens on publicly that a client reaches today and would not
    after the deploy ran with ``data``: the deploy's own validation and rule plan
    (``plan_rules``, as ``firewall.rules_and_policies`` calls it) on the same state.
    Clients: somebody on the internet, the SSH client, each source UFW's admitting rules
    name (a source the operator's own deny names is not "in use": blocking it once UFW
    filters is that rule's purpose)."""
    plan, problems = resolve("h1", [("host data", data)])
    assert plan is not None, problems
    ufw = seen.state.ufw
    ipv6 = ufw.ipv6 if ufw.installed else True
    final = plan_rules(ufw.rules if ufw.installed else [], plan.rules, ipv6,
                       plan.purge_unmanaged).final
    live = [r for r in ufw.rules if ufw.ipv6 or r.family == 4]
    clients = {4: ["198.51.100.7", "10.213.77.1"], 6: ["2001:db8::7"]}
    for rule in live:
        if rule.src != ANY[rule.family] and rule.verdict in ("allow", "limit"):
            try:
                net = ipaddress.ip_network(rule.src, strict=False)
            except ValueError:
                continue
            clients[net.version].append(str(net.network_address))
    closed = []
    for (port, proto), addresses in seen.bound.items():
        if proto == "udp" and 32768 <= port <= 60999:
            continue  # a client's own socket
        for family in sorted(_families(addresses)):
            server = "10.213.77.11" if family == 4 else "2001:db8::11"
            for client in clients[family]:
                before = not (ufw.installed and ufw.running) or admits(
                    live, ufw.incoming, client, server, port, proto, ufw.ipv6)
                after = not plan.enabled or admits(final, plan.incoming, client, server, port,
                                                   proto, ipv6)
                if before and not after:
                    closed.append(f"{port}/{proto} from {client}")
    return closed


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_the_deploy_with_the_proposal_closes_no_port_in_use(name: str) -> None:
    seen = SCENARIOS[name]
    proposal = propose("h1", seen)
    assert closed_by_deploy(seen, proposal.data) == []
    assert not any("would still close" in c for c in proposal.conflicts)


def test_the_property_check_itself_sees_a_closing_proposal() -> None:
    seen = SCENARIOS["pristine"]  # ufw inactive: everything listening is open today
    assert "8080/tcp from 198.51.100.7" in closed_by_deploy(seen, {"froxlor_roles": ["web"]})
