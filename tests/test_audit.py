"""The audit's comparison and reports, on state captured from real ufw and a real lab
host's ``ss`` (no pyinfra run here: see test_cli.py for the command end to end)."""

from __future__ import annotations

import functools
import json
import os
import re
import stat
from importlib import resources
from pathlib import Path

import jsonschema
import pytest

from froxlor_fleet.audit.collect import error_text
from froxlor_fleet.audit.compare import (
    KINDS,
    FleetAudit,
    audit_host,
    bad_data,
    exit_status,
    fleet_error,
    unreachable,
)
from froxlor_fleet.audit.fact import LISTENING_SECTION, AuditState, FleetAuditState, parse_listening
from froxlor_fleet.audit.report import (
    SCHEMA_FILE,
    SCHEMA_VERSION,
    document,
    to_json,
    to_prometheus,
    to_text,
    write_atomically,
)
from froxlor_fleet.facts import SECTION, FleetHostState
from froxlor_fleet.model.catalog import FRAGMENT_PATH
from froxlor_fleet.model.validation import check_inventory
from froxlor_fleet.operations.ftpplan import render_fragment
from helpers import FIXTURES, build_fact, make_inventory
from helpers import ftp_dump as helpers_ftp_dump

SS_WEB = (FIXTURES / "ss-lab-web-host.txt").read_text().splitlines()  # real lab capture
POSTFIX = 'tcp LISTEN 0 100 0.0.0.0:25 0.0.0.0:* users:(("master",pid=900,fd=13))'
NAMED_UDP = 'udp UNCONN 0 0 0.0.0.0:53 0.0.0.0:* users:(("named",pid=77,fd=5))'
LOCAL_MYSQL = 'tcp LISTEN 0 80 127.0.0.1:3306 0.0.0.0:* users:(("mariadbd",pid=5,fd=20))'
SCHEMA = json.loads(resources.files("froxlor_fleet.audit").joinpath(SCHEMA_FILE).read_text())

SSH = "comment=66726f786c6f722d666c6565743a737368"  # froxlor-fleet:ssh
FTP = "comment=66726f786c6f722d666c6565743a667470"
WEB = "comment=66726f786c6f722d666c6565743a776562"
SMTP = "comment=66726f786c6f722d666c6565743a736d7470"
MYSQL = "comment=66726f786c6f722d666c6565743a6d7973716c"


def web_ftp_plan(**data):
    groups = {"web_servers": (["web1"], {"froxlor_roles": ["web", "ftp"], **data})}
    return check_inventory(make_inventory(groups))["web1"]


@functools.lru_cache
def ftp_dump(fragment: str | None, conf_edits: tuple[tuple[str, str], ...] = ()) -> tuple[str, ...]:
    """The real host-side dump (``remote/proftpd_dump.sh``) over froxlor's ProFTPd tree
    (tests/fixtures/proftpd/froxlor-bookworm) with this deploy's ``fragment`` in conf.d
    (``None``: none) and ``conf_edits`` (old, new) made to proftpd.conf: what the state
    fact's ftp section says about such a host."""
    files = {FRAGMENT_PATH.lstrip("/"): fragment} if fragment is not None else {}
    edits = {"etc/proftpd/proftpd.conf": [list(edit) for edit in conf_edits]}
    return tuple(helpers_ftp_dump("froxlor-bookworm", edits, files))

def seen(fact_spec: dict, ss_lines: list[str],
         proftpd_conf: tuple[tuple[str, str], ...] = ()) -> AuditState:
    """What the audit's one command prints for such a host: the state fact (its ftp
    section dumped from a froxlor-shaped /etc/proftpd holding ``fact_spec["fragment"]``)
    and ``ss``."""
    ftp = [f"{SECTION}ftp", *ftp_dump(fact_spec.get("fragment"), proftpd_conf)]
    lines = build_fact(fact_spec) + ftp + [LISTENING_SECTION] + ss_lines
    return FleetAuditState().process(lines)


# froxlor's proftpd.conf has it commented out at line 29; an admin who follows froxlor's
# documentation uncomments it (ProFTPd reads it before conf.d/: the first one wins).
ADMIN_LINE = "# PassivePorts                  49152 65534"


def admin_passive(low: int, high: int) -> tuple[tuple[str, str], ...]:
    return ((ADMIN_LINE, f"PassivePorts {low} {high}"),)


def kinds(audit) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for f in audit.findings:
        found.setdefault(f.kind, []).append(f.detail)
    return found


def validate(doc: dict) -> None:
    jsonschema.validate(doc, SCHEMA, format_checker=jsonschema.FormatChecker())


CONVERGED = {"scenario": "converged-web-ftp", "fragment": render_fragment((49152, 65534))}
DRIFTED_RULES = [f"### tuple ### allow tcp 21 0.0.0.0/0 any 0.0.0.0/0 in {FTP}",
                 f"### tuple ### allow tcp 22 0.0.0.0/0 any 0.0.0.0/0 in {SSH}",
                 f"### tuple ### allow tcp 80,443 0.0.0.0/0 any 0.0.0.0/0 in {WEB}",
                 "### tuple ### allow tcp 8080 0.0.0.0/0 any 0.0.0.0/0 in",
                 f"### tuple ### allow tcp 25 0.0.0.0/0 any 0.0.0.0/0 in {SMTP}"]


# --- the fact --------------------------------------------------------------------------

def test_audit_fact_is_the_deploy_read_plus_ss_in_one_command() -> None:
    deploy = FleetHostState().command().get_raw_value()
    audit = FleetAuditState().command().get_raw_value()
    assert audit.startswith(deploy + " ; ")
    assert audit.endswith("ss -H -ltnup 2>/dev/null || true")
    assert not issubclass(FleetAuditState, FleetHostState)  # its own return type


def test_a_failed_read_is_not_mistaken_for_a_host_without_ufw() -> None:
    assert FleetAuditState().default().complete is False
    assert seen(CONVERGED, []).complete is True


def test_parse_listening_keeps_public_sockets_only() -> None:
    found = parse_listening([LISTENING_SECTION, *SS_WEB, POSTFIX, NAMED_UDP, LOCAL_MYSQL])
    assert found == {(22, "tcp"): ["sshd"], (21, "tcp"): ["proftpd"], (25, "tcp"): ["master"],
                     (53, "udp"): ["named"]}


# --- the comparison --------------------------------------------------------------------

