"""End-to-end on the hosts froxlor runs on: Debian 11, 12 and 13 with systemd as PID 1
(systemd-nspawn containers, lab/systemd_hosts.py), real ssh.service, ufw.service and
proftpd.service, reached over SSH by pyinfra like any server.

Per release, in order (each builds on the state the one before left): the first rollout
matches the roles, a second run changes nothing byte for byte, a passive FTPS transfer
goes through the firewall inside ``ftp_passive_ports``, ``--dry --diff`` shows a hand
deletion and touches nothing, a new range is applied with ``systemctl restart proftpd``
(froxlor's whole conf.d in place, its mod_ban ratelimit file included), the first enable
equals what the ``ufw`` CLI leaves, and after a reboot ufw.service brings the same rules
back and FTP still works. On one release ufw is purged and the deploy installs it with
the real ``apt-get install`` from the lab's package repository. The bookworm host with
froxlor's pure-ftpd boots and converges.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys

import pytest

from conftest import machine_snapshot
from lab import rootfs, systemd_hosts
from labtools import EXPECTED, PASSIVE, ftp_transfer
from systemd_lab import (
    CFG,
    FRAGMENT,
    RELEASES,
    ROOT,
    assert_no_change,
    passive_data,
    systemd_lab,
)

APT_RELEASE = "trixie"  # the host whose ufw is purged and installed again by the deploy
NEW_RANGE = (50200, 50300)  # disjoint from PASSIVE: an offered port proves which is live

# froxlor's conf.d/99-froxlor-ratelimit.conf (mod_ban) stays in place in every test: with
# it, a SIGHUP (`systemctl reload proftpd`) kills ProFTPd 1.3.7a, 1.3.8 and 1.3.8c
# (signal 11), which is why the deploy restarts ProFTPd instead (test_06 proves it).
RATELIMIT = "/etc/proftpd/conf.d/99-froxlor-ratelimit.conf"
PUREFTPD_PID = "/run/pure-ftpd/pure-ftpd.pid"


@pytest.fixture(scope="module")
def slab():
    yield from systemd_lab(",".join(RELEASES))


def proftpd_running(slab, name: str) -> bool:
    """ProFTPd active under systemd and listening on 21."""
    active = slab.sh(name, "systemctl is-active proftpd", check=False).stdout.strip() == "active"
    return active and ":21 " in slab.sh(name, "ss -Hltn 'sport = :21'").stdout


@pytest.mark.parametrize("release", RELEASES)
def test_01_boots_with_systemd_and_the_real_services(slab, release) -> None:
    name = slab.host(release).name
    assert slab.sh(name, "cat /proc/1/comm").stdout.strip() == "systemd"
    assert slab.sh(name, "systemctl is-system-running").stdout.strip() == "running"
    assert slab.sh(name, "systemctl is-active ssh ufw proftpd").stdout.split() == ["active"] * 3
    assert slab.sh(name, "ip route show default; ip -6 route show default").stdout == ""
    assert slab.read(name, "/etc/resolv.conf") == b"nameserver 127.0.0.1\n"
    assert "Status: inactive" in slab.sh(name, "ufw status").stdout  # a fresh install
    versions = slab.sh(name, "python3 --version; dpkg-query -W ufw systemd; proftpd --version").stdout
    print(f"\n{release}: {' | '.join(versions.split(chr(10)))}")


@pytest.mark.parametrize("release", RELEASES)
def test_02_first_rollout_matches_roles(slab, release) -> None:
    name = slab.host(release).name
    res = slab.deploy("-y", "--limit", name)
    assert res.returncode == 0, res.out
    assert sorted(slab.show_added(name)) == sorted(EXPECTED["web"])
    status = slab.sh(name, "ufw status verbose").stdout
    assert "Status: active" in status
    assert "Default: deny (incoming), allow (outgoing)" in status
    assert "Logging: on (low)" in status
    fragment = slab.read(name, FRAGMENT).decode()
    assert fragment.startswith("# Managed by froxlor-fleet")
    assert f"PassivePorts {PASSIVE[0]} {PASSIVE[1]}\n" in fragment
    # what `ufw enable` would leave: ENABLED=yes, so ufw.service starts it at boot
    assert b"ENABLED=yes" in slab.read(name, "/etc/ufw/ufw.conf")


@pytest.mark.parametrize("release", RELEASES)
def test_03_second_run_changes_nothing_byte_for_byte(slab, release) -> None:
    name = slab.host(release).name
    before = slab.ufw_files(name), slab.read(name, FRAGMENT)
    res = slab.deploy("-y", "--limit", name)
    assert res.returncode == 0, res.out
    assert_no_change(res)
    assert (slab.ufw_files(name), slab.read(name, FRAGMENT)) == before


@pytest.mark.parametrize("release", RELEASES)
def test_04_passive_ftps_through_the_firewall(slab, release) -> None:
    host = slab.host(release)
    assert proftpd_running(slab, host.name)  # the rollout restarted it
    for ip in (host.ip, host.ip6):
        port, data = ftp_transfer(ip, timeout=10)
        assert PASSIVE[0] <= port <= PASSIVE[1], (ip, port)
        assert data.startswith(f"hello from {host.name}".encode())


@pytest.mark.parametrize("release", RELEASES)
def test_05_dry_diff_shows_a_hand_deleted_rule_and_touches_nothing(slab, release) -> None:
    name = slab.host(release).name
    slab.sh(name, "ufw delete allow 80,443/tcp >/dev/null")
    before = slab.ufw_files(name)
    chains = slab.sh(name, "iptables-save -t filter | grep -c 'dport' || true").stdout
    res = slab.deploy("--dry", "--diff", "--limit", name)
    assert res.returncode == 0, res.out
    assert re.search(rf"\[{name}\] +Will change UFW", res.out), res.out
    assert "+ allow 80,443/tcp  (web)" in res.out
    assert slab.ufw_files(name) == before  # --dry touched nothing
    assert slab.sh(name, "iptables-save -t filter | grep -c 'dport' || true").stdout == chains
    assert "ufw allow 80,443/tcp comment 'froxlor-fleet:web'" not in slab.show_added(name)
    res = slab.deploy("-y", "--limit", name)  # the next run repairs it
    assert res.returncode == 0, res.out
    assert sorted(slab.show_added(name)) == sorted(EXPECTED["web"])
    assert_no_change(slab.deploy("-y", "--limit", name))


def proftpd_unit(slab, name: str) -> dict[str, str]:
    out = slab.sh(name, "systemctl show proftpd -p MainPID -p ExecMainStartTimestamp "
                        "-p ActiveState").stdout
    return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)


@pytest.mark.parametrize("release", RELEASES)
def test_06_new_range_goes_through_systemctl_restart(slab, release) -> None:
    """The host program (ftpapply.py) sees /run/systemd/system and runs `systemctl restart proftpd`,
    with froxlor's whole conf.d in place (its mod_ban ratelimit file, with which a
    SIGHUP reload kills ProFTPd): systemd logs the restart, ProFTPd runs under a new
    main PID, and the new range is offered; back to the lab's range the same way."""
    host = slab.host(release)
    assert slab.sh(host.name, f"test -f {RATELIMIT}", check=False).returncode == 0
    assert proftpd_running(slab, host.name)
    unit_before = proftpd_unit(slab, host.name)
    since = slab.sh(host.name, "date +%s").stdout.strip()
    ftp_data = slab.group_data("ftp_servers")
    try:
        slab.write_group_data("ftp_servers", passive_data(*NEW_RANGE))
        res = slab.deploy("-y", "--limit", host.name)
        assert res.returncode == 0, res.out
        journal = slab.sh(host.name, f"journalctl -q -u proftpd --since @{since} --no-pager").stdout
        assert re.search(r"Start(ing|ed) (proftpd\.service|ProFTPD)", journal), journal
        assert "signal 11" not in slab.sh(host.name, "tail -20 /var/log/proftpd/proftpd.log").stdout
        assert proftpd_running(slab, host.name)
        unit_after = proftpd_unit(slab, host.name)
        assert unit_after["ActiveState"] == "active"
        assert unit_after["MainPID"] not in ("0", unit_before["MainPID"])  # restarted
        port, _ = ftp_transfer(host.ip, timeout=10)
        assert NEW_RANGE[0] <= port <= NEW_RANGE[1]
        assert [r for r in slab.show_added(host.name) if ":" in r.split()[2]] == [
            f"ufw allow {NEW_RANGE[0]}:{NEW_RANGE[1]}/tcp comment 'froxlor-fleet:ftp'"]
    finally:
        slab.write_group_data("ftp_servers", ftp_data)
        converge(slab, host.name)
    port, _ = ftp_transfer(host.ip, timeout=10)
    assert PASSIVE[0] <= port <= PASSIVE[1]


