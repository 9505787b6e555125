"""The read-only fleet audit on the lab fleet: clean, drift named, unreachable host."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from conftest import ROOT, TEST_LAB
from lab import lab as labmod
from labtools import FRAGMENT


def audit(*args: str) -> tuple[int, str]:
    res = subprocess.run([sys.executable, "-m", "froxlor_fleet", "audit", "inventory.py", *args],
                         cwd=TEST_LAB, capture_output=True, text=True, timeout=120,
                         env=dict(os.environ, PYTHONPATH=str(ROOT)))
    return res.returncode, res.stdout + res.stderr


def test_converged_fleet_audits_clean(lab) -> None:
    assert lab.deploy("-y").returncode == 0
    before = lab.state_files()
    code, out = audit()
    assert code == 0, out
    assert f"{len(lab.hosts)} hosts, {len(lab.hosts)} ok, 0 drift, 0 unreachable" in out
    # proftpd listens everywhere, but only ftp hosts admit 21: a finding, not drift
    mail = lab.by_kind("mail")[0]
    assert f"{mail}: listening but blocked: 21/tcp (proftpd)" in out
    assert "\033[" not in out  # no colour when not writing to a terminal
    assert lab.state_files() == before  # the audit changed nothing


def test_each_drift_is_found_and_named(lab) -> None:
    web, mail, dns, db = (lab.by_kind(k)[0] for k in ("web", "mail", "dns", "db"))
    lab.sh(mail, "ufw allow 8080/tcp >/dev/null && ufw delete allow 110,995/tcp >/dev/null")
    lab.sh(dns, "ufw --force disable >/dev/null")
    lab.sh(db, "ufw default reject incoming >/dev/null && ufw logging medium >/dev/null")
    lab.sh(web, f"sed -i 's/^PassivePorts .*/PassivePorts 40000 40100/' {FRAGMENT}")
    before = lab.state_files()
    try:
        code, out = audit("--json")
        assert code == 1, out
        report = {h["host"]: h for h in json.loads(out)["hosts"]}
        assert report[mail]["unmanaged"] == ["allow 8080/tcp"]
        assert report[mail]["missing"] == ["allow 110,995/tcp (pop3)"]
        assert report[dns]["ufw"] == "inactive"
        assert report[dns]["settings"] == ["ufw inactive (want active)"]
        assert report[db]["settings"] == ["incoming reject (want deny)", "logging medium (want low)"]
        assert report[web]["passive_mismatch"] and report[web]["passive_proftpd"] == "40000:40100"
        assert report[web]["passive_ufw"] == "50000:50100"
        assert {h for h, r in report.items() if r["verdict"] == "drift"} == {web, mail, dns, db}
        code, text = audit()
        assert code == 1
        assert f"{mail}: unmanaged rule allow 8080/tcp" in text
        assert f"{web}: passive ports: proftpd 40000:40100, ufw 50000:50100" in text
        assert lab.state_files() == before
    finally:
        lab.sh(mail, "ufw delete allow 8080/tcp >/dev/null")
        assert lab.deploy("-y").returncode == 0
    assert audit()[0] == 0


def test_unreachable_host_is_reported_while_others_are_audited(lab) -> None:
    dns = lab.by_kind("dns")[0]
    lab.sh(dns, "kill $(cat /run/sshd.pid)")
    try:
        code, out = audit("--json")
    finally:
        labmod.start_services(dns, TEST_LAB / "hosts" / dns)
        labmod.wait_ssh([lab.ip(dns)])
    assert code == 2, out
    report = json.loads(out)
    assert report["summary"]["unreachable"] == 1 and report["summary"]["ok"] == len(lab.hosts) - 1
    by_host = {h["host"]: h for h in report["hosts"]}
    assert by_host[dns]["verdict"] == "unreachable" and by_host[dns]["error"]
    assert audit()[0] == 0


def test_audit_reads_each_host_with_one_command(lab) -> None:
    for name in lab.hosts:
        lab.sh(name, f": > {labmod.COMMAND_LOG}")
    assert audit()[0] == 0
    for name in lab.hosts:
        assert len(lab.sh(name, f"cat {labmod.COMMAND_LOG}").stdout.splitlines()) == 1, name


def test_bad_data_is_an_error(lab) -> None:
    web_data = lab.group_data("web_servers")
    try:
        lab.write_group_data("web_servers", 'froxlor_roles = ["wbe"]\n')
        code, out = audit()
    finally:
        lab.write_group_data("web_servers", web_data)
    assert code == 2 and "froxlor_roles = 'wbe': unknown role" in out and "Traceback" not in out