def test_converged_host_audits_clean() -> None:
    audit = audit_host(web_ftp_plan(), seen(CONVERGED, SS_WEB))
    assert audit.verdict == "ok" and exit_status([audit]) == 0
    assert audit.ufw and audit.ufw.state == "active"
    assert audit.passive and audit.passive.match
    assert (audit.passive.proftpd, audit.passive.ufw) == ("49152:65534", "49152:65534")
    ssh, web, mysql = audit.port(22, "tcp"), audit.port(80, "tcp"), audit.port(3306, "tcp")
    assert ssh and (ssh.admitted, ssh.listening, ssh.processes) == ("open", True, ("sshd",))
    assert web and (web.admitted, web.listening) == ("open", False)
    assert mysql and mysql.admitted == "blocked"
    assert kinds(audit) == {"idle_admitted": ["admitted, nothing listens: 80/tcp (web)",
                                              "admitted, nothing listens: 443/tcp (web)"]}
    assert {f.severity for f in audit.findings} == {"notice"}


def test_listening_but_blocked_is_a_notice_not_drift() -> None:
    audit = audit_host(web_ftp_plan(), seen(CONVERGED, SS_WEB + [POSTFIX]))
    blocked = [f for f in audit.findings if f.kind == "listening_blocked"]
    assert [(f.port, f.proto, f.processes, f.severity) for f in blocked] == \
        [(25, "tcp", ("master",), "notice")]
    assert audit.verdict == "ok"


def test_each_kind_of_drift_is_named() -> None:
    drifted = {**CONVERGED, "rules4": DRIFTED_RULES,
               "conf": {"LOGLEVEL": "medium"}, "default": {"DEFAULT_INPUT_POLICY": '"ACCEPT"'},
               "fragment": render_fragment((50000, 50100))}
    audit = audit_host(web_ftp_plan(), seen(drifted, SS_WEB))
    found = kinds(audit)
    assert audit.verdict == "drift" and exit_status([audit]) == 1
    assert "missing rule allow 49152:65534/tcp (ftp)" in found["missing_rule"]
    assert found["stray_rule"] == ["stray managed rule allow 25/tcp (smtp)"]
    assert found["unmanaged_rule"] == ["unmanaged rule allow 8080/tcp"]
    assert found["setting"] == ["incoming allow (want deny)", "logging medium (want low)"]
    # ProFTPd uses the fragment's 50000-50100, UFW admits the data's range: the two disagree
    assert found["passive_disagree"] == [f"{FRAGMENT_PATH}:4 sets PassivePorts 50000 50100; "
                                         "UFW admits 49152:65534"]
    assert "passive_mismatch" not in found
    stray = next(f for f in audit.findings if f.kind == "stray_rule")
    assert (stray.port, stray.ports, stray.proto, stray.role) == (25, "25", "tcp", "smtp")
    missing = next(f for f in audit.findings if f.ports == "49152:65534")
    assert (missing.port, missing.role) == (None, "ftp")  # a range: no single port
    mysql = audit.port(3306, "tcp")
    assert mysql and mysql.admitted == "open"  # incoming policy allow: everything admitted


def test_unmanaged_rules_are_drift_only_when_purge_is_on() -> None:
    extra = {**CONVERGED, "rules4": [*rules4_of(CONVERGED),
                                     "### tuple ### allow tcp 8080 0.0.0.0/0 any 0.0.0.0/0 in"]}
    kept = audit_host(web_ftp_plan(), seen(extra, SS_WEB))
    assert [(f.kind, f.severity) for f in kept.findings if f.kind == "unmanaged_rule"] == \
        [("unmanaged_rule", "notice")]
    assert kept.verdict == "ok" and exit_status([kept]) == 0
    purged = audit_host(web_ftp_plan(firewall_purge_unmanaged=True), seen(extra, SS_WEB))
    assert [f.severity for f in purged.findings if f.kind == "unmanaged_rule"] == ["drift"]
    assert purged.verdict == "drift" and exit_status([purged]) == 1


def rules4_of(spec: dict) -> list[str]:
    lines = build_fact(spec)
    return lines[lines.index(":::froxlor-fleet:rules4") + 1:lines.index(":::froxlor-fleet:rules6")]


def test_inactive_ufw_is_drift_and_admits_everything() -> None:
    audit = audit_host(web_ftp_plan(), seen({**CONVERGED, "running": "no",
                                             "conf": {"ENABLED": "no"}}, SS_WEB + [POSTFIX]))
    assert kinds(audit)["setting"] == ["ufw inactive (want active)"]
    smtp = audit.port(25, "tcp")
    assert smtp and smtp.admitted == "open" and "listening_blocked" not in kinds(audit)


def test_missing_ufw_is_drift() -> None:
    audit = audit_host(web_ftp_plan(), seen({**CONVERGED, "ufw": ""}, SS_WEB))
    assert audit.ufw and audit.ufw.state == "missing"
    assert kinds(audit)["ufw_missing"] == ["ufw is not installed"] and audit.verdict == "drift"


def test_a_missing_rule_is_not_reported_as_idle() -> None:
    without_web = {**CONVERGED, "rules4": DRIFTED_RULES[:2], "rules6": []}
    audit = audit_host(web_ftp_plan(), seen(without_web, SS_WEB))
    assert "missing rule allow 80,443/tcp (web)" in kinds(audit)["missing_rule"]
    web = audit.port(80, "tcp")
    assert web and web.admitted == "blocked" and "idle_admitted" not in kinds(audit)


def db_fleet() -> FleetAudit:
    groups = {"db_servers": (["db1"], {"froxlor_roles": ["mysql"],
                                       "mysql_allowed_sources": ["10.0.0.0/8"]}),
              "web_servers": (["web1"], {"froxlor_roles": ["web"]})}
    plans = check_inventory(make_inventory(groups))
    db_rules = [f"### tuple ### allow tcp 3306 0.0.0.0/0 any 10.0.0.0/8 in {MYSQL}",
                f"### tuple ### allow tcp 22 0.0.0.0/0 any 0.0.0.0/0 in {SSH}"]
    db = seen({**CONVERGED, "rules4": db_rules,
               "rules6": [f"### tuple ### allow tcp 22 ::/0 any ::/0 in {SSH}"],
               "fragment": None}, [LOCAL_MYSQL])
    return FleetAudit("inventory.py", (), [audit_host(plans["db1"], db),
                                           unreachable("web1", plans["web1"],
                                                       "Could not connect (timed out)")])