def converge(slab, name: str) -> None:
    """Back to the lab data; ProFTPd must run afterwards."""
    res = slab.deploy("-y", "--limit", name)
    assert res.returncode == 0, res.out
    assert proftpd_running(slab, name)


def reset_ufw(slab, host: systemd_hosts.Host) -> None:
    """UFW as a fresh install leaves it: the package's files from the pristine tree, and
    no ufw chains in the kernel (`ufw disable` leaves its empty chains behind)."""
    slab.sh(host.name, "ufw --force disable >/dev/null; "
                       "for t in iptables ip6tables; do $t -F; $t -X; done")
    pristine = rootfs.tree_dir(host.release, host.ftpd, host.tenants) / "root"
    merged = systemd_hosts.host_dir(CFG, host.name) / "root"
    for path in ("etc/ufw/user.rules", "etc/ufw/user6.rules", "etc/ufw/ufw.conf", "etc/default/ufw"):
        shutil.copy2(pristine / path, merged / path)


CLI_ROLLOUT = " && ".join([
    "ufw allow proto tcp from any to any port 21 comment froxlor-fleet:ftp",
    f"ufw allow proto tcp from any to any port {PASSIVE[0]}:{PASSIVE[1]} comment froxlor-fleet:ftp",
    "ufw allow proto tcp from any to any port 22 comment froxlor-fleet:ssh",
    "ufw allow proto tcp from any to any port 80,443 comment froxlor-fleet:web",
    "ufw logging low",
    "ufw --force enable",
]) + " >/dev/null"


