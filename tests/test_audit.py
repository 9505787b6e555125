"""The audit's comparison and reports, on state captured from real ufw and a real lab
host's ``ss`` (no pyinfra run here: see test_cli.py for the command end to end)."""

from __future__ import annotations

import json
import os
import re
import stat
from importlib import resources
from pathlib import Path

import jsonschema
import pytest

from froxlor_fleet.audit.compare import (FleetAudit, audit_host, bad_data, exit_status,
                                         fleet_error, unreachable)
from froxlor_fleet.audit.fact import LISTENING_SECTION, AuditState, FleetAuditState, parse_listening
from froxlor_fleet.audit.report import (SCHEMA_FILE, document, to_json, to_prometheus, to_text,
                                        write_atomically)
from froxlor_fleet.hoststate import FleetHostState
from froxlor_fleet.proftpd import render_fragment
from froxlor_fleet.validation import check_inventory
from helpers import FIXTURES, build_fact, make_inventory

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


def seen(fact_spec: dict, ss_lines: list[str]) -> AuditState:
    lines = build_fact(fact_spec) + [LISTENING_SECTION] + ss_lines
    return FleetAuditState().process(lines)


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
    assert found["passive_mismatch"] == \
        ["passive ports: proftpd 50000:50100, ufw 49152:65534, want 49152:65534"]
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


# --- JSON ------------------------------------------------------------------------------

def test_json_document_matches_the_schema_and_the_contract() -> None:
    data = json.loads(to_json(db_fleet()))
    validate(data)
    assert data["schema"] == 1 and data["exit"] == 2 and data["status"] == "error"
    assert data["summary"] == {"hosts": 2, "ok": 1, "drift": 0, "unreachable": 1, "error": 0}
    db = data["hosts"][0]
    assert {"port": 3306, "proto": "tcp", "admitted": "restricted", "listening": False,
            "processes": []} in db["ports"]
    assert db["ufw"] == {"state": "active", "incoming": "deny", "outgoing": "allow",
                         "logging": "low", "ipv6": True}
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
    assert data["hosts"][0]["passive_ports"] == {"wanted": "49152:65534", "proftpd": "50000:50100",
                                                 "ufw": "49152:65534", "match": False}
    kinds_seen = {f["kind"] for f in data["findings"]}
    assert {"missing_rule", "stray_rule", "unmanaged_rule", "passive_mismatch"} <= kinds_seen


def test_error_only_document_matches_the_schema() -> None:
    missing = fleet_error("inventory_error", "no inventory file")
    fleet = FleetAudit("nothere.py", (), errors=[missing])
    data = document(fleet)
    validate(data)
    assert data["exit"] == 2 and data["hosts"] == [] and data["findings"][0]["host"] is None


def test_schema_rejects_what_the_contract_forbids() -> None:
    data = document(db_fleet())
    data["hosts"][0]["ports"][0]["admitted"] = "●"  # a display symbol is not a state
    with pytest.raises(jsonschema.ValidationError):
        validate(data)


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
        "froxlor-fleet audit: 0 hosts, 0 ok, 0 drift, 0 unreachable, 1 errors", "", "errors:",
        "  limit unmatched: --limit 'nope' matches no host"]


# --- Prometheus ----------------------------------------------------------------------------

SAMPLE = re.compile(r'^[a-z_]+(\{([a-z_]+="([^"\\]|\\.)*",?)*\})? -?[0-9.e+]+$')


def test_prometheus_text_format() -> None:
    text = to_prometheus(db_fleet(), now=1700000000)
    lines = text.splitlines()
    assert text.endswith("\n")
    for line in lines:
        assert line.startswith("# HELP ") or line.startswith("# TYPE ") or SAMPLE.match(line), line
    assert "froxlor_fleet_audit_exit_status 2" in lines
    assert "froxlor_fleet_audit_last_run_timestamp_seconds 1700000000" in lines
    assert 'froxlor_fleet_audit_hosts{verdict="unreachable"} 1' in lines
    assert 'froxlor_fleet_audit_host_verdict{host="web1",verdict="unreachable"} 1' in lines
    assert 'froxlor_fleet_audit_host_verdict{host="web1",verdict="ok"} 0' in lines
    assert ('froxlor_fleet_audit_findings{host="web1",kind="unreachable",severity="error"} 1'
            in lines)
    assert ('froxlor_fleet_audit_port{host="db1",port="3306",proto="tcp",admitted="restricted",'
            'listening="false"} 1') in lines
    names = [line.split()[2] for line in lines if line.startswith("# TYPE")]
    assert len(names) == len(set(names))  # each metric family once


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
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    block = readme.split("### JSON (`--json`)", 1)[1].split("```json\n", 1)[1].split("\n```", 1)[0]
    validate(json.loads(block))