def test_restricted_port_and_unreachable_host() -> None:
    fleet = db_fleet()
    assert [a.verdict for a in fleet.hosts] == ["ok", "unreachable"]
    mysql = fleet.hosts[0].port(3306, "tcp")
    assert mysql and (mysql.admitted, mysql.listening) == ("restricted", False)  # loopback only
    assert fleet.exit_status == 2 and exit_status(fleet.hosts[:1]) == 0


def test_errors_win_over_drift() -> None:
    drift = audit_host(web_ftp_plan(), seen({**CONVERGED, "conf": {"LOGLEVEL": "high"}}, SS_WEB))
    bad = bad_data("db1", ["host db1: mysql_allowed_sources = None: required"])
    assert exit_status([drift]) == 1
    assert exit_status([drift, bad]) == 2 and bad.verdict == "error"
    assert exit_status([], [fleet_error("limit_unmatched", "--limit 'x' matches no host")]) == 2
    assert exit_status([]) == 0


def tuple_line(action: str, port: str, comment: str = "", src: str = "0.0.0.0/0",
               proto: str = "tcp", family: int = 4) -> str:
    """A ``### tuple ###`` line as ufw writes it (comment hex-encoded)."""
    anywhere = "0.0.0.0/0" if family == 4 else "::/0"
    line = f"### tuple ### {action} {proto} {port} {anywhere} any {src} in"
    return line + (f" comment={comment.encode().hex()}" if comment else "")


def converged_rules(family: int) -> list[str]:
    lines = build_fact(CONVERGED)
    start = lines.index(f":::froxlor-fleet:rules{family}") + 1
    end = next(i for i in range(start, len(lines)) if lines[i].startswith(":::"))
    return [line for line in lines[start:end] if line.startswith("### tuple ###")]


def with_rules(rules4: list[str], rules6: list[str] | None = None, **spec) -> dict:
    return {**CONVERGED, "rules4": rules4,
            "rules6": converged_rules(6) if rules6 is None else rules6, **spec}


# --- rule actions ----------------------------------------------------------------------

def test_a_managed_rule_with_another_action_is_action_drift_not_a_missing_marker() -> None:
    audit = audit_host(web_ftp_plan(ssh_rate_limit=True), seen(CONVERGED, SS_WEB))
    found = kinds(audit)
    assert found["action_rule"] == ["allow 22/tcp should be limit (ssh)"]  # v4 and v6: one line
    assert "retag_rule" not in found and "missing_rule" not in found
    rule = next(f for f in audit.findings if f.kind == "action_rule")
    assert (rule.severity, rule.port, rule.ports, rule.proto, rule.role) == \
        ("drift", 22, "22", "tcp", "ssh")
    assert audit.verdict == "drift"
    # and back: a limit this deploy made from data, the data now says allow
    limited = {f: [line.replace("allow tcp 22 ", "limit tcp 22 ").replace(
        "737368", "737368" + b" rate-limit".hex()) for line in converged_rules(f)]
        for f in (4, 6)}
    back = audit_host(web_ftp_plan(), seen(with_rules(limited[4], limited[6]), SS_WEB))
    assert kinds(back)["action_rule"] == ["limit 22/tcp should be allow (ssh)"]


def test_a_rule_without_the_marker_but_the_same_action_is_still_retag() -> None:
    unmarked = {f: [line.split(" comment=")[0] if " 22 " in line else line
                    for line in converged_rules(f)] for f in (4, 6)}
    audit = audit_host(web_ftp_plan(), seen(with_rules(unmarked[4], unmarked[6]), SS_WEB))
    assert kinds(audit)["retag_rule"] == \
        ["rule allow 22/tcp (ssh) exists without this deploy's marker"]
    assert "action_rule" not in kinds(audit)


DENY_80 = {"port": 80, "action": "deny", "sources": ["203.0.113.0/24"]}
DENY_80_LINE = tuple_line("deny", "80", "froxlor-fleet:extra", src="203.0.113.0/24")


def test_a_deny_before_the_allow_makes_the_port_restricted() -> None:
    rules = [DENY_80_LINE, *converged_rules(4)]  # where ufw prepend puts it
    audit = audit_host(web_ftp_plan(firewall_extra_rules=[DENY_80]),
                       seen(with_rules(rules), SS_WEB))
    web, https = audit.port(80, "tcp"), audit.port(443, "tcp")
    assert web and web.admitted == "restricted"  # 203.0.113.0/24 may not
    assert https and https.admitted == "open"
    assert audit.verdict == "ok", kinds(audit)


def test_a_deny_an_earlier_allow_matches_first_is_shadowed_drift() -> None:
    rules = [*converged_rules(4), DENY_80_LINE]  # after the web allow: never reached
    audit = audit_host(web_ftp_plan(firewall_extra_rules=[DENY_80]),
                       seen(with_rules(rules), SS_WEB))
    found = kinds(audit)
    assert found["shadowed_rule"] == [
        "deny 80/tcp from 203.0.113.0/24 (extra) is shadowed: allow 80,443/tcp (web) matches "
        "first; delete the deny by hand and deploy again to put it first"]
    shadowed = next(f for f in audit.findings if f.kind == "shadowed_rule")
    assert (shadowed.severity, shadowed.port, shadowed.role) == ("drift", 80, "extra")
    web = audit.port(80, "tcp")
    assert web and web.admitted == "open"  # the deny stops nobody
    assert audit.verdict == "drift" and "missing_rule" not in found


def test_deny_and_reject_rules_are_never_idle_admitted() -> None:
    rules = [tuple_line("reject", "8080", "froxlor-fleet:extra", src="203.0.113.0/24"),
             *converged_rules(4), tuple_line("allow", "8080")]  # a hand-made allow after it
    data = {"firewall_extra_rules": [{"port": 8080, "action": "reject",
                                      "sources": ["203.0.113.0/24"]}]}
    audit = audit_host(web_ftp_plan(**data), seen(with_rules(rules), SS_WEB))
    alt = audit.port(8080, "tcp")
    assert alt and (alt.admitted, alt.listening) == ("restricted", False)
    assert all("8080" not in line for line in kinds(audit)["idle_admitted"])
    assert kinds(audit)["unmanaged_rule"] == ["unmanaged rule allow 8080/tcp"]


