"""Safety under faults, on the lab fleet: unreachable hosts, a connection cut mid-apply,
missing software, concurrent runs. (Broken ProFTPd config, drift and the lockout guard
are in test_1_e2e.py; the control machine's own firewall in test_zz_machine.py.)"""

from __future__ import annotations

import subprocess
import sys
import threading
import time

from conftest import ROOT, TEST_LAB
from driver import DEPLOY
from lab.netns_hosts import nsenter
from lab.services import start_services, wait_ssh
from labtools import EXPECTED, assert_no_change, connect, reset_ufw

MISSING_FTP = ("the ftp role needs an FTP server, but neither ProFTPd nor pure-ftpd is installed "
               "on this host")


def converge(lab) -> None:
    res = lab.deploy("-y")
    assert res.returncode == 0, res.out
    for name, host in lab.hosts.items():
        assert sorted(lab.show_added(name)) == sorted(EXPECTED[host["kind"]]), name


def host_files(lab, names) -> dict[str, str]:
    return {k: v for k, v in lab.state_files().items() if any(f"/{n}/" in k for n in names)}


def background_deploy(*args: str) -> subprocess.Popen:
    import os
    return subprocess.Popen([sys.executable, "-m", "pyinfra", "inventory.py", str(DEPLOY),
                             "-y", *args], cwd=TEST_LAB, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True,
                            env=dict(os.environ, PYTHONPATH=str(ROOT)))


def wait_for_process(lab, name: str, pattern: str, timeout: float = 30) -> bool:
    """Wait until a process whose command line contains ``pattern`` runs on the host.
    (``[x]yz`` keeps pgrep from matching the shell that runs pgrep itself.)"""
    regex = f"[{pattern[0]}]{pattern[1:]}"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if lab.sh(name, f"pgrep -f '{regex}' >/dev/null", check=False).returncode == 0:
            return True
        time.sleep(0.01)
    return False


WAITING = "another run holds the lock on this host; waiting up to 300 s"


