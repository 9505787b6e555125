"""The audit's verdicts from what runs, not only from files (issue 20), on the lab
fleet: a ProFTPd that never loaded the fragment on disk is drift until the deploy
restarts it; an ftp host whose ProFTPd is down is an error (exit 2); UFW's chains
loaded while ufw.conf says ENABLED=no filter, and are drift, not "inactive"."""

from __future__ import annotations

import time

from conftest import TEST_LAB
from froxlor_fleet.model.catalog import LOADED_MARKER
from lab.services import start_services
from labtools import FRAGMENT
from test_3_audit import audit, audit_json, findings

UFW_CONF = "/etc/ufw/ufw.conf"


def test_a_fragment_the_running_proftpd_never_loaded_is_drift(lab) -> None:
    web = lab.by_kind("web")[0]
    assert lab.deploy("-y").returncode == 0
    assert audit()[0] == 0
    # the fragment on disk is the data's, but ProFTPd is not known to run with it (a
    # restart that failed, a run cut short before the marker)
    lab.sh(web, f"rm {LOADED_MARKER}")
    before = lab.state_files()
    try:
        code, doc = audit_json()
        assert code == 1, doc
        assert findings(doc, web, "ftp_not_loaded") == [
            f"ProFTPd runs, but not on {FRAGMENT} as it is on disk (its loaded marker "
            "differs): the deploy would restart it"]
        assert {h["host"] for h in doc["hosts"] if h["verdict"] != "ok"} == {web}
        assert lab.state_files() == before  # the audit changed nothing
    finally:
        assert lab.deploy("-y").returncode == 0  # restarts ProFTPd, writes the marker
    assert audit()[0] == 0


def _nothing_on_21(lab, name: str, seconds: float = 10) -> None:
    deadline = time.monotonic() + seconds
    while lab.sh(name, "ss -Hltn 'sport = :21'").stdout.strip():
        assert time.monotonic() < deadline, "ProFTPd still listens on 21"
        time.sleep(0.2)


def test_an_ftp_host_whose_proftpd_is_down_is_an_error(lab) -> None:
    web = lab.by_kind("web")[0]
    assert lab.deploy("-y").returncode == 0
    lab.sh(web, "kill $(cat /run/proftpd.pid)")
    try:
        _nothing_on_21(lab, web)
        code, doc = audit_json()
        assert code == 2, doc
        down = [f for f in doc["findings"] if f["host"] == web and f["kind"] == "ftp_down"]
        assert [(f["severity"], f["port"], f["proto"], f["role"]) for f in down] == \
            [("error", 21, "tcp", "ftp")]
        assert down[0]["detail"].startswith("FTP down: nothing listens on 21/tcp (proftpd ")
        assert {h["host"]: h["verdict"] for h in doc["hosts"]}[web] == "error"
        # hosts without the ftp role are not concerned (the mail host's ProFTPd is just
        # blocked there)
        assert {f["host"] for f in doc["findings"] if f["kind"] == "ftp_down"} == {web}
        code, text = audit()
        assert code == 2 and f"{web}: FTP down: nothing listens on 21/tcp" in text
    finally:
        start_services(web, TEST_LAB / "hosts" / web)
    assert audit()[0] == 0


def test_ufw_chains_loaded_while_enabled_no_are_drift_not_inactive(lab) -> None:
    web = lab.by_kind("web")[0]
    assert lab.deploy("-y").returncode == 0
    lab.sh(web, f"sed -i 's/^ENABLED=.*/ENABLED=no/' {UFW_CONF}")  # chains stay loaded
    try:
        assert lab.sh(web, "iptables -w -n -L ufw-user-input >/dev/null 2>&1 && echo yes"
                      ).stdout.strip() == "yes"
        before = lab.state_files()
        code, doc = audit_json()
        assert code == 1, doc
        host = next(h for h in doc["hosts"] if h["host"] == web)
        assert (host["ufw"]["state"], host["ufw"]["running"], host["ufw"]["conf_enabled"]) == \
            ("running_disabled", True, False)
        assert findings(doc, web, "ufw_not_enabled") == [
            "ufw filters (its chains are loaded) but ufw.conf says ENABLED=no: after a reboot "
            "nothing is filtered (want active)"]
        assert findings(doc, web, "setting") == []
        # the ports are what the loaded chains filter, not "open" for want of ENABLED=yes
        ports = {(p["port"], p["proto"]): p["admitted"] for p in host["ports"]}
        assert ports[(3306, "tcp")] == "blocked" and ports[(22, "tcp")] == "open"
        assert host["verdict"] == "drift"
        code, text = audit()
        assert code == 1 and "running_disabled" in text
        assert lab.state_files() == before
    finally:
        assert lab.deploy("-y").returncode == 0  # the deploy enables ufw again
    assert "ENABLED=yes" in lab.sh(web, f"cat {UFW_CONF}").stdout
    assert audit()[0] == 0
