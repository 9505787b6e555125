"""``froxlor-fleet audit --probe`` on the lab fleet (issue 20): from the control node, an
explicit-FTPS session with each ftp host's real froxlor-shaped ProFTPd (``TLSRequired
on``, a self-signed certificate: not verified) on IPv4 and IPv6, and a TCP connect to
every role port UFW admits. A converged fleet passes; without a login the audit says
what it checked and no more; UFW admitting another passive range than ProFTPd offers,
and another tenant's DROP in front of UFW's rules (which the inside view cannot see),
fail it on both address families."""

from __future__ import annotations

import json

from labtools import PASSIVE
from test_3_audit import audit, audit_json, findings

PROBE = ("--probe", "--probe-timeout", "2")
LOGIN = (*PROBE, "--probe-user", "anonymous")  # the lab's read-only anonymous login
SECRET = "lab-Probe-secret-7"  # ProFTPd's anonymous login takes any password
STALL = "timed out after 2 s: customers' passive transfers stall"


def by_family(doc: dict, name: str) -> dict[int, dict]:
    probe = next(h for h in doc["hosts"] if h["host"] == name)["probe"]
    assert probe is not None and probe["note"] is None, probe
    return {a["family"]: a for a in probe["addresses"]}


def addresses(lab, name: str) -> tuple[str, str]:
    return lab.ip(name), lab.hosts[name]["ip6"]


def in_range(port: int | None) -> bool:
    return port is not None and PASSIVE[0] <= port <= PASSIVE[1]


def test_a_converged_fleet_passes_the_probe_on_ipv4_and_ipv6(lab, monkeypatch, tmp_path) -> None:
    assert lab.deploy("-y").returncode == 0
    monkeypatch.setenv("FROXLOR_FLEET_PROBE_PASSWORD", SECRET)
    before = lab.state_files()
    code, doc = audit_json(*LOGIN)
    assert code == 0, [f for f in doc["findings"] if f["severity"] != "notice"]
    for web in lab.by_kind("web"):
        families = by_family(doc, web)
        ip4, ip6 = addresses(lab, web)
        assert {f: a["address"] for f, a in families.items()} == {4: ip4, 6: ip6}
        for family, seen in families.items():
            ftp = seen["ftp"]
            assert (ftp["port"], ftp["reach"], ftp["tls"], ftp["login"], ftp["error"]) == (
                21, "connected", True, "anonymous", None), ftp
            checks = {c["command"]: c for c in ftp["passive"]}
            epsv, pasv = checks["EPSV"], checks["PASV"]
            assert in_range(epsv["port"]) and epsv["inside"] is True, epsv
            assert epsv["data"] == "transferred" and epsv["detail"].startswith("LIST "), epsv
            if family == 4 or pasv["port"] is not None:  # IPv6: ProFTPd's "(11,p1,p2)" form
                assert in_range(pasv["port"]) and pasv["inside"] is True, pasv
                assert pasv["data"] == "transferred", pasv
            else:  # or refused there (RFC 2428): not a failure
                assert pasv["reply"].startswith("5"), pasv
            reach = {p["port"]: p["reach"] for p in seen["ports"]}
            assert sorted(reach) == [22, 80, 443] and reach[22] == "connected", reach
    # every host the audit read is probed: its role ports UFW admits from anywhere (the
    # db host's 3306 is admitted for the web servers only: not tried)
    db = lab.by_kind("db")[0]
    assert {a["ftp"] is None for a in by_family(doc, db).values()} == {True}
    assert {p["port"] for a in by_family(doc, db).values() for p in a["ports"]} == {22}
    prom = tmp_path / "audit.prom"
    code, text = audit(*LOGIN, "--prometheus", str(prom))
    assert code == 0, text
    web = lab.by_kind("web")[0]
    ip4, ip6 = addresses(lab, web)
    assert f"{web} [{ip6}]: control connection + TLS ok, logged in as anonymous; " in text
    assert f"{web} [{ip4}]: control connection + TLS ok, logged in as anonymous; PASV port " in text
    metrics = prom.read_text().splitlines()
    for family in ("ipv4", "ipv6"):
        assert f'froxlor_fleet_audit_probe_ftp{{host="{web}",family="{family}"}} 1' in metrics
        assert (f'froxlor_fleet_audit_probe_passive{{host="{web}",family="{family}",'
                'command="EPSV"} 1') in metrics
    assert SECRET not in text + json.dumps(doc) + prom.read_text()
    assert lab.state_files() == before  # the probe changed nothing either