def test_the_grid_shows_http3() -> None:
    http3 = {f: [*converged_rules(f), tuple_line("allow", "443", "froxlor-fleet:web",
                                                 src="0.0.0.0/0" if f == 4 else "::/0",
                                                 proto="udp", family=f)] for f in (4, 6)}
    audit = audit_host(web_ftp_plan(web_http3=True), seen(with_rules(http3[4], http3[6]), SS_WEB))
    http3 = audit.port(443, "udp")
    assert http3 and http3.admitted == "open" and audit.verdict == "ok", kinds(audit)
    assert "admitted, nothing listens: 443/udp (web)" in kinds(audit)["idle_admitted"]
    text = to_text(FleetAudit("inventory.py", (), [audit]))
    head = next(line for line in text.splitlines() if line.startswith("ports"))
    assert head.split()[1:6] == ["22", "21", "80", "443", "443u"]
    plain = audit_host(web_ftp_plan(), seen(CONVERGED, SS_WEB)).port(443, "udp")
    assert plain and plain.admitted == "blocked"  # in the grid for every host


# --- the passive range ProFTPd really uses ------------------------------------------------

def test_passive_range_is_the_one_proftpd_uses_with_its_file_and_line() -> None:
    audit = audit_host(web_ftp_plan(), seen(CONVERGED, SS_WEB))
    assert audit.passive and audit.passive.match
    assert (audit.passive.proftpd, audit.passive.proftpd_origin, audit.passive.fragment) == \
        ("49152:65534", f"{FRAGMENT_PATH}:4", "49152:65534")


def test_admin_passive_ports_in_proftpd_conf_that_win_are_drift_naming_the_line() -> None:
    audit = audit_host(web_ftp_plan(), seen(CONVERGED, SS_WEB, admin_passive(40000, 40100)))
    assert audit.passive and not audit.passive.match
    assert (audit.passive.proftpd, audit.passive.proftpd_origin, audit.passive.fragment,
            audit.passive.ufw) == ("40000:40100", "/etc/proftpd/proftpd.conf:29", "49152:65534",
                                   "49152:65534")
    found = kinds(audit)
    assert found["passive_disagree"] == [
        "/etc/proftpd/proftpd.conf:29 sets PassivePorts 40000 40100; UFW admits 49152:65534 "
        "(ProFTPd uses it, not this deploy's fragment; remove it there)"]
    assert "passive_mismatch" not in found and "fragment_drift" not in found
    finding = next(f for f in audit.findings if f.kind == "passive_disagree")
    assert (finding.severity, finding.ports, finding.proto, finding.role) == \
        ("drift", "49152:65534", "tcp", "ftp")
    assert audit.verdict == "drift" and exit_status([audit]) == 1
    text = to_text(FleetAudit("inventory.py", (), [audit]))
    assert "40000:40100|49152:65534 ≠" in text  # the matrix shows the effective range
    assert ("web1: /etc/proftpd/proftpd.conf:29 sets PassivePorts 40000 40100; "
            "UFW admits 49152:65534") in text


def test_admin_passive_ports_equal_to_the_data_are_not_drift() -> None:
    audit = audit_host(web_ftp_plan(), seen(CONVERGED, SS_WEB, admin_passive(49152, 65534)))
    assert audit.passive and audit.passive.match
    assert audit.passive.proftpd_origin == "/etc/proftpd/proftpd.conf:29"
    assert audit.verdict == "ok", kinds(audit)


def test_a_fragment_that_ufw_disagrees_with_names_the_fragment() -> None:
    stale = {**CONVERGED, "fragment": render_fragment((40000, 40100))}
    audit = audit_host(web_ftp_plan(), seen(stale, SS_WEB))
    assert kinds(audit)["passive_disagree"] == \
        [f"{FRAGMENT_PATH}:4 sets PassivePorts 40000 40100; UFW admits 49152:65534"]


def test_no_passive_ports_anywhere_while_ufw_admits_a_range() -> None:
    audit = audit_host(web_ftp_plan(), seen({**CONVERGED, "fragment": None}, SS_WEB))
    assert audit.passive and (audit.passive.proftpd, audit.passive.proftpd_origin) == (None, None)
    assert kinds(audit)["passive_disagree"] == [
        "ProFTPd sets no PassivePorts (passive transfers may use any port); "
        "UFW admits 49152:65534"]


def test_no_proftpd_configuration_on_an_ftp_host_whose_ufw_admits_a_range() -> None:
    empty = [f"{SECTION}ftp", "@conf /etc/proftpd/proftpd.conf", "@root /etc/proftpd -"]
    lines = build_fact(CONVERGED) + empty + [LISTENING_SECTION, *SS_WEB]
    audit = audit_host(web_ftp_plan(), FleetAuditState().process(lines))
    assert kinds(audit)["passive_disagree"] == [
        "/etc/proftpd/proftpd.conf not found: cannot tell which passive range ProFTPd uses; "
        "UFW admits 49152:65534"]


def test_both_sides_agree_on_another_range_than_the_data() -> None:
    audit = audit_host(web_ftp_plan(ftp_passive_ports=(50000, 50100)), seen(CONVERGED, SS_WEB))
    found = kinds(audit)
    assert found["passive_mismatch"] == \
        ["passive ports: proftpd 49152:65534, ufw 49152:65534, want 50000:50100"]
    assert "passive_disagree" not in found


def test_a_host_without_the_ftp_role_ignores_proftpds_own_passive_ports() -> None:
    groups = {"web_servers": (["web1"], {"froxlor_roles": ["web"]})}
    plan = check_inventory(make_inventory(groups))["web1"]
    web_only = [line for line in converged_rules(4) if " 21 " not in line and ":" not in
                line.split()[5]]
    audit = audit_host(plan, seen(with_rules(web_only, [], fragment=None), SS_WEB,
                                  admin_passive(40000, 40100)))
    assert audit.passive is None
    assert not {"passive_disagree", "passive_mismatch", "fragment_drift"} & set(kinds(audit))


# --- JSON ------------------------------------------------------------------------------

def test_json_document_matches_the_schema_and_the_contract() -> None:
    data = json.loads(to_json(db_fleet()))
    validate(data)
    assert data["schema"] == SCHEMA_VERSION == 2 and data["exit"] == 2 and data["status"] == "error"
    assert data["summary"] == {"hosts": 2, "ok": 1, "drift": 0, "unreachable": 1, "error": 0}
    db = data["hosts"][0]
    assert {"port": 3306, "proto": "tcp", "admitted": "restricted", "listening": False,
            "processes": []} in db["ports"]
    assert db["ufw"] == {"state": "active", "incoming": "deny", "outgoing": "allow",
                         "logging": "low", "ipv6": True, "running": True, "conf_enabled": True}
    assert data["hosts"][1]["ufw"] is None and data["hosts"][1]["ports"] == []
    assert {"kind": "unreachable", "severity": "error", "host": "web1", "port": None,
            "ports": None, "proto": None, "role": None, "processes": [],
            "detail": "unreachable: Could not connect (timed out)"} in data["findings"]


