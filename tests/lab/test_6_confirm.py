"""Commit-confirmed rollouts on the lab (issue 11): a change the lockout guard can't see
cutting new SSH connections is reverted by the host itself; a control side that dies
after the change does not leave it standing; a normal rollout confirms and leaves
nothing behind."""

from __future__ import annotations

import signal
import time

from conftest import TEST_LAB, results
from lab.access import COMMAND_LOG
from labtools import EXPECTED, UFW_OP, assert_no_change, connect, reset_ufw, wait_until
from test_2_faults import background_deploy, converge, host_files, wait_for_process
from test_4_safety import Data

TIMEOUT = 10  # firewall_confirm_timeout in these tests (the default is 60)
PENDING = "/var/lib/froxlor-fleet/pending"
BAN = "by Fail2Ban after 5 attempts against sshd"  # fail2ban's ufw action's comment


def ufw_files(name: str) -> dict[str, bytes]:
    hd = TEST_LAB / "hosts" / name
    files = {f: (hd / "etc-ufw" / f).read_bytes() for f in ("user.rules", "user6.rules", "ufw.conf")}
    files["default-ufw"] = (hd / "default-ufw").read_bytes()
    return files




def trap_new_ssh(lab, name: str) -> None:
    """A DROP of *new* SSH connections from the control side in before.rules, right
    after ufw's ESTABLISHED accept: the session pyinfra holds survives, new ones don't,
    and the guard (which reads the user rules) can't see it."""
    rule = (f"-A ufw-before-input -s {lab.control_ip} -p tcp --dport 22 "
            "-m conntrack --ctstate NEW -j DROP")
    path = TEST_LAB / "hosts" / name / "etc-ufw/before.rules"
    lines = path.read_text().splitlines()
    at = next(i for i, line in enumerate(lines)
              if line.startswith("-A ufw-before-input") and "RELATED,ESTABLISHED" in line)
    lines.insert(at + 1, rule)
    path.write_text("\n".join(lines) + "\n")


def untrap(lab, name: str) -> None:
    path = TEST_LAB / "hosts" / name / "etc-ufw/before.rules"
    path.write_text("".join(line + "\n" for line in path.read_text().splitlines()
                            if "--ctstate NEW -j DROP" not in line))


def no_pending(lab, name: str) -> bool:
    return lab.sh(name, f"ls -A {PENDING} 2>/dev/null").stdout.strip() == ""


def no_timer(lab, name: str) -> bool:
    """No process of the host program is left (the revert timer is a fork of the
    transaction: its command line is the transaction's, which has ended)."""
    return lab.sh(name, "pgrep -f '[f]leethost.py' >/dev/null", check=False).returncode == 1


def ufw_state(lab, name: str) -> tuple[list[str], str]:
    """What UFW holds (rules as `ufw show added` lists them) and its status/policies."""
    return sorted(lab.show_added(name)), lab.sh(name, "ufw status verbose").stdout


def test_trap_the_guard_cannot_see_is_reverted_by_the_host(lab) -> None:
    converge(lab)
    dns = lab.by_kind("dns")[0]
    reset_ufw(lab, dns)  # UFW off: the run will enable it
    trap_new_ssh(lab, dns)
    before = ufw_state(lab, dns)
    others = [n for n in lab.hosts if n != dns]
    for name in others:  # drift elsewhere (a policy that can matter for SSH): confirmed
        lab.sh(name, "ufw default allow incoming >/dev/null")
    try:
        with Data(lab) as data:
            data.add("all", f"firewall_confirm_timeout = {TIMEOUT}\n")
            started = time.monotonic()
            res = lab.deploy("-y")
        assert res.returncode != 0
        lines = [line for line in res.out.splitlines() if "could not open a new SSH connection" in line]
        assert len(lines) == 1 and f"[{dns}]" in lines[0], res.out
        assert "the host restores its previous firewall at" in lines[0]
        assert "Traceback" not in res.out
        # the host puts itself back within the timeout plus a few seconds
        assert wait_until(lambda: connect(lab.ip(dns), 22) == "connected",
                          TIMEOUT + 15 - (time.monotonic() - started))
        assert wait_until(lambda: no_pending(lab, dns), 10)
        assert ufw_state(lab, dns) == before  # the transaction undone, UFW off again
        assert "Status: inactive" in lab.sh(dns, "ufw status").stdout
        assert "reverted" in lab.sh(dns, "cat /var/lib/froxlor-fleet/revert.log").stdout
        for name in others:  # the others converged and confirmed
            assert "deny (incoming)" in lab.sh(name, "ufw status verbose").stdout, name
            assert no_pending(lab, name) and no_timer(lab, name), name
    finally:
        untrap(lab, dns)
    # the next run (trap gone) plans again from the restored state and converges it
    converge(lab)
    assert_no_change(lab.deploy("-y"))


