"""The audit's comparison, against state captured from real ufw and a real lab host's ss."""

from __future__ import annotations

import json

from froxlor_fleet.audit import (AuditState, FleetAuditState, audit_fleet, audit_host,
                                 exit_status, parse_listening, to_json, to_text)
from froxlor_fleet.hoststate import SECTION
from froxlor_fleet.proftpd import render_fragment
from froxlor_fleet.validation import check_inventory
from helpers import FIXTURES, build_fact, make_inventory

SS_WEB = (FIXTURES / "ss-lab-web-host.txt").read_text().splitlines()  # real lab capture
POSTFIX = 'tcp LISTEN 0 100 0.0.0.0:25 0.0.0.0:* users:(("master",pid=900,fd=13))'
NAMED_UDP = 'udp UNCONN 0 0 0.0.0.0:53 0.0.0.0:* users:(("named",pid=77,fd=5))'
LOCAL_MYSQL = 'tcp LISTEN 0 80 127.0.0.1:3306 0.0.0.0:* users:(("mariadbd",pid=5,fd=20))'


def web_ftp_plan(**data):
    groups = {"web_servers": (["web1"], {"froxlor_roles": ["web", "ftp"], **data})}
    return check_inventory(make_inventory(groups))["web1"]


def seen(fact_spec: dict, ss_lines: list[str]) -> AuditState:
    lines = build_fact(fact_spec) + [f"{SECTION}listening"] + ss_lines
    return FleetAuditState().process(lines)


CONVERGED = {"scenario": "converged-web-ftp", "fragment": render_fragment((49152, 65534))}


def test_parse_listening_keeps_public_sockets_only() -> None:
    found = parse_listening([f"{SECTION}listening", *SS_WEB, POSTFIX, NAMED_UDP, LOCAL_MYSQL])
    assert found == {(22, "tcp"): ["sshd"], (21, "tcp"): ["proftpd"], (25, "tcp"): ["master"],
                     (53, "udp"): ["named"]}


def test_converged_host_audits_clean() -> None:
    audit = audit_host(web_ftp_plan(), seen(CONVERGED, SS_WEB))
    assert audit.verdict == "ok" and not audit.drift
    assert audit.ufw == "active"
    assert (audit.passive_proftpd, audit.passive_ufw, audit.passive_mismatch) == \
        ("49152:65534", "49152:65534", False)
    assert audit.ports["22/tcp"] == "●" and audit.ports["21/tcp"] == "●"
    assert audit.ports["80/tcp"] == "○" and audit.ports["3306/tcp"] == "·"
    assert audit.idle_admitted == ["80/tcp (web)", "443/tcp (web)"]
    assert audit.blocked_listeners == []


def test_listening_but_blocked_is_found() -> None:
    audit = audit_host(web_ftp_plan(), seen(CONVERGED, SS_WEB + [POSTFIX]))
    assert audit.blocked_listeners == ["25/tcp (master)"]
    assert audit.ports["25/tcp"] == "✗"
    assert audit.verdict == "ok"  # a finding, not firewall drift


def test_each_kind_of_drift_is_named() -> None:
    drifted = {**CONVERGED,
               "rules4": ["### tuple ### allow tcp 21 0.0.0.0/0 any 0.0.0.0/0 in comment=66726f786c6f722d666c6565743a667470",
                          "### tuple ### allow tcp 22 0.0.0.0/0 any 0.0.0.0/0 in comment=66726f786c6f722d666c6565743a737368",
                          "### tuple ### allow tcp 80,443 0.0.0.0/0 any 0.0.0.0/0 in comment=66726f786c6f722d666c6565743a776562",
                          "### tuple ### allow tcp 8080 0.0.0.0/0 any 0.0.0.0/0 in",
                          "### tuple ### allow tcp 25 0.0.0.0/0 any 0.0.0.0/0 in comment=66726f786c6f722d666c6565743a736d7470"],
               "conf": {"LOGLEVEL": "medium"}, "default": {"DEFAULT_INPUT_POLICY": '"ACCEPT"'},
               "fragment": render_fragment((50000, 50100))}
    audit = audit_host(web_ftp_plan(), seen(drifted, SS_WEB))
    assert audit.verdict == "drift"
    assert "allow 49152:65534/tcp (ftp)" in audit.missing
    assert audit.stray == ["allow 25/tcp (smtp)"]
    assert audit.unmanaged == ["allow 8080/tcp"]
    assert audit.settings == ["incoming allow (want deny)", "logging medium (want low)"]
    assert audit.passive_mismatch and audit.passive_proftpd == "50000:50100"
    assert audit.ports["3306/tcp"] == "○"  # incoming policy allow: everything admitted


def test_inactive_ufw_is_drift_and_admits_everything() -> None:
    audit = audit_host(web_ftp_plan(), seen({**CONVERGED, "running": "no",
                                             "conf": {"ENABLED": "no"}}, SS_WEB + [POSTFIX]))
    assert audit.settings == ["ufw inactive (want active)"]
    assert audit.ports["25/tcp"] == "●" and audit.blocked_listeners == []


def test_restricted_mysql_and_exit_status_and_json() -> None:
    groups = {"db_servers": (["db1"], {"froxlor_roles": ["mysql"],
                                       "mysql_allowed_sources": ["10.0.0.0/8"]}),
              "web_servers": (["web1"], {"froxlor_roles": ["web"]})}
    plans = check_inventory(make_inventory(groups))
    db_rules = ["### tuple ### allow tcp 3306 0.0.0.0/0 any 10.0.0.0/8 in comment=66726f786c6f722d666c6565743a6d7973716c",
                "### tuple ### allow tcp 22 0.0.0.0/0 any 0.0.0.0/0 in comment=66726f786c6f722d666c6565743a737368"]
    db = seen({**CONVERGED, "rules4": db_rules, "rules6": [
        "### tuple ### allow tcp 22 ::/0 any ::/0 in comment=66726f786c6f722d666c6565743a737368"],
        "fragment": None}, [LOCAL_MYSQL])
    audits = audit_fleet(plans, {"db1": db}, {"web1": "Could not connect (timed out)"})
    assert [a.verdict for a in audits] == ["ok", "unreachable"]
    assert audits[0].ports["3306/tcp"] == "◌"
    assert exit_status(audits) == 2
    assert exit_status(audits[:1]) == 0
    data = json.loads(to_json(audits))
    assert data["summary"] == {"hosts": 2, "ok": 1, "drift": 0, "unreachable": 1, "exit": 2}
    assert data["hosts"][1]["error"] == "Could not connect (timed out)"
    text = to_text(audits, tty=False)
    assert "web1: unreachable: Could not connect (timed out)" in text and "\033[" not in text
    assert "\033[" in to_text(audits, tty=True)


def test_a_missing_rule_is_not_reported_as_idle() -> None:
    without_web = {**CONVERGED,
                   "rules4": ["### tuple ### allow tcp 21 0.0.0.0/0 any 0.0.0.0/0 in comment=66726f786c6f722d666c6565743a667470",
                              "### tuple ### allow tcp 22 0.0.0.0/0 any 0.0.0.0/0 in comment=66726f786c6f722d666c6565743a737368"],
                   "rules6": []}
    audit = audit_host(web_ftp_plan(), seen(without_web, SS_WEB))
    assert "allow 80,443/tcp (web)" in audit.missing
    assert audit.ports["80/tcp"] == "·" and audit.idle_admitted == []