def test_drifted_host_document_matches_the_schema() -> None:
    drifted = {**CONVERGED, "rules4": DRIFTED_RULES, "fragment": render_fragment((50000, 50100))}
    audits = [audit_host(web_ftp_plan(), seen(drifted, SS_WEB))]
    fleet = FleetAudit("inventory.py", ("web*",), audits)
    data = document(fleet)
    validate(data)
    assert data["limit"] == ["web*"] and data["exit"] == 1
    assert data["hosts"][0]["passive_ports"] == {
        "wanted": "49152:65534", "proftpd": "50000:50100", "proftpd_origin": f"{FRAGMENT_PATH}:4",
        "fragment": "50000:50100", "ufw": "49152:65534", "match": False}
    kinds_seen = {f["kind"] for f in data["findings"]}
    assert {"missing_rule", "stray_rule", "unmanaged_rule", "passive_disagree"} <= kinds_seen


def test_error_only_document_matches_the_schema() -> None:
    missing = fleet_error("inventory_error", "no inventory file")
    fleet = FleetAudit("nothere.py", (), errors=[missing])
    data = document(fleet)
    validate(data)
    assert data["exit"] == 2 and data["hosts"] == [] and data["findings"][0]["host"] is None


def test_schema_and_readme_name_every_finding_kind() -> None:
    enum = SCHEMA["$defs"]["finding"]["properties"]["kind"]["enum"]
    assert sorted(enum) == sorted(KINDS) and len(enum) == len(set(enum))
    readme = (Path(__file__).resolve().parent.parent / "docs" / "audit.md").read_text()
    audit_section = readme.split("## Fleet audit", 1)[1].split("\n## ", 1)[0]
    assert [k for k in KINDS if f"`{k}`" not in audit_section] == []


def test_schema_rejects_what_the_contract_forbids() -> None:
    data = document(db_fleet())
    data["hosts"][0]["ports"][0]["admitted"] = "●"  # a display symbol is not a state
    with pytest.raises(jsonschema.ValidationError):
        validate(data)
    for drop in (lambda d: d.pop("summary"), lambda d: d["hosts"][0].pop("verdict"),
                 lambda d: d["hosts"][0]["ports"][0].pop("listening"),
                 lambda d: d["findings"][0].pop("kind")):
        data = document(db_fleet())
        drop(data)  # a required field stays required
        with pytest.raises(jsonschema.ValidationError):
            validate(data)


def test_a_field_added_anywhere_still_validates() -> None:
    """The README promises that adding a field does not raise ``schema``: a consumer
    validating with this schema must accept a document from a later version with more
    fields, in every object."""
    drifted = {**CONVERGED, "rules4": DRIFTED_RULES, "fragment": render_fragment((50000, 50100))}
    data = document(FleetAudit("inventory.py", (), [audit_host(web_ftp_plan(),
                                                                seen(drifted, SS_WEB))]))
    host = data["hosts"][0]
    objects = [data, data["tool"], data["summary"], host, host["ufw"], host["passive_ports"],
               host["ports"][0], host["finding_counts"], data["findings"][0]]
    for obj in objects:
        obj["added_later"] = {"any": ["value"]}
    validate(data)


def test_the_schema_has_an_absolute_id_naming_its_version() -> None:
    schema_id = SCHEMA["$id"]
    assert re.fullmatch(r"https://[a-z0-9.-]+/\S+", schema_id), schema_id
    assert schema_id.endswith(f"/{SCHEMA_VERSION}.json")
    assert SCHEMA["properties"]["schema"]["const"] == SCHEMA_VERSION
    readme = (Path(__file__).resolve().parent.parent / "docs" / "audit.md").read_text()
    assert f"`{schema_id}`" in readme.split("### JSON (`--json`)", 1)[1]


def test_os_errors_are_a_message_and_a_path_never_a_bare_errno() -> None:
    assert error_text(IsADirectoryError(21, "Is a directory", "/tmp")) == "Is a directory: /tmp"
    assert error_text(PermissionError(13, "Permission denied", "/etc/shadow")) == (
        "Permission denied: /etc/shadow")
    assert error_text(OSError(18, "Invalid cross-device link", "/a", None, "/b")) == (
        "Invalid cross-device link: /a -> /b")
    assert error_text(ConnectionRefusedError(111, "Connection refused")) == "Connection refused"
    assert error_text(OSError(5)) != "5"


# --- text --------------------------------------------------------------------------------

def test_text_report() -> None:
    text = to_text(db_fleet(), tty=False)
    assert text.startswith("froxlor-fleet audit: 2 hosts, 1 ok, 0 drift, 1 unreachable, 0 errors")
    assert "web1: unreachable: Could not connect (timed out)" in text and "\033[" not in text
    assert "\033[" in to_text(db_fleet(), tty=True)
    assert re.search(r"^db1 +○( +·)+ +◌$", text, re.M), text  # 22 open, 3306 restricted


def test_text_groups_findings_by_severity() -> None:
    extra = {**CONVERGED, "rules4": [*rules4_of(CONVERGED),
                                     "### tuple ### allow tcp 8080 0.0.0.0/0 any 0.0.0.0/0 in"],
             "conf": {"LOGLEVEL": "high"}}
    audits = [audit_host(web_ftp_plan(), seen(extra, SS_WEB + [POSTFIX]))]
    fleet = FleetAudit("inventory.py", (), audits)
    text = to_text(fleet)
    drift, notices = text.split("\ndrift:\n")[1].split("\nnotices:\n")
    assert "web1: logging high (want low)" in drift
    assert "web1: unmanaged rule allow 8080/tcp (kept: firewall_purge_unmanaged is off)" in notices
    assert "web1: listening but blocked: 25/tcp (master)" in notices
    assert "web1: admitted, nothing listens: 80/tcp (web), 443/tcp (web)" in notices


def test_text_for_a_run_that_found_no_host() -> None:
    fleet = FleetAudit("inventory.py", ("nope",),
                       errors=[fleet_error("limit_unmatched", "--limit 'nope' matches no host")])
    assert to_text(fleet).splitlines() == [
        "froxlor-fleet audit: 0 hosts, 0 ok, 0 drift, 0 unreachable, 1 error", "", "errors:",
        "  limit unmatched: --limit 'nope' matches no host"]


