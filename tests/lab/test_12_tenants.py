"""The firewall's other tenants, for real (issue 19): systemd hosts with Debian's own
fail2ban package — bookworm with ``banaction = ufw`` (its bans are UFW user rules),
trixie with Debian 13's default nftables action (fail2ban's own ``inet f2b-table``) and
the nftables package as Debian installs it (nftables.service disabled) — and bans made
with ``fail2ban-client set sshd banip``.

In order (each builds on what the one before left): a first rollout with
``firewall_purge_unmanaged`` keeps the bans; a passive-range switch keeps them; a
commit-confirm revert keeps a ban fail2ban made during the window and does not bring
back one it lifted; fail2ban's unban after our change still removes its rule; after a
reboot UFW admits what the audit said before it, and the bans are back; an enabled
nftables.service that flushes the ruleset is named by the deploy and the audit before
it bites, and a restart of it (what a boot does when it comes after ufw) shows why; so
is MANAGE_BUILTINS=yes beside fail2ban's iptables chains (a second jail on bookworm),
and a ufw reload shows why; Docker installed is named (a notice); a host with
iptables-persistent fails clearly and keeps it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest

from driver import DEPLOY
from labtools import PASSIVE, ftp_transfer, wait_until
from systemd_lab import CFG, ROOT, assert_no_change, passive_data, systemd_lab

NEW_RANGE = (50200, 50300)  # disjoint from PASSIVE: an offered port proves which is live
BAN_COMMENT = "by Fail2Ban after"  # its ufw action's: "by Fail2Ban after N attempts against <jail>"
PENDING = "/var/lib/froxlor-fleet/pending"
TIMEOUT = 10  # firewall_confirm_timeout for the revert test


@pytest.fixture(scope="module")
def slab():
    yield from systemd_lab("bookworm,trixie", pureftpd=False, tenants=True)


def ufw_host(slab):
    return slab.host("bookworm").name  # fail2ban's ufw action


def nft_host(slab):
    return slab.host("trixie").name  # fail2ban's nftables action (Debian 13's default)


def ban(slab, name: str, address: str) -> None:
    slab.sh(name, f"fail2ban-client set sshd banip {address} >/dev/null")


def unban(slab, name: str, address: str) -> None:
    slab.sh(name, f"fail2ban-client set sshd unbanip {address} >/dev/null")


def banned_by_fail2ban(slab, name: str) -> set[str]:
    """What fail2ban believes it has banned."""
    return set(slab.sh(name, "fail2ban-client get sshd banned").stdout.strip("[]'\"\n ")
               .replace("'", "").replace(",", " ").split())


def ufw_bans(slab, name: str) -> list[str]:
    return [r for r in slab.show_added(name) if BAN_COMMENT in r]


def nft_bans(slab, name: str) -> str:
    return slab.sh(name, "nft list set inet f2b-table addr-set-sshd").stdout




def audit_json(slab) -> tuple[int, dict]:
    res = subprocess.run([sys.executable, "-m", "froxlor_fleet", "audit", "inventory.py", "--json"],
                         cwd=CFG.lab_dir, capture_output=True, text=True, timeout=120,
                         env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert "Traceback" not in res.stderr, res.stderr
    return res.returncode, json.loads(res.stdout)


def host_doc(doc: dict, name: str) -> dict:
    return next(h for h in doc["hosts"] if h["host"] == name)


def kinds(doc: dict, name: str) -> list[str]:
    return [f["kind"] for f in doc["findings"] if f["host"] == name]


class Data:
    """Group data edits for one test, put back afterwards."""

    def __init__(self, slab) -> None:
        self.slab = slab
        self.saved = {n: slab.group_data(n) for n in ("all", "ftp_servers")}

    def __enter__(self) -> Data:
        return self

    def add(self, name: str, text: str) -> None:
        self.slab.write_group_data(name, self.saved[name] + text)

    def set(self, name: str, text: str) -> None:
        self.slab.write_group_data(name, text)

    def __exit__(self, *exc) -> None:
        for name, text in self.saved.items():
            self.slab.write_group_data(name, text)


def test_01_fail2ban_runs_as_debian_ships_it(slab) -> None:
    for name, action in ((ufw_host(slab), "ufw"), (nft_host(slab), "nftables")):
        assert slab.sh(name, "systemctl is-active fail2ban").stdout.strip() == "active"
        assert action in slab.sh(name, "fail2ban-client get sshd actions").stdout, name
    # nftables installed, its service left disabled, as Debian installs it
    assert slab.sh(nft_host(slab), "systemctl is-enabled nftables",
                   check=False).stdout.strip() == "disabled"


def test_02_a_first_rollout_with_purge_keeps_the_bans(slab) -> None:
    ban(slab, ufw_host(slab), "192.0.2.7")
    ban(slab, nft_host(slab), "192.0.2.8")
    assert [r for r in ufw_bans(slab, ufw_host(slab)) if "192.0.2.7" in r]
    with Data(slab) as data:
        data.add("all", "firewall_purge_unmanaged = True\n")
        res = slab.deploy("-y", "--diff")  # --diff: the changes, and the bans it leaves
        assert res.returncode == 0, res.out
        assert f"[{ufw_host(slab)}] leaves fail2ban's bans alone: 1 ban (sshd 1)" in res.out
        assert_no_change(slab.deploy("-y"))
    assert [r for r in ufw_bans(slab, ufw_host(slab)) if "192.0.2.7" in r]
    assert "192.0.2.8" in nft_bans(slab, nft_host(slab))
    assert "Status: active" in slab.sh(nft_host(slab), "ufw status").stdout
    code, doc = audit_json(slab)
    assert code == 0, doc["findings"]
    found = [f for f in doc["findings"] if f["kind"] == "bans"]
    assert [(f["host"], f["jails"]) for f in found] == [(ufw_host(slab), {"sshd": 1})]


def test_03_a_passive_range_switch_keeps_the_bans(slab) -> None:
    with Data(slab) as data:
        data.set("ftp_servers", passive_data(*NEW_RANGE))
        res = slab.deploy("-y")
        assert res.returncode == 0, res.out
        for name in (ufw_host(slab), nft_host(slab)):
            host = slab.hosts[name]
            port, _ = ftp_transfer(host.ip, timeout=10)
            assert NEW_RANGE[0] <= port <= NEW_RANGE[1], name
        assert [r for r in ufw_bans(slab, ufw_host(slab)) if "192.0.2.7" in r]
        assert "192.0.2.8" in nft_bans(slab, nft_host(slab))
    res = slab.deploy("-y")  # back to the lab's range
    assert res.returncode == 0, res.out
    port, _ = ftp_transfer(slab.hosts[ufw_host(slab)].ip, timeout=10)
    assert PASSIVE[0] <= port <= PASSIVE[1]
    assert [r for r in ufw_bans(slab, ufw_host(slab)) if "192.0.2.7" in r]
    assert "192.0.2.8" in nft_bans(slab, nft_host(slab))


def no_pending(slab, name: str) -> bool:
    return slab.sh(name, f"ls -A {PENDING} 2>/dev/null").stdout.strip() == ""


def background_deploy(*args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "pyinfra", "inventory.py", str(DEPLOY),
                             "-y", *args], cwd=CFG.lab_dir, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True,
                            env=dict(os.environ, PYTHONPATH=str(ROOT)))


def test_04_a_revert_keeps_fail2bans_bans_made_and_lifted_meanwhile(slab) -> None:
    """The control side dies after the change, before it confirms: the host undoes its
    own change only. fail2ban bans a new address and lifts the old ban meanwhile (for
    real, through fail2ban-client): the new ban stays, the lifted one does not come
    back, and UFW agrees with what fail2ban believes."""
    name = ufw_host(slab)
    slab.sh(name, "ufw delete allow 80,443/tcp >/dev/null")
    before = sorted(slab.show_added(name))
    with Data(slab) as data:
        data.add("all", f"firewall_confirm_timeout = {TIMEOUT}\n")
        proc = background_deploy("--limit", name)
        assert wait_until(lambda: slab.sh(name, "pgrep -f '[f]leethost.py apply' >/dev/null",
                                          check=False).returncode == 0, 30, 0.01), proc.communicate()[0]
        proc.send_signal(signal.SIGSTOP)
        assert wait_until(lambda: not no_pending(slab, name), 20, 0.05)
        assert wait_until(lambda: "80,443" in " ".join(slab.show_added(name)), 20, 0.05)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    ban(slab, name, "192.0.2.9")
    unban(slab, name, "192.0.2.7")
    assert wait_until(lambda: no_pending(slab, name), TIMEOUT + 20, 0.5)
    after = sorted(slab.show_added(name))
    assert "80,443" not in " ".join(after)  # our change undone
    assert [r for r in ufw_bans(slab, name) if "192.0.2.9" in r]  # the new ban kept
    assert not [r for r in ufw_bans(slab, name) if "192.0.2.7" in r]  # the lifted one not back
    assert banned_by_fail2ban(slab, name) == {"192.0.2.9"}
    assert sorted(r for r in after if "192.0.2.9" not in r) == sorted(
        r for r in before if "192.0.2.7" not in r)
    res = slab.deploy("-y", "--limit", name)  # the next run converges, bans untouched
    assert res.returncode == 0, res.out
    assert [r for r in ufw_bans(slab, name) if "192.0.2.9" in r]


def test_05_fail2bans_unban_after_our_change_removes_its_rule(slab) -> None:
    name = ufw_host(slab)
    assert [r for r in ufw_bans(slab, name) if "192.0.2.9" in r]
    unban(slab, name, "192.0.2.9")
    assert ufw_bans(slab, name) == []
    assert banned_by_fail2ban(slab, name) == set()
    ban(slab, name, "192.0.2.10")  # one for the reboot
    assert_no_change(slab.deploy("-y"))


def admitted(doc: dict, name: str) -> dict[str, str]:
    return {f"{p['port']}/{p['proto']}": p["admitted"] for p in host_doc(doc, name)["ports"]}


def test_06_after_a_reboot_ufw_admits_what_the_audit_said(slab) -> None:
    code, before = audit_json(slab)
    assert code == 0, before["findings"]
    rules = {n: sorted(slab.show_added(n)) for n in slab.hosts}
    for name in slab.hosts:
        slab.reboot(name)
    for name in slab.hosts:
        assert wait_until(lambda n=name: slab.sh(n, "systemctl is-active fail2ban",
                                                 check=False).stdout.strip() == "active", 60, 0.5)
    code, after = audit_json(slab)
    assert code == 0, after["findings"]
    for name in slab.hosts:
        assert admitted(after, name) == admitted(before, name), name
        assert host_doc(after, name)["ufw"] == host_doc(before, name)["ufw"], name
        assert sorted(slab.show_added(name)) == rules[name], name
    # fail2ban restored its bans: in UFW on bookworm, in its own table on trixie
    assert [r for r in ufw_bans(slab, ufw_host(slab)) if "192.0.2.10" in r]
    assert wait_until(lambda: "192.0.2.8" in nft_bans(slab, nft_host(slab)), 30, 0.5)
    assert_no_change(slab.deploy("-y"))


FLUSH = "nftables.service is enabled and /etc/nftables.conf flushes the ruleset"


def test_07_nftables_that_flushes_is_named_before_it_bites(slab) -> None:
    name = nft_host(slab)
    slab.sh(name, "systemctl enable nftables 2>/dev/null")
    try:
        res = slab.deploy("-y")
        assert res.returncode == 0, res.out
        lines = [line for line in res.out.splitlines() if FLUSH in line]
        assert len(lines) == 1 and f"[{name}]" in lines[0], res.out
        code, doc = audit_json(slab)
        assert code == 1 and kinds(doc, name).count("nftables_at_boot") == 1, doc["findings"]
        assert "nftables_at_boot" not in kinds(doc, ufw_host(slab))
        # why: what nftables.service does when a boot starts it after ufw
        assert host_doc(doc, name)["ufw"]["state"] == "active"
        slab.sh(name, "systemctl restart nftables")
        assert slab.sh(name, "iptables -w -n -L ufw-user-input >/dev/null 2>&1",
                       check=False).returncode != 0  # UFW's chains are gone
        code, doc = audit_json(slab)
        assert code == 1 and host_doc(doc, name)["ufw"]["state"] != "active", doc["hosts"]
    finally:
        slab.sh(name, "systemctl disable --now nftables 2>/dev/null; systemctl restart ufw fail2ban")
    res = slab.deploy("-y")
    assert res.returncode == 0 and FLUSH not in res.out, res.out
    code, doc = audit_json(slab)
    assert code == 0, doc["findings"]


F2B_FLUSHED = "MANAGE_BUILTINS=yes in /etc/default/ufw while fail2ban's f2b-* chains are loaded"


def f2b_jumps(slab, name: str) -> list[str]:
    return [r for r in slab.sh(name, "iptables -w -S INPUT").stdout.splitlines() if "f2b-" in r]


def test_07b_manage_builtins_that_flushes_fail2bans_chains_is_named(slab) -> None:
    """fail2ban's iptables action (a second jail on the bookworm host) jumps from INPUT to
    its own chain; with MANAGE_BUILTINS=yes each ufw reload flushes that jump."""
    name = ufw_host(slab)
    slab.sh(name, "fail2ban-client set sshd-iptables banip 192.0.2.11 >/dev/null")
    assert wait_until(lambda: bool(f2b_jumps(slab, name)), 10)
    conf = "/etc/default/ufw"
    slab.sh(name, f"sed -i 's/^MANAGE_BUILTINS=no/MANAGE_BUILTINS=yes/' {conf}")
    try:
        res = slab.deploy("-y", "--limit", name)
        assert res.returncode == 0, res.out
        lines = [line for line in res.out.splitlines() if F2B_FLUSHED in line]
        assert len(lines) == 1 and f"[{name}]" in lines[0], res.out
        code, doc = audit_json(slab)
        assert code == 1 and kinds(doc, name).count("f2b_flushed") == 1, doc["findings"]
        slab.sh(name, "ufw reload >/dev/null")  # why: fail2ban's jump is gone, its ban dead
        assert f2b_jumps(slab, name) == []
    finally:
        slab.sh(name, f"sed -i 's/^MANAGE_BUILTINS=yes/MANAGE_BUILTINS=no/' {conf}; "
                      "systemctl restart fail2ban")
    assert wait_until(lambda: bool(f2b_jumps(slab, name)), 30)
    res = slab.deploy("-y", "--limit", name)
    assert res.returncode == 0 and F2B_FLUSHED not in res.out, res.out
    code, doc = audit_json(slab)
    assert "f2b_flushed" not in kinds(doc, name), doc["findings"]


DOCKER = "Docker is installed: ports its containers publish bypass UFW"


def test_07c_docker_is_named_a_notice(slab) -> None:
    """docker.io installed by the admin (from the lab's repository; its daemon not
    started, as it can't run nested here): the deploy warns, the audit notes it."""
    name = nft_host(slab)
    slab.sh(name, "printf '#!/bin/sh\\nexit 101\\n' > /usr/sbin/policy-rc.d; "
                  "chmod 755 /usr/sbin/policy-rc.d; export DEBIAN_FRONTEND=noninteractive; "
                  "apt-get update -q >/dev/null 2>&1; "
                  "apt-get install -y -q --no-install-recommends docker.io >/dev/null 2>&1; "
                  "rm -f /usr/sbin/policy-rc.d")
    assert slab.sh(name, "dpkg-query -W -f='${Status}' docker.io").stdout == "install ok installed"
    try:
        res = slab.deploy("-y")
        assert res.returncode == 0, res.out
        lines = [line for line in res.out.splitlines() if DOCKER in line]
        assert len(lines) == 1 and f"[{name}]" in lines[0], res.out
        code, doc = audit_json(slab)
        assert code == 0 and kinds(doc, name).count("docker") == 1, doc["findings"]
    finally:
        slab.sh(name, "DEBIAN_FRONTEND=noninteractive apt-get purge -y -q docker.io >/dev/null 2>&1")
    res = slab.deploy("-y")
    assert res.returncode == 0 and DOCKER not in res.out, res.out


def test_08_iptables_persistent_fails_the_host_clearly_and_is_kept(slab) -> None:
    """ufw purged and iptables-persistent installed by the admin (from the lab's
    repository): the deploy refuses to install ufw there (apt would remove it), one
    line for that host, the other host converges, and the audit names it."""
    name = ufw_host(slab)
    slab.sh(name, "ufw --force disable >/dev/null; export DEBIAN_FRONTEND=noninteractive; "
                  "apt-get purge -y -q ufw >/dev/null 2>&1; apt-get update -q >/dev/null 2>&1; "
                  "apt-get install -y -q iptables-persistent >/dev/null 2>&1")
    assert slab.sh(name, "dpkg-query -W -f='${Status}' iptables-persistent").stdout == "install ok installed"
    res = slab.deploy("-y")
    assert res.returncode != 0
    lines = [line for line in res.out.splitlines() if "installing ufw would remove" in line]
    assert len(lines) == 1 and f"[{name}]" in lines[0], res.out
    assert "Traceback" not in res.out
    assert slab.sh(name, "dpkg-query -W -f='${Status}' iptables-persistent").stdout == "install ok installed"
    assert slab.sh(name, "command -v ufw", check=False).returncode != 0
    code, doc = audit_json(slab)
    assert code != 0 and "persistent" in kinds(doc, name), doc["findings"]
    assert "Status: active" in slab.sh(nft_host(slab), "ufw status").stdout