@pytest.mark.parametrize("release", RELEASES)
def test_07_first_enable_equals_the_ufw_cli(slab, release) -> None:
    """From a fresh ufw, the deploy (ufw's frontend, enabled the way ufw.service starts
    it) leaves what the same rules typed with the `ufw` CLI and `ufw enable` leave:
    rule files, /etc/default/ufw, ufw.conf, `ufw status verbose`, the live v4 and v6
    chains."""
    host = slab.host(release)
    reset_ufw(slab, host)
    res = slab.deploy("-y", "--limit", host.name)
    assert res.returncode == 0, res.out
    ours = slab.ufw_view(host.name)
    reset_ufw(slab, host)
    slab.sh(host.name, CLI_ROLLOUT)
    theirs = slab.ufw_view(host.name)
    assert ours.keys() == theirs.keys()
    for key in ours:
        assert ours[key] == theirs[key], key
    assert "-A ufw-user-input -p tcp -m tcp --dport 21 -j ACCEPT" in ours["iptables-save"]
    assert "-A ufw6-user-input -p tcp -m tcp --dport 21 -j ACCEPT" in ours["ip6tables-save"]
    assert "--dports 80,443" in ours["iptables-save"] and "--dports 80,443" in ours["ip6tables-save"]
    assert_no_change(slab.deploy("-y", "--limit", host.name))  # the CLI's state is ours