# --- Prometheus ----------------------------------------------------------------------------

SAMPLE = re.compile(r'^[a-z_]+(\{([a-z_]+="([^"\\]|\\.)*",?)*\})? -?[0-9.e+]+$')


def test_prometheus_text_format() -> None:
    text = to_prometheus(db_fleet(), now=1700000000)
    lines = text.splitlines()
    assert text.endswith("\n")
    for line in lines:
        assert line.startswith(("# HELP ", "# TYPE ")) or SAMPLE.match(line), line
    assert "froxlor_fleet_audit_exit_status 2" in lines
    assert "froxlor_fleet_audit_last_run_timestamp_seconds 1700000000" in lines
    assert 'froxlor_fleet_audit_hosts{verdict="unreachable"} 1' in lines
    assert 'froxlor_fleet_audit_host_verdict{host="web1",verdict="unreachable"} 1' in lines
    assert 'froxlor_fleet_audit_host_verdict{host="web1",verdict="ok"} 0' in lines
    assert ('froxlor_fleet_audit_findings{host="web1",kind="unreachable",severity="error"} 1'
            in lines)
    # port state as values: one series per host, port and proto, whatever its state
    assert 'froxlor_fleet_audit_port_admitted{host="db1",port="3306",proto="tcp"} 1' in lines
    assert 'froxlor_fleet_audit_port_admitted{host="db1",port="22",proto="tcp"} 2' in lines
    assert 'froxlor_fleet_audit_port_admitted{host="db1",port="80",proto="tcp"} 0' in lines
    assert 'froxlor_fleet_audit_port_listening{host="db1",port="3306",proto="tcp"} 0' in lines
    assert not [line for line in lines if "admitted=" in line or "listening=" in line]
    names = [line.split()[2] for line in lines if line.startswith("# TYPE")]
    assert len(names) == len(set(names))  # each metric family once


def test_prometheus_duration_of_the_run() -> None:
    lines = to_prometheus(db_fleet(), now=0, duration=12.3456).splitlines()
    assert "# TYPE froxlor_fleet_audit_duration_seconds gauge" in lines
    assert "froxlor_fleet_audit_duration_seconds 12.346" in lines
    without = to_prometheus(db_fleet(), now=0)  # not measured: no sample rather than a 0
    assert "froxlor_fleet_audit_duration_seconds " not in without


def test_prometheus_labels_are_escaped() -> None:
    fleet = FleetAudit("x", errors=[fleet_error("inventory_error", 'a "quoted"\\path\nline')])
    text = to_prometheus(fleet, now=0)
    assert 'kind="inventory_error"' in text
    bad = bad_data('we"ird\\host', ["x"])
    text = to_prometheus(FleetAudit("x", hosts=[bad]), now=0)
    assert 'host="we\\"ird\\\\host"' in text


def test_write_atomically_replaces_in_place_and_leaves_no_temp(tmp_path: Path) -> None:
    target = tmp_path / "froxlor_fleet.prom"
    target.write_text("old\n")
    inode_before = target.stat().st_ino
    write_atomically(str(target), "new\n")
    assert target.read_text() == "new\n"
    assert target.stat().st_ino != inode_before  # a new file renamed over the old one
    assert stat.S_IMODE(target.stat().st_mode) == 0o644
    assert sorted(os.listdir(tmp_path)) == ["froxlor_fleet.prom"]


def test_write_atomically_cleans_up_on_failure(tmp_path: Path) -> None:
    target = tmp_path / "is-a-dir"
    target.mkdir()
    with pytest.raises(OSError):
        write_atomically(str(target), "x\n")
    assert sorted(os.listdir(tmp_path)) == ["is-a-dir"]


def test_readme_json_example_follows_the_schema() -> None:
    readme = (Path(__file__).resolve().parent.parent / "docs" / "audit.md").read_text()
    block = readme.split("### JSON (`--json`)", 1)[1].split("```json\n", 1)[1].split("\n```", 1)[0]
    validate(json.loads(block))


PURE_FTPD = ["@bin pure-ftpd-mysql /usr/sbin/pure-ftpd-mysql", "@run pureftpd 733"]


def pure_ftpd_host(range_line: str | None, extra: tuple[str, ...] = (),
                   ss: list[str] | None = None, **spec) -> AuditState:
    """A converged web+ftp host (UFW admits 49152:65534) running pure-ftpd instead of
    ProFTPd, with ``range_line`` in /etc/pure-ftpd/conf/PassivePortRange (``None``: no file),
    ``extra`` dump lines (``@pure ForcePassiveIP ...``) and ``spec`` for build_fact
    (``pure_loaded``: its loaded marker)."""
    pure = [f"@pure PassivePortRange {range_line}"] if range_line is not None else []
    spec = {"scenario": "converged-web-ftp", "proftpd": [], "fragment": None,
            "ftp_lines": PURE_FTPD + pure + list(extra), **spec}
    return FleetAuditState().process(build_fact(spec) + [LISTENING_SECTION]
                                     + (SS_WEB if ss is None else ss))


def test_a_pure_ftpd_host_is_audited_by_its_passive_port_range() -> None:
    audit = audit_host(web_ftp_plan(), pure_ftpd_host("49152 65534"))
    assert audit.passive and audit.passive.match
    assert audit.passive.proftpd_origin == "/etc/pure-ftpd/conf/PassivePortRange"
    assert audit.verdict == "ok", kinds(audit)  # no fragment expected on a pure-ftpd host


def test_a_pure_ftpd_range_ufw_does_not_admit_is_drift() -> None:
    assert kinds(audit_host(web_ftp_plan(), pure_ftpd_host("40000 40100")))["passive_disagree"] == [
        "/etc/pure-ftpd/conf/PassivePortRange says 40000 40100; UFW admits 49152:65534"]
    assert kinds(audit_host(web_ftp_plan(), pure_ftpd_host(None)))["passive_disagree"] == [
        "pure-ftpd has no /etc/pure-ftpd/conf/PassivePortRange (passive transfers may use any "
        "port); UFW admits 49152:65534"]


# --- verdicts from the running daemon (issue 20) -------------------------------------------

PROFTPD_RUNS = {"proftpd": 21}  # the dump's pidfile check: ProFTPd runs (pid 21, as in SS_WEB)
SSHD_ONLY = SS_WEB[:1]  # ss without ProFTPd on 21