def test_control_side_killed_after_the_change_host_reverts_by_itself(lab) -> None:
    converge(lab)
    mail = lab.by_kind("mail")[0]
    lab.sh(mail, "ufw delete allow 143,993/tcp >/dev/null")
    old_ban = f"{BAN} 192.0.2.98"
    lab.sh(mail, f"ufw prepend deny from 192.0.2.98 comment '{BAN}' >/dev/null")
    before = sorted(lab.show_added(mail))
    with Data(lab) as data:
        data.add("all", f"firewall_confirm_timeout = {TIMEOUT}\n")
        proc = background_deploy("--limit", mail)
        # the change is being armed and made: freeze the control side before it can
        # confirm, let the (detached) change finish, then kill it for good
        assert wait_for_process(lab, mail, "fleethost.py apply"), proc.communicate()[0]
        proc.send_signal(signal.SIGSTOP)
        assert wait_until(lambda: lab.sh(mail, f"ls {PENDING}").stdout.strip() != "", 20, 0.05)
        assert wait_until(lambda: "143,993" in " ".join(lab.show_added(mail)), 20, 0.05)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    assert "143,993" in " ".join(lab.show_added(mail))  # the change is there, unconfirmed
    # fail2ban meanwhile: bans a new address, lifts the old ban
    lab.sh(mail, f"ufw prepend deny from 192.0.2.99 comment '{BAN}' >/dev/null")
    lab.sh(mail, "ufw delete deny from 192.0.2.98 >/dev/null")
    assert wait_until(lambda: no_pending(lab, mail), TIMEOUT + 15)
    # the host undid its own change only: IMAP closed again, the new ban kept, the
    # lifted one not brought back (a file restore would get both wrong)
    after = sorted(lab.show_added(mail))
    assert "143,993" not in " ".join(after)
    assert "192.0.2.99" in " ".join(after) and "192.0.2.98" not in " ".join(after)
    assert sorted(r for r in after if "192.0.2.99" not in r) == sorted(
        r for r in before if "192.0.2.98" not in r), (before, after, old_ban)
    assert no_timer(lab, mail)
    lab.sh(mail, "ufw delete deny from 192.0.2.99 >/dev/null")
    converge(lab)


def test_normal_rollout_confirms_and_leaves_nothing_behind(lab) -> None:
    converge(lab)
    for name in lab.hosts:
        reset_ufw(lab, name)
    with Data(lab) as data:
        data.add("all", f"firewall_confirm_timeout = {TIMEOUT}\n")
        res = lab.deploy("-y")
        assert res.returncode == 0, res.out
        rows = results(res.out)
        assert rows[UFW_OP][1] == str(len(lab.hosts)), rows
        for name, host in lab.hosts.items():
            assert no_pending(lab, name) and no_timer(lab, name), name
            assert sorted(lab.show_added(name)) == sorted(EXPECTED[host["kind"]]), name
        time.sleep(TIMEOUT + 2)  # past the deadline: nothing reverts a confirmed change
        for name, host in lab.hosts.items():
            assert sorted(lab.show_added(name)) == sorted(EXPECTED[host["kind"]]), name
            assert "Status: active" in lab.sh(name, "ufw status").stdout
        # the no-op rerun still costs one remote command per host
        before = {n: host_files(lab, [n]) for n in lab.hosts}
        for name in lab.hosts:
            lab.sh(name, f": > {COMMAND_LOG}")
        assert_no_change(lab.deploy("-y"))
        for name in lab.hosts:
            assert len(lab.sh(name, f"cat {COMMAND_LOG}").stdout.splitlines()) == 1, name
            assert host_files(lab, [name]) == before[name]