CLI_START = " && ".join([  # an active firewall with drift: as test_1_e2e's test_10
    "ufw allow 8080/tcp comment 'froxlor-fleet:extra old'",  # ours, no role wants it: deleted
    "ufw allow 2222/tcp",  # hand-made: kept
    "ufw allow 22/tcp",  # hand-made twin of the ssh rule: re-tagged in place
    "ufw default reject incoming",
    "ufw logging medium",
    "ufw --force enable",
]) + " >/dev/null"
CLI_CHANGES = " && ".join([
    "ufw allow proto tcp from any to any port 21 comment froxlor-fleet:ftp",
    f"ufw allow proto tcp from any to any port {PASSIVE[0]}:{PASSIVE[1]} comment froxlor-fleet:ftp",
    "ufw allow proto tcp from any to any port 22 comment froxlor-fleet:ssh",
    "ufw allow proto tcp from any to any port 80,443 comment froxlor-fleet:web",
    "ufw delete allow 8080/tcp",
    "ufw default deny incoming",
    "ufw logging low",
]) + " >/dev/null"


@pytest.mark.parametrize("release", RELEASES)
def test_07b_changes_on_an_active_firewall_equal_the_ufw_cli(slab, release) -> None:
    """Adds, a re-tagged hand rule, a delete (ufw 0.36 on bullseye deletes straight from
    the live chain), a policy and a logging change on an active firewall: the deploy's
    one step leaves what the same `ufw` commands leave."""
    host = slab.host(release)
    reset_ufw(slab, host)
    slab.sh(host.name, CLI_START)
    res = slab.deploy("-y", "--limit", host.name)
    assert res.returncode == 0, res.out
    ours = slab.ufw_view(host.name)
    reset_ufw(slab, host)
    slab.sh(host.name, CLI_START)
    slab.sh(host.name, CLI_CHANGES)
    theirs = slab.ufw_view(host.name)
    for key in ours:
        assert ours[key] == theirs[key], key
    assert "2222/tcp" in ours["status"] and "8080" not in ours["status"]
    assert "Default: deny (incoming)" in ours["status"]
    slab.sh(host.name, "ufw delete allow 2222/tcp >/dev/null")  # back to the lab's state
    assert_no_change(slab.deploy("-y", "--limit", host.name))


@pytest.mark.parametrize("release", RELEASES)
def test_08_reboot_keeps_the_firewall_and_ftp(slab, release) -> None:
    """After `systemctl reboot` inside the host, ufw.service (ufw-init at boot) loads the
    same rules into the kernel, proftpd uses the fragment, and nothing needs changing."""
    host = slab.host(release)
    before = slab.ufw_view(host.name)
    boot_id = slab.sh(host.name, "cat /proc/sys/kernel/random/boot_id").stdout
    slab.reboot(host.name)
    assert slab.sh(host.name, "cat /proc/sys/kernel/random/boot_id").stdout != boot_id
    assert slab.sh(host.name, "systemctl is-active ufw proftpd ssh").stdout.split() == ["active"] * 3
    after = slab.ufw_view(host.name)
    for key in before:
        assert after[key] == before[key], key
    port, data = ftp_transfer(host.ip, timeout=10)
    assert PASSIVE[0] <= port <= PASSIVE[1]
    assert data.startswith(f"hello from {host.name}".encode())
    assert_no_change(slab.deploy("-y", "--limit", host.name))