def test_a_fragment_the_running_proftpd_never_loaded_is_drift() -> None:
    loaded = audit_host(web_ftp_plan(), seen({**CONVERGED, "ftp_running": PROFTPD_RUNS}, SS_WEB))
    assert loaded.verdict == "ok", kinds(loaded)
    stale = audit_host(web_ftp_plan(), seen({**CONVERGED, "ftp_running": PROFTPD_RUNS,
                                             "loaded": "0" * 64}, SS_WEB))
    assert kinds(stale)["ftp_not_loaded"] == [
        f"ProFTPd runs, but not on {FRAGMENT_PATH} as it is on disk (its loaded marker "
        "differs): the deploy would restart it"]
    assert stale.verdict == "drift" and exit_status([stale]) == 1
    finding = next(f for f in stale.findings if f.kind == "ftp_not_loaded")
    assert (finding.severity, finding.role, finding.ports) == ("drift", "ftp", "49152:65534")
    # no marker at all (a run cut short before it wrote one): not known to be loaded
    unknown = audit_host(web_ftp_plan(), seen({**CONVERGED, "ftp_running": PROFTPD_RUNS,
                                               "loaded": None}, SS_WEB))
    assert "ftp_not_loaded" in kinds(unknown)
    # a stopped ProFTPd reads the file when it starts (ftpplan.fragment_loaded): nothing to restart
    stopped = audit_host(web_ftp_plan(), seen({**CONVERGED, "loaded": "0" * 64}, SS_WEB))
    assert "ftp_not_loaded" not in kinds(stopped)


def test_pure_ftpd_files_it_never_loaded_are_drift() -> None:
    assert audit_host(web_ftp_plan(), pure_ftpd_host("49152 65534")).verdict == "ok"
    stale = audit_host(web_ftp_plan(), pure_ftpd_host("49152 65534", pure_loaded="0" * 64))
    assert kinds(stale).get("ftp_not_loaded") == [
        "pure-ftpd runs, but not on /etc/pure-ftpd/conf as it is on disk (its loaded marker "
        "differs): the deploy would restart it"]
    assert stale.verdict == "drift" and exit_status([stale]) == 1
    # the same range written otherwise: the deploy rewrites the file (and restarts)
    spaced = audit_host(web_ftp_plan(), pure_ftpd_host("49152  65534"))
    assert kinds(spaced)["fragment_drift"] == [
        "/etc/pure-ftpd/conf/PassivePortRange reads '49152  65534', the deploy writes "
        "'49152 65534'"]


def test_pure_ftpds_force_passive_ip_is_compared_with_ftp_masquerade_address() -> None:
    force = ("@pure ForcePassiveIP 203.0.113.9",)
    same = audit_host(web_ftp_plan(ftp_masquerade_address="203.0.113.9"),
                      pure_ftpd_host("49152 65534", force))
    assert same.verdict == "ok", kinds(same)
    other = audit_host(web_ftp_plan(ftp_masquerade_address="203.0.113.10"),
                       pure_ftpd_host("49152 65534", force))
    assert kinds(other)["force_passive_ip"] == [
        "pure-ftpd's ForcePassiveIP is 203.0.113.9; ftp_masquerade_address wants 203.0.113.10"]
    assert other.verdict == "drift" and exit_status([other]) == 1
    unset = audit_host(web_ftp_plan(ftp_masquerade_address="203.0.113.9"),
                       pure_ftpd_host("49152 65534"))
    assert kinds(unset)["force_passive_ip"] == [
        "pure-ftpd's ForcePassiveIP is not set; ftp_masquerade_address wants 203.0.113.9"]
    leftover = audit_host(web_ftp_plan(), pure_ftpd_host("49152 65534", force))
    assert kinds(leftover)["force_passive_ip"] == [
        "pure-ftpd's ForcePassiveIP is 203.0.113.9; ftp_masquerade_address wants none"]


def test_an_ftp_host_whose_ftp_daemon_is_down_is_an_error() -> None:
    down = audit_host(web_ftp_plan(), seen(CONVERGED, SSHD_ONLY))
    assert kinds(down)["ftp_down"] == ["FTP down: nothing listens on 21/tcp (proftpd is not running)"]
    finding = next(f for f in down.findings if f.kind == "ftp_down")
    assert (finding.severity, finding.port, finding.proto, finding.role) == \
        ("error", 21, "tcp", "ftp")
    assert down.verdict == "error" and exit_status([down]) == 2
    assert all("21/tcp" not in line for line in kinds(down)["idle_admitted"])  # said once
    # the pid file says it runs, yet nothing listens on 21
    deaf = audit_host(web_ftp_plan(), seen({**CONVERGED, "ftp_running": PROFTPD_RUNS}, SSHD_ONLY))
    assert kinds(deaf)["ftp_down"] == [
        "FTP down: nothing listens on 21/tcp (proftpd runs but does not listen there)"]
    # no public socket at all (no ss on the host) while it runs: can't tell, not claimed
    blind = audit_host(web_ftp_plan(), seen({**CONVERGED, "ftp_running": PROFTPD_RUNS}, []))
    assert "ftp_down" not in kinds(blind)
    pure_down = audit_host(web_ftp_plan(), pure_ftpd_host("49152 65534", ss=SSHD_ONLY))
    assert pure_down.verdict == "error"
    # hosts without the ftp role: nothing to be down
    web_only = check_inventory(make_inventory({"w": (["web1"], {"froxlor_roles": ["web"]})}))
    assert "ftp_down" not in kinds(audit_host(web_only["web1"], seen(CONVERGED, SSHD_ONLY)))
    text = to_text(FleetAudit("inventory.py", (), [down]))
    assert "web1: FTP down: nothing listens on 21/tcp (proftpd is not running)" in \
        text.split("errors:", 1)[1].split("drift:", 1)[0]
    data = document(FleetAudit("inventory.py", (), [down]))
    validate(data)
    assert data["exit"] == 2 and data["hosts"][0]["verdict"] == "error"


