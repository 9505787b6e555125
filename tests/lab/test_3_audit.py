"""The read-only fleet audit on the lab fleet: clean, drift named, unreachable host,
the JSON contract, Prometheus output and pyinfra's --limit; rule actions (limit, a deny
before or after the allow); the passive range ProFTPd really uses (an admin's own
PassivePorts in proftpd.conf)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from importlib import resources

import jsonschema

from conftest import ROOT, TEST_LAB
from lab.access import COMMAND_LOG
from lab.services import start_services, wait_ssh
from labtools import FRAGMENT

SCHEMA = json.loads(resources.files("froxlor_fleet.audit").joinpath("audit.schema.json")
                    .read_text())


def audit(*args: str) -> tuple[int, str]:
    res = subprocess.run([sys.executable, "-m", "froxlor_fleet", "audit", "inventory.py", *args],
                         cwd=TEST_LAB, capture_output=True, text=True, timeout=120,
                         env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert "Traceback" not in res.stdout + res.stderr, res.stdout + res.stderr
    return res.returncode, res.stdout + res.stderr


def audit_json(*args: str) -> tuple[int, dict]:
    res = subprocess.run([sys.executable, "-m", "froxlor_fleet", "audit", "inventory.py",
                          "--json", *args], cwd=TEST_LAB, capture_output=True, text=True,
                         timeout=120, env=dict(os.environ, PYTHONPATH=str(ROOT)))
    doc = json.loads(res.stdout)
    jsonschema.validate(doc, SCHEMA)
    assert doc["exit"] == res.returncode
    return res.returncode, doc


def findings(doc: dict, host: str, kind: str) -> list[str]:
    return [f["detail"] for f in doc["findings"] if f["host"] == host and f["kind"] == kind]


def test_converged_fleet_audits_clean(lab) -> None:
    assert lab.deploy("-y").returncode == 0
    before = lab.state_files()
    code, out = audit()
    assert code == 0, out
    assert f"{len(lab.hosts)} hosts, {len(lab.hosts)} ok, 0 drift, 0 unreachable, 0 errors" in out
    # proftpd listens everywhere, but only ftp hosts admit 21: a notice, not drift
    mail = lab.by_kind("mail")[0]
    assert f"{mail}: listening but blocked: 21/tcp (proftpd)" in out
    assert "\033[" not in out  # no colour when not writing to a terminal
    code, doc = audit_json()
    assert code == 0 and doc["status"] == "ok"
    ports = {(p["port"], p["proto"]): p for p in next(h for h in doc["hosts"]
                                                       if h["host"] == mail)["ports"]}
    assert ports[(21, "tcp")] == {"port": 21, "proto": "tcp", "admitted": "blocked",
                                  "listening": True, "processes": ["proftpd"]}
    assert ports[(22, "tcp")]["admitted"] == "open" and ports[(22, "tcp")]["listening"]
    assert lab.state_files() == before  # the audit changed nothing


def test_each_drift_is_found_and_named(lab) -> None:
    web, mail, dns, db = (lab.by_kind(k)[0] for k in ("web", "mail", "dns", "db"))
    lab.sh(mail, "ufw allow 8080/tcp >/dev/null && ufw delete allow 110,995/tcp >/dev/null")
    lab.sh(dns, "ufw --force disable >/dev/null")
    lab.sh(db, "ufw default reject incoming >/dev/null && ufw logging medium >/dev/null")
    lab.sh(web, f"sed -i 's/^PassivePorts .*/PassivePorts 40000 40100/' {FRAGMENT}")
    before = lab.state_files()
    try:
        code, doc = audit_json()
        assert code == 1, doc
        report = {h["host"]: h for h in doc["hosts"]}
        assert findings(doc, mail, "unmanaged_rule") == ["unmanaged rule allow 8080/tcp"]
        assert findings(doc, mail, "missing_rule") == ["missing rule allow 110,995/tcp (pop3)"]
        assert report[dns]["ufw"]["state"] == "inactive"
        assert findings(doc, dns, "setting") == ["ufw inactive (want active)"]
        assert findings(doc, db, "setting") == ["incoming reject (want deny)",
                                                 "logging medium (want low)"]
        assert report[web]["passive_ports"] == {
            "wanted": "50000:50100", "proftpd": "40000:40100", "ufw": "50000:50100",
            "proftpd_origin": f"{FRAGMENT}:4", "fragment": "40000:40100", "match": False}
        assert findings(doc, web, "passive_disagree") == \
            [f"{FRAGMENT}:4 sets PassivePorts 40000 40100; UFW admits 50000:50100"]
        assert {h for h, r in report.items() if r["verdict"] == "drift"} == {web, mail, dns, db}
        code, text = audit()
        assert code == 1
        assert f"{mail}: unmanaged rule allow 8080/tcp" in text
        assert f"{web}: {FRAGMENT}:4 sets PassivePorts 40000 40100; UFW admits 50000:50100" in text
        assert "40000:40100|50000:50100 ≠" in text
        assert lab.state_files() == before
    finally:
        lab.sh(mail, "ufw delete allow 8080/tcp >/dev/null")
        assert lab.deploy("-y").returncode == 0
    assert audit()[0] == 0


PROFTPD_CONF = "/etc/proftpd/proftpd.conf"


def test_an_admins_passive_ports_in_proftpd_conf_are_the_range_audited(lab) -> None:
    """froxlor's documentation has admins set PassivePorts in proftpd.conf. ProFTPd reads
    that before conf.d/ and uses the first one: the audit names that file:line."""
    web = lab.by_kind("web")[0]
    lab.sh(web, f"cp -p {PROFTPD_CONF} {PROFTPD_CONF}.lab-bak")
    try:
        # where an admin writes it: before proftpd.conf's last line, Include /etc/proftpd/conf.d/
        lab.sh(web, f"sed -i '\\|^Include /etc/proftpd/conf.d/|i PassivePorts 40000 40100' "
                    f"{PROFTPD_CONF}")
        numbered = lab.sh(web, f"grep -n '^PassivePorts' {PROFTPD_CONF}").stdout.split()
        assert len(numbered) == 3, numbered  # exactly one such line: "N:PassivePorts 40000 40100"
        where = f"{PROFTPD_CONF}:{numbered[0].split(':')[0]}"
        code, doc = audit_json()
        assert code == 1, doc
        report = {h["host"]: h for h in doc["hosts"]}
        assert report[web]["passive_ports"] == {
            "wanted": "50000:50100", "proftpd": "40000:40100", "ufw": "50000:50100",
            "proftpd_origin": where, "fragment": "50000:50100", "match": False}
        assert findings(doc, web, "passive_disagree") == [
            f"{where} sets PassivePorts 40000 40100; UFW admits 50000:50100 (ProFTPd uses it, "
            "not this deploy's fragment; remove it there)"]
        assert {h for h, r in report.items() if r["verdict"] != "ok"} == {web}
        code, text = audit()
        assert code == 1 and "40000:40100|50000:50100 ≠" in text
        # the same range as the data: ProFTPd still uses proftpd.conf's line, but the
        # two sides agree: not drift
        lab.sh(web, f"sed -i 's/^PassivePorts 40000 40100$/PassivePorts 50000 50100/' "
                    f"{PROFTPD_CONF}")
        code, doc = audit_json()
        assert code == 0, doc
        passive = next(h for h in doc["hosts"] if h["host"] == web)["passive_ports"]
        assert (passive["proftpd"], passive["proftpd_origin"], passive["match"]) == \
            ("50000:50100", where, True)
    finally:
        lab.sh(web, f"mv {PROFTPD_CONF}.lab-bak {PROFTPD_CONF}")
    assert audit()[0] == 0


def test_a_rule_with_another_action_is_drift(lab) -> None:
    code, doc = audit_json("--data", "ssh_rate_limit=true")
    assert code == 1, doc
    for name in lab.hosts:
        assert findings(doc, name, "action_rule") == ["allow 22/tcp should be limit (ssh)"], name
        assert findings(doc, name, "retag_rule") == [], name


def test_a_deny_after_the_allow_is_shadowed_and_before_it_restricts(lab) -> None:
    web = lab.by_kind("web")[0]
    web_data = lab.group_data("web_servers")
    deny = ('firewall_extra_rules = [{"port": 80, "action": "deny", '
            '"sources": ["203.0.113.0/24"]}]\n')

    def port80(doc: dict) -> dict:
        ports = next(h for h in doc["hosts"] if h["host"] == web)["ports"]
        return next(p for p in ports if (p["port"], p["proto"]) == (80, "tcp"))

    try:
        lab.write_group_data("web_servers", web_data + deny)
        # by hand, ufw appends it: after the web role's allow, which matches first
        lab.sh(web, "ufw deny proto tcp from 203.0.113.0/24 to any port 80 "
                    "comment 'froxlor-fleet:extra' >/dev/null")
        code, doc = audit_json()
        assert code == 1, doc
        assert findings(doc, web, "shadowed_rule") == [
            "deny 80/tcp from 203.0.113.0/24 (extra) is shadowed: allow 80,443/tcp (web) matches "
            "first; delete the deny by hand and deploy again to put it first"]
        assert port80(doc)["admitted"] == "open"
        # the deploy puts it before the allows (ufw prepend)
        lab.sh(web, "ufw delete deny proto tcp from 203.0.113.0/24 to any port 80 >/dev/null")
        assert lab.deploy("-y").returncode == 0
        code, doc = audit_json()
        assert code == 0, doc
        assert port80(doc)["admitted"] == "restricted"
        idle = findings(doc, web, "idle_admitted")  # a deny admits nothing: never "(extra)"
        assert "admitted, nothing listens: 80/tcp (web)" in idle
        assert not [line for line in idle if "(extra)" in line], idle
    finally:
        lab.write_group_data("web_servers", web_data)
        assert lab.deploy("-y").returncode == 0  # the deny goes again (a stray managed rule)
    assert audit()[0] == 0


def test_a_hand_made_rule_alone_is_drift_only_with_purge(lab) -> None:
    mail = lab.by_kind("mail")[0]
    lab.sh(mail, "ufw allow 8080/tcp >/dev/null")
    try:
        code, doc = audit_json()
        assert code == 0, doc  # the deploy would keep it: a notice
        unmanaged = [f["severity"] for f in doc["findings"] if f["kind"] == "unmanaged_rule"]
        assert unmanaged == ["notice"]
        code, doc = audit_json("--data", "firewall_purge_unmanaged=true")
        assert code == 1
    finally:
        lab.sh(mail, "ufw delete allow 8080/tcp >/dev/null")


def test_unreachable_host_is_reported_while_others_are_audited(lab) -> None:
    dns = lab.by_kind("dns")[0]
    lab.sh(dns, "kill $(cat /run/sshd.pid)")
    try:
        code, report = audit_json()
    finally:
        start_services(dns, TEST_LAB / "hosts" / dns)
        wait_ssh([lab.ip(dns)])
    assert code == 2, report
    assert report["summary"]["unreachable"] == 1 and report["summary"]["ok"] == len(lab.hosts) - 1
    by_host = {h["host"]: h for h in report["hosts"]}
    assert by_host[dns]["verdict"] == "unreachable"
    assert findings(report, dns, "unreachable")[0].startswith("unreachable: ")
    assert audit()[0] == 0


def test_audit_reads_each_host_with_one_command(lab) -> None:
    for name in lab.hosts:
        lab.sh(name, f": > {COMMAND_LOG}")
    assert audit()[0] == 0
    for name in lab.hosts:
        assert len(lab.sh(name, f"cat {COMMAND_LOG}").stdout.splitlines()) == 1, name


def test_limit_takes_groups_and_globs_and_reads_only_those(lab) -> None:
    web = lab.by_kind("web")
    for name in lab.hosts:
        lab.sh(name, f": > {COMMAND_LOG}")
    code, doc = audit_json("--limit", "web_servers")
    assert code == 0 and sorted(h["host"] for h in doc["hosts"]) == sorted(web)
    for name in lab.hosts:
        lines = lab.sh(name, f"cat {COMMAND_LOG}").stdout.splitlines()
        assert len(lines) == (1 if name in web else 0), name
    prefix = web[0][:-1]
    code, doc = audit_json("--limit", f"{prefix}*")
    assert code == 0 and len(doc["hosts"]) == len(lab.hosts)
    code, doc = audit_json("--limit", "no_such_group")
    assert code == 2 and doc["findings"][0]["kind"] == "limit_unmatched"


def test_prometheus_file_for_node_exporter(lab, tmp_path) -> None:
    prom = tmp_path / "froxlor_fleet.prom"
    code, _ = audit("--prometheus", str(prom))
    assert code == 0
    text = prom.read_text()
    assert "froxlor_fleet_audit_exit_status 0" in text.splitlines()
    for name in lab.hosts:
        assert f'froxlor_fleet_audit_host_verdict{{host="{name}",verdict="ok"}} 1' in text


def test_console_script_is_the_same_program(lab) -> None:
    script = shutil.which("froxlor-fleet") or str(ROOT / ".venv" / "bin" / "froxlor-fleet")
    outputs = []
    for command in ([script], [sys.executable, "-m", "froxlor_fleet"]):
        res = subprocess.run([*command, "audit", "inventory.py"], cwd=TEST_LAB,
                             capture_output=True, text=True, timeout=120)
        assert res.returncode == 0, res.stdout + res.stderr
        outputs.append(res.stdout)
    assert outputs[0] == outputs[1]


def test_bad_data_is_an_error(lab) -> None:
    web_data = lab.group_data("web_servers")
    try:
        lab.write_group_data("web_servers", 'froxlor_roles = ["wbe"]\n')
        code, out = audit()
    finally:
        lab.write_group_data("web_servers", web_data)
    assert code == 2 and "froxlor_roles = 'wbe': unknown role" in out and "Traceback" not in out