def test_09_missing_ufw_is_installed_by_apt_from_the_lab_repository(slab) -> None:
    """ufw purged: the deploy's `apt-get install -y -q ufw` downloads it from the lab's
    repository (the host's only apt source), then configures it in the same run."""
    host = slab.host(APT_RELEASE)
    slab.sh(host.name, "ufw --force disable >/dev/null; "
                       "DEBIAN_FRONTEND=noninteractive apt-get purge -y -q ufw >/dev/null 2>&1; "
                       "for t in iptables ip6tables; do $t -F; $t -X; done")
    assert slab.sh(host.name, "command -v ufw", check=False).returncode != 0
    assert slab.sh(host.name, "ls /var/cache/apt/archives/ | grep -c '^ufw_' || true").stdout.strip() == "0"
    log_before = (CFG.lab_dir / "repo-server.log").read_text()
    res = slab.deploy("-y", "--limit", host.name)
    assert res.returncode == 0, res.out
    fetched = (CFG.lab_dir / "repo-server.log").read_text()[len(log_before):]
    assert re.search(r'"GET /[^ ]+/ufw_[^ ]+_all\.deb HTTP/1\.1" 200', fetched), fetched
    assert "Install: ufw" in slab.sh(host.name, "cat /var/log/apt/history.log").stdout
    assert sorted(slab.show_added(host.name)) == sorted(EXPECTED["web"])
    assert "Status: active" in slab.sh(host.name, "ufw status").stdout
    assert slab.sh(host.name, "systemctl is-enabled ufw").stdout.strip() == "enabled"
    port, _ = ftp_transfer(host.ip, timeout=10)
    assert PASSIVE[0] <= port <= PASSIVE[1]
    assert_no_change(slab.deploy("-y", "--limit", host.name))


def test_10_pureftpd_host_as_froxlor_sets_it_up(slab) -> None:
    """froxlor's pure-ftpd on bookworm (one file per option, TLS, no PassivePortRange):
    the deploy finds it (ftp_daemon auto), writes the range pure-ftpd reads, restarts
    it under systemd, opens the same range in UFW; passive FTPS works inside it."""
    host = slab.host("bookworm", "pureftpd")
    unit = "pure-ftpd-mysql"
    assert slab.sh(host.name, f"systemctl is-active {unit}").stdout.strip() == "active"
    conf = slab.sh(host.name, "ls /etc/pure-ftpd/conf").stdout.split()
    assert {"TLS", "Bind", "MinUID", "NoAnonymous", "MySQLConfigFile"} <= set(conf)
    assert "PassivePortRange" not in conf and "ForcePassiveIP" not in conf
    assert slab.read(host.name, "/etc/pure-ftpd/conf/TLS") == b"1\n"
    assert slab.sh(host.name, "command -v proftpd", check=False).returncode != 0
    _, data = ftp_transfer(host.ip, timeout=10)  # UFW still off: any port gets through
    assert data.startswith(f"hello from {host.name}".encode())
    pid = slab.sh(host.name, f"cat {PUREFTPD_PID}").stdout  # SysV unit: no main PID in systemd
    res = slab.deploy("-y", "--limit", host.name)
    assert res.returncode == 0, res.out
    assert sorted(slab.show_added(host.name)) == sorted(EXPECTED["web"])
    assert slab.read(host.name, "/etc/pure-ftpd/conf/PassivePortRange").split() == [
        str(PASSIVE[0]).encode(), str(PASSIVE[1]).encode()]
    assert slab.sh(host.name, f"systemctl is-active {unit}").stdout.strip() == "active"
    assert slab.sh(host.name, f"cat {PUREFTPD_PID}").stdout != pid  # restarted: it has no reload
    for ip in (host.ip, host.ip6):
        port, data = ftp_transfer(ip, timeout=10)
        assert PASSIVE[0] <= port <= PASSIVE[1], (ip, port)
    assert_no_change(slab.deploy("-y", "--limit", host.name))