def test_ufw_chains_loaded_while_enabled_no_filter_and_are_drift() -> None:
    split = audit_host(web_ftp_plan(), seen({**CONVERGED, "conf": {"ENABLED": "no"}},
                                            SS_WEB + [POSTFIX]))
    assert split.ufw and split.ufw.state == "running_disabled"
    assert (split.ufw.running, split.ufw.conf_enabled) == (True, False)
    assert kinds(split)["ufw_not_enabled"] == [
        "ufw filters (its chains are loaded) but ufw.conf says ENABLED=no: after a reboot "
        "nothing is filtered (want active)"]
    assert "setting" not in kinds(split)
    assert split.verdict == "drift" and exit_status([split]) == 1
    smtp, mysql, web = split.port(25, "tcp"), split.port(3306, "tcp"), split.port(80, "tcp")
    assert smtp and smtp.admitted == "blocked" and mysql and mysql.admitted == "blocked"
    assert web and web.admitted == "open"
    assert "listening but blocked: 25/tcp (master)" in kinds(split)["listening_blocked"]
    data = document(FleetAudit("inventory.py", (), [split]))
    validate(data)
    assert data["hosts"][0]["ufw"]["state"] == "running_disabled"
    assert (data["hosts"][0]["ufw"]["running"], data["hosts"][0]["ufw"]["conf_enabled"]) == \
        (True, False)
    assert "running_disabled" in to_text(FleetAudit("inventory.py", (), [split]))
    # with firewall_enabled off the deploy disables it (chains loaded): drift as well
    off = audit_host(web_ftp_plan(firewall_enabled=False),
                     seen({**CONVERGED, "conf": {"ENABLED": "no"}}, SS_WEB))
    assert kinds(off)["setting"] == ["ufw running with ENABLED=no (want inactive)"]
    # ENABLED=yes but no chains loaded: filters nothing now
    stopped = audit_host(web_ftp_plan(), seen({**CONVERGED, "running": "no"}, SS_WEB + [POSTFIX]))
    assert stopped.ufw and stopped.ufw.state == "inactive"
    assert kinds(stopped)["setting"] == ["ufw inactive (want active)"]
    smtp = stopped.port(25, "tcp")
    assert smtp and smtp.admitted == "open"


FTP_40000_V6 = tuple_line("allow", "40000:40100", "froxlor-fleet:ftp", src="::/0", family=6)


def test_leftover_v6_rules_with_ipv6_off_count_nowhere() -> None:
    leftover = with_rules(converged_rules(4), [*converged_rules(6), FTP_40000_V6],
                          default={"IPV6": "no"})
    audit = audit_host(web_ftp_plan(), seen(leftover, SS_WEB))
    assert audit.passive and audit.passive.ufw == "49152:65534" and audit.passive.match
    assert audit.verdict == "ok", kinds(audit)
    assert audit.ufw and audit.ufw.ipv6 is False
    # the same rule with IPV6=yes is live: UFW admits both ranges (the deploy deletes it)
    live = audit_host(web_ftp_plan(), seen(with_rules(converged_rules(4),
                                                      [*converged_rules(6), FTP_40000_V6]),
                                           SS_WEB))
    assert live.passive and live.passive.ufw == "40000:40100,49152:65534"
    assert live.verdict == "drift"


def ban(jail: str, address: str) -> str:
    return tuple_line("reject", "any", f"by Fail2Ban after 5 attempts against {jail}",
                      src=address, proto="any")


BANS = [ban("sshd", "203.0.113.1"), ban("proftpd", "203.0.113.2"), ban("sshd", "203.0.113.3"),
        ban("sshd", "203.0.113.4")]


def test_fail2bans_bans_are_a_notice_counted_per_jail() -> None:
    audit = audit_host(web_ftp_plan(), seen(with_rules([*BANS, *converged_rules(4)]), SS_WEB))
    assert kinds(audit)["bans"] == ["fail2ban bans: sshd 3, proftpd 1"]
    bans = next(f for f in audit.findings if f.kind == "bans")
    assert bans.severity == "notice" and bans.jails == (("sshd", 3), ("proftpd", 1))
    assert "unmanaged_rule" not in kinds(audit)
    assert audit.verdict == "ok" and exit_status([audit]) == 0
    ssh = audit.port(22, "tcp")
    assert ssh and ssh.admitted == "open"  # banned addresses don't make a port restricted
    purged = audit_host(web_ftp_plan(firewall_purge_unmanaged=True),
                        seen(with_rules([*BANS, *converged_rules(4)]), SS_WEB))
    assert purged.verdict == "ok" and exit_status([purged]) == 0
    fleet = FleetAudit("inventory.py", (), [audit])
    data = document(fleet)
    validate(data)
    found = next(f for f in data["findings"] if f["kind"] == "bans")
    assert found["jails"] == {"sshd": 3, "proftpd": 1} and found["severity"] == "notice"
    assert data["exit"] == 0
    assert "web1: fail2ban bans: sshd 3, proftpd 1" in to_text(fleet).split("notices:", 1)[1]
    lines = to_prometheus(fleet, now=0).splitlines()
    assert "# TYPE froxlor_fleet_audit_bans gauge" in lines
    assert 'froxlor_fleet_audit_bans{host="web1",jail="sshd"} 3' in lines
    assert 'froxlor_fleet_audit_bans{host="web1",jail="proftpd"} 1' in lines
    for line in lines:
        assert line.startswith(("# HELP ", "# TYPE ")) or SAMPLE.match(line), line
    assert all("203.0.113." not in line for line in lines)  # counts, never the addresses


@pytest.mark.parametrize("tenant,kind,severity,exit_code", [
    ("nftables-flush", "nftables_at_boot", "drift", 1),
    ("f2b-flushed", "f2b_flushed", "drift", 1),
    ("docker", "docker", "notice", 0),
])
def test_other_tenants_conflicts_are_named_in_the_audit(tenant, kind, severity,
                                                        exit_code) -> None:
    """Issue 19: what the deploy warns about is a finding too: an nftables.service that
    wipes UFW at boot and fail2ban's chains ufw flushes make the audit non-green; Docker
    is a notice (its published ports bypass UFW, the audit can't see them)."""
    audit = audit_host(web_ftp_plan(), seen({**CONVERGED, "tenants": [tenant]}, SS_WEB))
    found = [f for f in audit.findings if f.kind == kind]
    assert len(found) == 1 and found[0].severity == severity, audit.findings
    assert exit_status([audit]) == exit_code
    data = document(FleetAudit("inventory.py", (), [audit]))
    validate(data)
    assert [f["kind"] for f in data["findings"] if f["kind"] != "idle_admitted"] == [kind]


def test_iptables_persistent_where_ufw_is_missing_is_named_in_the_audit() -> None:
    spec = {**CONVERGED, "tenants": ["persistent iptables-persistent"], "ufw": ""}
    audit = audit_host(web_ftp_plan(), seen(spec, SS_WEB))
    found = [f for f in audit.findings if f.kind == "persistent"]
    assert len(found) == 1 and "installing ufw would remove it" in found[0].detail