def test_without_a_login_the_probe_says_exactly_what_it_checked(lab) -> None:
    assert lab.deploy("-y").returncode == 0
    code, doc = audit_json(*PROBE)
    assert code == 0, doc  # nothing failed; nothing passive is claimed either
    for web in lab.by_kind("web"):
        assert sorted(findings(doc, web, "probe_incomplete")) == sorted(
            f"FTPS probe {address}: control connection + TLS ok; PASV and EPSV need a login: "
            "not checked (--probe-user)" for address in addresses(lab, web))
        for seen in by_family(doc, web).values():
            checks = seen["ftp"]["passive"]
            assert [(c["command"], c["reply"][:3], c["port"], c["data"]) for c in checks] == [
                ("PASV", "530", None, "not_checked"), ("EPSV", "530", None, "not_checked")]
    code, text = audit(*PROBE)
    assert code == 0 and "data connection" not in text


def test_ufw_admitting_another_range_than_proftpd_offers_fails_the_probe(lab) -> None:
    web = lab.by_kind("web")[0]
    assert lab.deploy("-y").returncode == 0
    lab.sh(web, f"ufw delete allow {PASSIVE[0]}:{PASSIVE[1]}/tcp >/dev/null && "
                "ufw allow 40000:40100/tcp comment 'froxlor-fleet:ftp' >/dev/null")
    try:
        code, doc = audit_json(*LOGIN)
        assert code == 2, doc
        # the inside view says the two disagree (drift); the probe shows the effect
        assert findings(doc, web, "passive_disagree"), doc
        outside = findings(doc, web, "probe_passive_outside")
        stalls = findings(doc, web, "probe_data_failed")
        for address in addresses(lab, web):
            assert [d for d in outside if d.startswith(f"FTPS probe {address}: EPSV offered port ")
                    and d.endswith("outside the passive range UFW admits (40000:40100)")], outside
            assert [d for d in stalls if d.startswith(f"FTPS probe {address}: EPSV data "
                                                      "connection to port ")
                    and d.endswith(STALL)], stalls
        verdicts = {h["host"]: h["verdict"] for h in doc["hosts"]}
        assert verdicts[web] == "error"
        assert {verdicts[w] for w in lab.by_kind("web")[1:]} <= {"ok"}  # only that host
    finally:
        assert lab.deploy("-y").returncode == 0  # puts UFW's range back
    assert audit_json(*LOGIN)[0] == 0


def test_a_drop_in_front_of_ufw_is_a_stall_only_the_probe_sees(lab) -> None:
    """Another tenant's rule before UFW's chains drops the passive range: UFW's files and
    ProFTPd's agree, so the inside view is green; customers' transfers stall, and the
    probe says so on IPv4 and IPv6."""
    web = lab.by_kind("web")[0]
    assert lab.deploy("-y").returncode == 0
    rule = f"INPUT -p tcp --dport {PASSIVE[0]}:{PASSIVE[1]} -j DROP"
    lab.sh(web, f"iptables -w -I {rule} && ip6tables -w -I {rule}")
    try:
        code, doc = audit_json()
        assert code == 0, doc  # what the host's files say: all agree
        code, doc = audit_json(*LOGIN)
        assert code == 2, doc
        assert findings(doc, web, "probe_passive_outside") == []  # offered inside the range
        stalls = findings(doc, web, "probe_data_failed")
        for address in addresses(lab, web):
            assert [d for d in stalls if d.startswith(f"FTPS probe {address}: EPSV data "
                                                      "connection to port ")
                    and d.endswith(STALL)], stalls
        for seen in by_family(doc, web).values():
            epsv = next(c for c in seen["ftp"]["passive"] if c["command"] == "EPSV")
            assert (epsv["inside"], epsv["data"]) == (True, "timeout"), epsv
            assert {p["port"]: p["reach"] for p in seen["ports"]}[22] == "connected"
        code, text = audit(*LOGIN)
        assert code == 2 and "data connection failed: timed out after 2 s" in text
    finally:
        lab.sh(web, f"iptables -w -D {rule}; ip6tables -w -D {rule}", check=False)
    assert audit_json(*LOGIN)[0] == 0
