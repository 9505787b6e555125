"""The host program's transaction (``remote/fleethost.py``) run for real: ufw's own
frontend on rule files in a temporary folder (``FROXLOR_FLEET_ROOT``: never /etc/ufw,
never this machine's firewall), the real commit-confirm protocol (``commit.py``: a real
revert timer process), the real request on stdin.

Issue 22's defects at unit level: a host plan that became risky while the run waited
is armed from the host's own plan (never applied unarmed); a request far beyond the
kernel's 128 KiB argument limit reaches the program; the revert undoes only the
transaction's own change (fail2ban's bans added or lifted meanwhile stay as they are);
a failed FTP switch leaves UFW as it was; the old passive range stays open until the
daemon has switched. Issue 21's live lock wait: told not to wait, a run that finds the
lock held says so at once and changes nothing; the control side says it waits, then
waits.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from froxlor_fleet.model.catalog import LOCK_WAIT
from froxlor_fleet.operations import hostprogram
from froxlor_fleet.remote import commit, fleethost, ftpapply, transaction
from froxlor_fleet.remote.ufwmodel import FAIL2BAN_COMMENT, Session, Want, expand, parse_rules
from helpers import UFW_FIXTURES, ufw_sandbox
from test_hostprogram import FakeHost, run_transaction
from test_passive_switch import host_with

SSH = Want("22", "tcp", None, "froxlor-fleet:ssh")
WEB = Want("80,443", "tcp", None, "froxlor-fleet:web")
OLD_RANGE = Want("50000:50100", "tcp", None, "froxlor-fleet:ftp")
NEW_RANGE = Want("60000:60100", "tcp", None, "froxlor-fleet:ftp")
SESSION = Session("10.77.0.1", "10.77.0.11", 22, "eth0")
TOKEN = "5f0a1b2c-0123456789abcdef"
PROGRAM = Path(fleethost.__file__)


class Host:
    """A host's / in a folder: UFW's files, our state, and the transaction on them."""

    def __init__(self, root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        self.root = root
        self.etc = ufw_sandbox(root, monkeypatch)
        monkeypatch.setenv("FROXLOR_FLEET_ROOT", str(root))  # the revert timer's too
        (self.etc / "default" / "ufw").write_text(
            (UFW_FIXTURES / "converged-web-ftp" / "default-ufw").read_text())
        (self.etc / "ufw" / "ufw.conf").write_text("ENABLED=no\nLOGLEVEL=low\n")
        (root / "run").mkdir()
        self.ctx = transaction.Context(str(root))
        self.rules([SSH])
        self.said: list[str] = []

    def rules(self, wants: list[Want], extra: str = "") -> None:
        for name, family in (("user.rules", 4), ("user6.rules", 6)):
            (self.etc / "ufw" / name).write_text("".join(
                f"### tuple ### {r.tuple_text()}\n" for w in wants for r in expand(w, True)
                if r.family == family) + (extra if family == 4 else ""))

    def files(self) -> dict[str, str]:
        return {p.name: p.read_text() for p in sorted((self.etc / "ufw").glob("*.rules"))}

    def written(self):
        return parse_rules(*((self.etc / "ufw" / name).read_text().splitlines()
                             for name in ("user.rules", "user6.rules")))

    def request(self, wanted=(SSH, WEB), confirm: int = 0, ftp: dict | None = None,
                **ufw: Any) -> dict[str, Any]:
        part = {"wanted": [w.to_wire() for w in wanted], "purge": False, "incoming": "deny",
                "outgoing": "allow", "logging": "low", "enabled": False, "guard": True,
                "session": SESSION.to_wire(), "over_ssh": True, "ssh_port": 22, **ufw}
        document: dict[str, Any] = {"ufw": part, "ftp": ftp,
                                    "lock": {"path": "/run/froxlor-fleet.lock", "wait": 5}}
        if confirm:
            document["confirm"] = {"timeout": confirm, "token": TOKEN}
        return document

    def run(self, request: dict[str, Any]) -> tuple[int, list[str]]:
        """The transaction as ``step`` runs it (in this process: ufw's sandbox)."""
        self.said = []
        code = transaction.step(request, self.ctx)
        return code, self.said

    def pending(self) -> list[str]:
        folder = self.root / "var/lib/froxlor-fleet/pending"
        return sorted(os.listdir(folder)) if folder.is_dir() else []


@pytest.fixture
def host(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    made = Host(tmp_path, monkeypatch)
    monkeypatch.setattr("builtins.print", lambda *a, **k: made.said.append(" ".join(map(str, a))))
    yield made
    for token in made.pending():  # never leave a timer behind
        commit.confirm(made.ctx.paths, token.split(".")[0])


def test_a_plain_change_is_applied_unarmed_when_confirm_is_off(host: Host) -> None:
    code, said = host.run(host.request())
    assert code == 0, said
    assert {r.dport for r in host.written()} == {"22", "80,443"}
    assert host.pending() == [] and not any(transaction.ARMED in s for s in said)


def test_a_plan_that_changed_while_waiting_is_armed_from_the_hosts_own_plan(host: Host) -> None:
    """The control side saw nothing to change (nothing to arm), but while it waited for
    the lock the host changed: the host's own plan reaches SSH, so the host arms it:
    never applied unconfirmed."""
    code, said = host.run(host.request(confirm=60, expect={"add": [], "delete": []}))
    assert code == 0, said
    assert any("changed while this run waited" in s for s in said)
    assert next(s for s in said if s.startswith(transaction.ARMED)).split()[1] == TOKEN
    assert host.pending() == [TOKEN]
    assert commit.confirm(host.ctx.paths, TOKEN)[0] == 0
    assert host.pending() == []


def test_nothing_to_arm_when_the_change_cannot_reach_ssh(host: Host) -> None:
    host.rules([SSH, WEB])
    code, said = host.run(host.request(confirm=60, logging="medium"))
    assert code == 0, said
    assert host.pending() == []


def test_the_guard_still_refuses_on_the_host(host: Host) -> None:
    before = host.files()
    code, said = host.run(host.request(wanted=[WEB], enabled=True))
    assert code == 3 and any("would not admit this SSH session" in s for s in said)
    assert host.files() == before and host.pending() == []


@pytest.mark.parametrize("confirm", [0, 60], ids=["unarmed", "armed"])
def test_another_runs_interrupted_revert_is_finished_before_the_change(
        host: Host, monkeypatch: pytest.MonkeyPatch, confirm: int) -> None:
    """A revert a restart cut short (its timer gone) is finished before this run changes
    anything, armed or not: the transaction settles other runs' pending reverts first,
    the one place they are settled (commit.arm relies on it)."""
    entry = host.root / "var/lib/froxlor-fleet/pending" / "old-token1.reverting"
    entry.mkdir(parents=True)
    (entry / "undo.json").write_text("{}")
    (entry / "timer").write_text("1 0 not-this-boot\n")  # a timer of another boot
    seen: list[set[str]] = []
    real_undo = transaction.undo

    def undo(record: dict[str, Any], ctx: transaction.Context) -> tuple[bool, str]:
        seen.append({r.dport for r in host.written()})
        return real_undo(record, ctx)

    monkeypatch.setattr(transaction, "undo", undo)
    code, said = host.run(host.request(confirm=confirm))
    assert code == 0, said
    assert seen == [{"22"}]  # reverted before this run added 80,443
    log = (host.root / "var/lib/froxlor-fleet/revert.log").read_text()
    assert " token=old-token1 reverted (finishing a revert that was interrupted): " in log
    assert host.pending() == ([TOKEN] if confirm else [])
    assert {r.dport for r in host.written()} == {"22", "80,443"}


def _ban(address: str, jail: str = "sshd") -> str:
    comment = f"{FAIL2BAN_COMMENT} after 5 attempts against {jail}".encode().hex()
    return f"### tuple ### deny any any 0.0.0.0/0 any {address} in comment={comment}\n"


def test_the_revert_undoes_only_the_transactions_own_change(host: Host) -> None:
    """Armed change, then fail2ban bans one address and lifts another ban meanwhile:
    the revert removes our rule and puts back what we removed, the new ban stays and the
    lifted one is not resurrected (a file restore would do both wrong)."""
    old_ban = _ban("192.0.2.7")
    host.rules([SSH, OLD_RANGE], extra=old_ban)
    code, said = host.run(host.request(wanted=[SSH, WEB], confirm=60))
    assert code == 0, said
    record = json.loads((host.root / "var/lib/froxlor-fleet/pending" / TOKEN / "undo.json").read_text())
    # fail2ban, meanwhile: a new ban, an old one lifted
    rules4 = host.etc / "ufw" / "user.rules"
    text = rules4.read_text().replace(old_ban, "")
    rules4.write_text(_ban("198.51.100.9", "proftpd") + text)
    ok, line = transaction.undo(record, host.ctx)
    assert ok, line
    rules = host.written()
    assert {r.dport for r in rules if r.managed} == {"22", "50000:50100"}
    assert [r.src for r in rules if r.comment.startswith(FAIL2BAN_COMMENT)] == ["198.51.100.9"]


def test_a_failed_ftp_switch_leaves_ufw_as_it_was(host: Host, monkeypatch) -> None:
    host.rules([SSH, OLD_RANGE])
    before = host.written()

    def refuse(*args: Any) -> str:
        raise ftpapply.FtpError("pure-ftpd did not come back with the new passive range")

    monkeypatch.setattr(ftpapply, "pureftpd_apply", refuse)
    ftp = {"daemon": "pureftpd", "range": "60000 60100", "force_ip": None,
           "marker": str(host.root / "pure.loaded"), "keep": [OLD_RANGE.to_wire()]}
    code, said = host.run(host.request(wanted=[SSH, NEW_RANGE], ftp=ftp))
    assert code == 1 and any("did not come back" in s for s in said), said
    assert host.written() == before


def test_the_old_range_stays_open_until_the_daemon_has_switched(host: Host, monkeypatch) -> None:
    host.rules([SSH, OLD_RANGE])
    seen: list[set[str]] = []

    def switch(*args: Any) -> str:
        seen.append({r.dport for r in host.written()})
        return "pure-ftpd restarted (pure-ftpd)"

    monkeypatch.setattr(ftpapply, "pureftpd_apply", switch)
    ftp = {"daemon": "pureftpd", "range": "60000 60100", "force_ip": None,
           "marker": str(host.root / "pure.loaded"), "keep": [OLD_RANGE.to_wire()]}
    code, said = host.run(host.request(wanted=[SSH, NEW_RANGE], ftp=ftp))
    assert code == 0, said
    assert seen == [{"22", "50000:50100", "60000:60100"}]  # both open while it switched
    assert {r.dport for r in host.written()} == {"22", "60000:60100"}


def test_a_big_request_reaches_the_program_on_stdin(host: Host) -> None:
    """A request far past the kernel's 128 KiB limit for one argument (300 sources, and
    a control-side plan of 3,000 rules) reaches the real program (fork, setsid, relay)
    on stdin."""
    wanted = [SSH] + [Want("3306", "tcp", f"10.1.{i // 250}.{i % 250}", "froxlor-fleet:mysql")
                      for i in range(300)]
    plan = [f"allow proto tcp from 10.9.{i // 250}.{i % 250} to any port 3306" for i in range(3000)]
    request = host.request(wanted=wanted, expect={"add": plan, "delete": []})
    text = json.dumps(request)
    assert len(text) > 128 * 1024
    done = subprocess.run([sys.executable, str(PROGRAM), "apply"], input=text, text=True,
                          capture_output=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert sum(1 for r in host.written() if r.dport == "3306") == 300


def test_the_step_goes_on_when_its_relay_is_killed(host: Host) -> None:
    """A dropped SSH session kills the relay and what it started: the detached step
    (nobody's child by then) still finishes."""
    text = json.dumps(host.request())
    proc = subprocess.Popen([sys.executable, str(PROGRAM), "apply"], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdin is not None
    proc.stdin.write(text)
    proc.stdin.close()
    for _ in range(100):  # the step has started: its folder beside the lock
        if list((host.root / "run").glob("froxlor-fleet.*")):
            break
        time.sleep(0.05)
    # as a dropped session does it: the relay and everything it started, by parentage
    tree = subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True, text=True).stdout
    for pid in [proc.pid, *map(int, tree.split())]:
        os.kill(pid, signal.SIGKILL)
    proc.wait()
    for _ in range(100):
        if {r.dport for r in host.written()} == {"22", "80,443"}:
            break
        time.sleep(0.1)
    assert {r.dport for r in host.written()} == {"22", "80,443"}


def test_an_unknown_session_still_guards_on_the_host(host: Host) -> None:
    """The session could not be found (sudo/su/jump host): the host refuses what could
    cut SSH, as the control side does, instead of skipping its guard."""
    before = host.written()
    code, said = host.run(host.request(session=None, enabled=True))  # enabling: could cut SSH
    assert code == 3 and any("could not find the SSH session" in s for s in said)
    assert host.written() == before


def test_an_unknown_session_allows_what_cannot_cut_ssh(host: Host) -> None:
    code, said = host.run(host.request(wanted=[SSH, WEB], session=None))  # UFW stays off
    assert code == 0, said


def test_a_ban_survives_a_range_switch_and_its_revert(host: Host, monkeypatch) -> None:
    """fail2ban's ban (``ufw prepend reject from IP ... comment 'by Fail2Ban ...'``) is
    another tenant's: an armed range switch with purge on keeps it, a ban fail2ban adds
    while the daemon switches survives the old range's closing, and the revert (not
    confirmed) undoes our rules only: both bans stay, the old range is back."""
    ban = _ban("192.0.2.7").replace("deny any", "reject any")
    host.rules([SSH, OLD_RANGE], extra=ban)
    rules4 = host.etc / "ufw" / "user.rules"

    def switch(*args: Any) -> str:  # fail2ban bans meanwhile
        rules4.write_text(rules4.read_text().replace(
            "### tuple ###", _ban("198.51.100.9", "proftpd").rstrip("\n") + "\n### tuple ###", 1))
        return "pure-ftpd restarted (pure-ftpd)"

    monkeypatch.setattr(ftpapply, "pureftpd_apply", switch)
    ftp = {"daemon": "pureftpd", "range": "60000 60100", "force_ip": None,
           "marker": str(host.root / "pure.loaded"), "keep": [OLD_RANGE.to_wire()]}
    code, said = host.run(host.request(wanted=[SSH, NEW_RANGE], ftp=ftp, purge=True, confirm=60))
    assert code == 0, said
    bans = sorted(r.src for r in host.written() if r.comment.startswith(FAIL2BAN_COMMENT))
    assert bans == ["192.0.2.7", "198.51.100.9"]
    assert {r.dport for r in host.written() if r.managed} == {"22", "60000:60100"}
    record = json.loads((host.root / "var/lib/froxlor-fleet/pending" / TOKEN / "undo.json").read_text())
    record.pop("ftp")  # the daemon's files are ftpapply's (test_ftpapply.py)
    ok, line = transaction.undo(record, host.ctx)
    assert ok, line
    rules = host.written()
    assert sorted(r.src for r in rules if r.comment.startswith(FAIL2BAN_COMMENT)) == bans
    assert {r.dport for r in rules if r.managed} == {"22", "50000:50100"}


# --- ufw's netfilter capability test: once per process -------------------------------------

# iptables as the host's: answers -V, passes ufw's capability test (its test chain made,
# two rules appended, flushed, deleted), and logs every call; anything else fails (ufw's
# chains are not loaded, as in the sandbox's stub).
COUNTING_IPTABLES = """#!/bin/sh
echo "${0##*/} $*" >> "${0%/*}/calls.log"
[ "$1" = -V ] && echo 'iptables v1.8.9 (nf_tables)' && exit 0
case "$2" in *caps-test*) exit 0;; esac
exit 1
"""


def test_a_range_switch_runs_ufws_capability_test_once_per_family(
        host: Host, monkeypatch: pytest.MonkeyPatch) -> None:
    """A range switch makes a fresh ufw frontend for each step (another tenant may
    change the rules in between), and each new frontend ran ufw's netfilter capability
    test again: ``iptables -V`` and a test chain (-N, -A twice, -F, -X) for iptables and
    ip6tables, ~11 process executions, the same answer each time (it is the kernel's).
    Now once per family for the transaction's process; the rules are still read fresh
    per step (``test_a_ban_survives_a_range_switch_and_its_revert``)."""
    import ufw.backend

    sbin = host.root / "sbin"
    for tool in ("iptables", "ip6tables"):
        (sbin / tool).write_text(COUNTING_IPTABLES)
    # The test as on a host: ufw runs it only with its checks on, as root (the sandbox
    # turns the checks off: they want root-owned files).
    initcaps = ufw.backend.UFWBackend.initcaps

    def as_on_a_host(backend: Any) -> None:
        backend.do_checks = True
        try:
            initcaps(backend)
        finally:
            backend.do_checks = False

    monkeypatch.setattr(ufw.backend.UFWBackend, "initcaps", as_on_a_host)
    if os.getuid() != 0:
        monkeypatch.setattr(os, "getuid", lambda: 0)
    host.rules([SSH, OLD_RANGE])
    monkeypatch.setattr(ftpapply, "pureftpd_apply", lambda *args: "pure-ftpd restarted (pure-ftpd)")
    ftp = {"daemon": "pureftpd", "range": "60000 60100", "force_ip": None,
           "marker": str(host.root / "pure.loaded"), "keep": [OLD_RANGE.to_wire()]}
    code, said = host.run(host.request(wanted=[SSH, NEW_RANGE], ftp=ftp))
    assert code == 0, said
    assert "ufw: closed the previous passive range" in said  # two steps, two frontends
    calls = (sbin / "calls.log").read_text().splitlines()
    v6 = 1 if os.path.exists("/proc/sys/net/ipv6") else 0  # ufw skips it without IPv6
    tests = [c.split()[0] for c in calls if c.split()[1] == "-N"]
    assert (tests.count("iptables"), tests.count("ip6tables")) == (1, v6), calls
    assert [c for c in calls if c.split()[1] == "-V"] == ["iptables -V"], calls
    assert {r.dport for r in host.written()} == {"22", "60000:60100"}

    # The next transaction is a new process: it takes the answers this boot already
    # has from the state folder (written under the lock) and runs no test at all.
    def new_process() -> None:
        import ufw.util

        for name in ("get_iptables_version", "get_netfilter_capabilities"):
            monkeypatch.setattr(ufw.util, name, getattr(ufw.util, name).ask)

    new_process()
    (sbin / "calls.log").write_text("")
    ftp = dict(ftp, range="50000 50100", keep=[NEW_RANGE.to_wire()])
    code, said = host.run(host.request(wanted=[SSH, OLD_RANGE], ftp=ftp))
    assert code == 0, said
    calls = (sbin / "calls.log").read_text().splitlines()
    assert calls and not [c for c in calls if c.split()[1] in ("-V", "-N", "-A", "-X")], calls
    assert {r.dport for r in host.written()} == {"22", "50000:50100"}
    # another boot (another kernel), or another iptables binary: asked again
    answers = host.root / "var/lib/froxlor-fleet" / transaction.NETFILTER_ANSWERS
    kept = json.loads(answers.read_text())
    assert kept["answers"] and answers.stat().st_mode & 0o077 == 0
    answers.write_text(json.dumps(dict(kept, boot="another-boot")))
    new_process()
    ftp = dict(ftp, range="60000 60100", keep=[OLD_RANGE.to_wire()])
    code, said = host.run(host.request(wanted=[SSH, NEW_RANGE], ftp=ftp))
    assert code == 0, said
    calls = (sbin / "calls.log").read_text().splitlines()
    assert [c for c in calls if c.split()[1] == "-V"] == ["iptables -V"], calls


# --- another run holds the host lock --------------------------------------------------------

@contextlib.contextmanager
def lock_held(host: Host) -> Iterator[int]:
    """Another run's hold on the host lock, taken as the program takes it (flock)."""
    fd = os.open(host.root / "run" / "froxlor-fleet.lock", os.O_WRONLY | os.O_CREAT, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        yield fd
    finally:
        os.close(fd)


def tree(root: Path) -> dict[str, bytes | None]:
    """Every file (its bytes) and folder (None) below ``root``: the host's whole state."""
    return {str(p.relative_to(root)): None if p.is_dir() else p.read_bytes()
            for p in sorted(root.rglob("*"))}


def program(text: str) -> tuple[int, list[str]]:
    """The real program (fork, setsid, relay), as the SSH session runs it."""
    done = subprocess.run([sys.executable, str(PROGRAM), "apply"], input=text, text=True,
                          capture_output=True, timeout=30)
    return done.returncode, (done.stdout + done.stderr).splitlines()


def test_a_run_told_not_to_wait_for_a_held_lock_says_busy_and_changes_nothing(host: Host) -> None:
    """Lock wait 0 (the control side's first try) against a held lock: the one line
    BUSY, exit status 75, nothing changed and nothing armed; the same request on a free
    lock changes and arms (so "nothing" above is not for want of something to do)."""
    request = host.request(confirm=60)
    request["lock"]["wait"] = 0
    with lock_held(host):
        before = tree(host.root)
        code, lines = program(json.dumps(request))
        assert (code, lines) == (transaction.EXIT_LOCK, [transaction.BUSY])
        assert tree(host.root) == before and host.pending() == []
    code, lines = program(json.dumps(request))
    assert code == 0, lines
    assert lines[-1].startswith(transaction.ARMED) and host.pending() == [TOKEN]
    assert {r.dport for r in host.written()} == {"22", "80,443"}


def test_the_control_side_says_it_waits_then_the_program_waits(host: Host) -> None:
    """``_transaction`` against the real program: the first command finds the lock held,
    the waiting line is logged before the second command, which waits (the lock is
    freed a moment after the line) and applies."""
    with lock_held(host) as fd:
        def answer(stdin: str) -> tuple[bool, list[str]]:
            code, lines = program(stdin)
            if code == transaction.EXIT_LOCK:  # the other run ends a moment after
                threading.Timer(0.5, fcntl.flock, (fd, fcntl.LOCK_UN)).start()
            return code == 0, lines

        pyinfra_host = FakeHost(answer)
        request = hostprogram.request(ufw=host.request()["ufw"], ftp=None, confirm_timeout=0)
        assert run_transaction(pyinfra_host, host_with(None), request)
    assert pyinfra_host.events[:4] == [
        ("place", None), ("run", 0),
        ("log", f"another run holds the lock on this host; waiting up to {LOCK_WAIT} s"),
        ("run", LOCK_WAIT)]
    assert {r.dport for r in host.written()} == {"22", "80,443"}


def test_a_free_lock_is_one_command_of_the_real_program(host: Host) -> None:
    def answer(stdin: str) -> tuple[bool, list[str]]:
        code, lines = program(stdin)
        return code == 0, lines

    pyinfra_host = FakeHost(answer)
    request = hostprogram.request(ufw=host.request()["ufw"], ftp=None, confirm_timeout=0)
    assert run_transaction(pyinfra_host, host_with(None), request)
    assert pyinfra_host.runs() == [0]
    assert {r.dport for r in host.written()} == {"22", "80,443"}