class Lines:
    """A running process's output, read line by line as it comes (a thread), so a test
    can see what the control side has said so far while the run still goes on."""

    def __init__(self, proc: subprocess.Popen) -> None:
        self.proc, self.lines = proc, []
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.append(line)

    def wait_for(self, text: str, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(text in line for line in self.lines):
                return True
            time.sleep(0.05)
        return False

    def finish(self, timeout: float) -> str:
        self.proc.wait(timeout=timeout)
        self.thread.join(timeout=10)
        return "".join(self.lines)


def deploy_while_locked(lab, name: str, meanwhile) -> str:
    """A deploy limited to ``name`` that starts while another holder has the host lock:
    the control side says it waits while it waits (issue 21), ``meanwhile()`` runs
    then; then the lock is freed. Returns its output."""
    holder = subprocess.Popen(nsenter(name, "flock", "/run/froxlor-fleet.lock",
                                      "sleep", "60"))
    try:
        assert wait_for_process(lab, name, "sleep 60")
        proc = background_deploy("--limit", name)
        out = Lines(proc)
        # said on the control side while the lock is still held, not when the run ends
        assert out.wait_for(f"[{name}] {WAITING}", 60), "".join(out.lines)
        assert proc.poll() is None
        meanwhile()
    finally:
        lab.sh(name, "pkill -f 'sleep 60'", check=False)
        holder.wait(timeout=10)
    text = out.finish(timeout=120)
    assert proc.returncode == 0, text
    assert text.count(WAITING) == 1, text
    return text


def test_unreachable_host_others_converge_then_it_recovers(lab) -> None:
    converge(lab)
    dns, mail = lab.by_kind("dns")[0], lab.by_kind("mail")[0]
    lab.sh(mail, "ufw --force disable >/dev/null")  # drift elsewhere, to be repaired
    lab.sh(dns, "kill $(cat /run/sshd.pid)")
    try:
        res = lab.deploy("-y")
        assert res.returncode != 0
        assert f"[{dns}] Could not connect" in res.out
        assert "Status: active" in lab.sh(mail, "ufw status").stdout  # the others went on
    finally:
        start_services(dns, TEST_LAB / "hosts" / dns)
        wait_ssh([lab.ip(dns)])
    others = [n for n in lab.hosts if n != dns]
    before = host_files(lab, others)
    lab.sh(dns, "ufw delete allow 53/udp >/dev/null")  # it drifted while away
    res = lab.deploy("-y")
    assert res.returncode == 0, res.out
    assert sorted(lab.show_added(dns)) == sorted(EXPECTED["dns"])
    assert host_files(lab, others) == before  # nothing changed elsewhere
    assert_no_change(lab.deploy("-y"))


def kill_ssh_sessions(lab, name: str) -> None:
    """Cut every SSH session on the host: each session process and all it started."""
    lab.sh(name, "kill_tree() { for c in $(pgrep -P $1); do kill_tree $c; done; kill -9 $1; }; "
                 "for s in $(pgrep -f 'sshd: root@'); do kill_tree $s; done 2>/dev/null; true",
           check=False)


def test_connection_lost_mid_apply_never_locks_out(lab) -> None:
    """Cut the SSH session (kill -9 of the session and everything it started) at several
    points of the UFW step on a pristine host. Once the step has detached from the
    session it completes anyway: UFW ends up on *with* SSH admitted, never half-applied;
    a cut before it detached leaves the host untouched. Either way the next run
    converges with no duplicate or stray rules. (Commit-confirmed is off here: this is
    about the detached step. With it on, a cut run can't confirm and the host reverts:
    test_6_confirm.py.)"""
    web = lab.by_kind("web")[1]
    cuts = completed = 0
    for delay in (0.0, 0.02, 0.05, 0.1, 0.2, 0.4):
        reset_ufw(lab, web)
        proc = background_deploy("--limit", web, "--data", "firewall_confirm_timeout=0")
        assert wait_for_process(lab, web, "ON THE MANAGED HOST"), proc.communicate()[0]
        time.sleep(delay)
        kill_ssh_sessions(lab, web)
        out = proc.communicate(timeout=120)[0]
        cuts += proc.returncode != 0  # pyinfra lost the host mid-run
        lab.sh(web, "flock /run/froxlor-fleet.lock true")  # the detached step has finished
        assert connect(lab.ip(web), 22) == "connected", (delay, out)
        added = lab.show_added(web)
        if "Status: active" in lab.sh(web, "ufw status").stdout:
            completed += 1  # cut after the step detached: it finished on its own
            assert sorted(added) == sorted(EXPECTED["web"]) and len(added) == len(set(added))
        else:  # cut before the step detached (a busy machine): it never started
            assert added in ([], ["(None)"]), (delay, added)  # ufw's "no rules"
        res = lab.deploy("-y", "--limit", web, "--data", "firewall_confirm_timeout=0")
        assert res.returncode == 0, res.out
    assert cuts, "no cut landed while the run was going on: the test proved nothing"
    assert completed, "no cut landed after the step detached: the test proved nothing"
    assert_no_change(lab.deploy("-y"))


FAKE_APT = """#!/bin/sh
# lab stand-in for apt-get (lab hosts have no network): records the call; installing
# ufw lifts this host's masks, which is what the package would bring back.
echo "$*" >> /run/apt-get.calls
case "$*" in *ufw*)
  umount /etc/ufw /usr/lib/python3/dist-packages/ufw /usr/sbin/ufw /usr/lib/ufw
  echo "Setting up ufw (lab)";;
esac
"""


def mask(lab, name: str, paths: list[str]) -> None:
    """Make files/dirs vanish in one host only (bind an empty stand-in over them)."""
    empty_dir = TEST_LAB / "empty-dir"
    empty_dir.mkdir(exist_ok=True)
    empty_file = TEST_LAB / "empty-file"
    empty_file.write_text("")
    empty_file.chmod(0o644)
    for path in paths:
        is_dir = lab.sh(name, f"test -d {path}", check=False).returncode == 0
        lab.sh(name, f"mount --bind {empty_dir if is_dir else empty_file} {path}")


def fake_apt(lab, name: str) -> None:
    fake = TEST_LAB / "fake-apt-get"
    fake.write_text(FAKE_APT)
    fake.chmod(0o755)
    lab.sh(name, f"mount --bind {fake} /usr/bin/apt-get; rm -f /run/apt-get.calls")


def test_missing_ufw_is_installed_and_configured(lab) -> None:
    dns = lab.by_kind("dns")[0]
    reset_ufw(lab, dns)
    mask(lab, dns, ["/usr/sbin/ufw", "/usr/lib/python3/dist-packages/ufw", "/usr/lib/ufw",
                    "/etc/ufw"])
    fake_apt(lab, dns)
    try:
        assert lab.sh(dns, "command -v ufw", check=False).returncode != 0
        res = lab.deploy("-y", "--limit", dns)
        assert res.returncode == 0, res.out
        assert "install -y -q ufw" in lab.sh(dns, "cat /run/apt-get.calls").stdout
        assert sorted(lab.show_added(dns)) == sorted(EXPECTED["dns"])
        assert "Status: active" in lab.sh(dns, "ufw status").stdout
    finally:
        lab.sh(dns, "umount /usr/bin/apt-get; rm -f /run/apt-get.calls", check=False)
    assert_no_change(lab.deploy("-y"))


def test_ftp_host_without_proftpd_fails_clearly_and_installs_nothing(lab) -> None:
    web = lab.by_kind("web")[0]
    lab.sh(web, "ufw delete allow 80,443/tcp >/dev/null")  # drift that must stay untouched
    before = host_files(lab, [web])
    mask(lab, web, ["/usr/sbin/proftpd"])
    fake_apt(lab, web)
    try:
        res = lab.deploy("-y")
        assert res.returncode != 0
        assert f"[{web}]" in res.out and MISSING_FTP in res.out
        assert host_files(lab, [web]) == before  # failed before anything changed on it
        assert lab.sh(web, "test -e /run/apt-get.calls", check=False).returncode == 1
    finally:
        lab.sh(web, "umount /usr/sbin/proftpd; umount /usr/bin/apt-get", check=False)
    converge(lab)


def test_concurrent_runs_do_not_interleave(lab) -> None:
    mail, db = lab.by_kind("mail")[0], lab.by_kind("db")[0]
    # 1. a run waits while another holds the host's lock, and changes nothing meanwhile
    lab.sh(mail, "ufw delete allow 143,993/tcp >/dev/null")

    def still_waiting() -> None:
        assert "143,993" not in " ".join(lab.show_added(mail))  # untouched meanwhile

    deploy_while_locked(lab, mail, still_waiting)
    assert sorted(lab.show_added(mail)) == sorted(EXPECTED["mail"])
    # 2. two whole-fleet rollouts at once, from pristine hosts: both succeed, exact result
    for name in (mail, db):
        reset_ufw(lab, name)
    runs = [background_deploy(), background_deploy()]
    for run in runs:
        out = run.communicate(timeout=300)[0]
        assert run.returncode == 0, out
    for name, host in lab.hosts.items():
        added = lab.show_added(name)
        assert sorted(added) == sorted(EXPECTED[host["kind"]]), name
    assert_no_change(lab.deploy("-y"))


PROFTPD_CONF = "/etc/proftpd/proftpd.conf"


def test_admins_passive_ports_in_proftpd_conf_stop_that_host_before_its_firewall(lab) -> None:
    """froxlor's docs have admins set PassivePorts in proftpd.conf, which ProFTPd reads
    before conf.d/ (first one wins): our fragment would be ignored and UFW would open
    another range. That host fails first, naming file:line; the other ftp host goes on."""
    converge(lab)
    web, other = lab.by_kind("web")
    for name in (web, other):
        lab.sh(name, "ufw delete allow 80,443/tcp >/dev/null")  # drift: kept on web, fixed on other
    lab.sh(web, f"cp -p {PROFTPD_CONF} {PROFTPD_CONF}.lab-bak")
    try:
        lab.sh(web, f"sed -i '\\|^Include /etc/proftpd/conf.d/|i PassivePorts 40000 40100' "
                    f"{PROFTPD_CONF}")
        line = lab.sh(web, f"grep -n '^PassivePorts' {PROFTPD_CONF}").stdout.split(":")[0]
        before = host_files(lab, [web])
        res = lab.deploy("-y")
        assert res.returncode != 0 and "Traceback" not in res.out
        refusals = [text for text in res.out.splitlines() if "ProFTPd would not use" in text]
        assert len(refusals) == 1 and f"[{web}]" in refusals[0], res.out
        assert f"{PROFTPD_CONF}:{line} sets PassivePorts 40000 40100" in refusals[0]
        assert "50000 50100" in refusals[0]
        assert host_files(lab, [web]) == before  # failed before its firewall changed
        assert sorted(lab.show_added(other)) == sorted(EXPECTED["web"])
        # the same range as the data: the two sides agree, the host converges
        lab.sh(web, f"sed -i 's/^PassivePorts 40000 40100$/PassivePorts 50000 50100/' "
                    f"{PROFTPD_CONF}")
        res = lab.deploy("-y", "--limit", web)
        assert res.returncode == 0, res.out
        assert sorted(lab.show_added(web)) == sorted(EXPECTED["web"])
    finally:
        lab.sh(web, f"mv {PROFTPD_CONF}.lab-bak {PROFTPD_CONF}")
    converge(lab)