def test_10b_pureftpd_that_wont_come_back_keeps_the_previous_range(slab) -> None:
    """A range change on the pure-ftpd host whose restart fails (a systemd drop-in makes
    its start fail): the previous PassivePortRange is put back, UFW closes the new range
    again, the host fails with one line; once pure-ftpd can start, the next run switches
    both sides, and FTPS works in the new range."""
    host = slab.host("bookworm", "pureftpd")
    unit = "pure-ftpd-mysql"
    conf = "/etc/pure-ftpd/conf/PassivePortRange"
    before, ufw_before = slab.read(host.name, conf), slab.show_added(host.name)
    group = "pureftpd_servers"  # the lab's group of pure-ftpd hosts
    data = slab.group_data(group)
    dropin = f"/run/systemd/system/{unit}.service.d"
    slab.write_group_data(group, passive_data(*NEW_RANGE))
    try:
        try:
            slab.sh(host.name, f"mkdir -p {dropin} && printf '[Service]\\nExecStartPre=/bin/false\\n' "
                               f"> {dropin}/lab-fail.conf && systemctl daemon-reload")
            res = slab.deploy("-y", "--limit", host.name)
            assert res.returncode != 0, res.out
            assert (f"[{host.name}] pure-ftpd did not come back with the new passive range "
                    f"({unit}), previous files restored") in res.out
            assert "UFW is back on the previous passive range" in res.out
            assert "Traceback" not in res.out
            assert slab.read(host.name, conf) == before
            assert slab.show_added(host.name) == ufw_before
        finally:
            slab.sh(host.name, f"rm -rf {dropin}; systemctl daemon-reload; systemctl restart {unit}")
        res = slab.deploy("-y", "--limit", host.name)
        assert res.returncode == 0, res.out
        port, _ = ftp_transfer(host.ip, timeout=10)
        assert NEW_RANGE[0] <= port <= NEW_RANGE[1]
        assert [r for r in slab.show_added(host.name) if ":" in r.split()[2]] == [
            f"ufw allow {NEW_RANGE[0]}:{NEW_RANGE[1]}/tcp comment 'froxlor-fleet:ftp'"]
    finally:
        slab.write_group_data(group, data)
    assert slab.deploy("-y", "--limit", host.name).returncode == 0
    port, _ = ftp_transfer(host.ip, timeout=10)
    assert PASSIVE[0] <= port <= PASSIVE[1]


def audit_findings(slab, name: str) -> tuple[int, list[dict]]:
    res = subprocess.run([sys.executable, "-m", "froxlor_fleet", "audit", "inventory.py", "--json",
                          "--limit", name], cwd=CFG.lab_dir, capture_output=True, text=True,
                         timeout=120, env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert "Traceback" not in res.stderr, res.stderr
    return res.returncode, json.loads(res.stdout)["findings"]


def test_10c_pureftpd_announcing_a_private_address_is_drift(slab) -> None:
    """Issue 20: a NATed pure-ftpd's ForcePassiveIP that is not ftp_masquerade_address
    (here: a hand-written private address, the data has none) makes the audit drift
    while the daemon runs on it; the deploy removes it and the audit is clean again."""
    host = slab.host("bookworm", "pureftpd")
    unit = "pure-ftpd-mysql"
    code, findings = audit_findings(slab, host.name)
    assert "force_passive_ip" not in [f["kind"] for f in findings], findings
    slab.sh(host.name, f"echo 10.99.0.7 > /etc/pure-ftpd/conf/ForcePassiveIP; systemctl restart {unit}")
    code, findings = audit_findings(slab, host.name)
    found = [f for f in findings if f["kind"] == "force_passive_ip"]
    assert code == 1 and len(found) == 1, findings
    assert "10.99.0.7" in found[0]["detail"]
    res = slab.deploy("-y", "--limit", host.name)
    assert res.returncode == 0, res.out
    assert slab.sh(host.name, "test -e /etc/pure-ftpd/conf/ForcePassiveIP", check=False).returncode != 0
    code, findings = audit_findings(slab, host.name)
    assert "force_passive_ip" not in [f["kind"] for f in findings], findings
    port, _ = ftp_transfer(host.ip, timeout=10)
    assert PASSIVE[0] <= port <= PASSIVE[1]


def test_11_whole_fleet_in_one_run_changes_nothing(slab) -> None:
    """Every systemd host in one pyinfra run, in parallel: nothing left to change."""
    res = slab.deploy("-y")
    assert res.returncode == 0, res.out
    assert_no_change(res)


def test_12_machine_firewall_untouched(slab) -> None:
    assert machine_snapshot() == slab.machine_before
