"""Commit-confirmed UFW changes: remote/confirm.sh run under dash against temp trees
(FROXLOR_FLEET_ROOT, a fake ufw/iptables/logger on PATH that record their calls, a temp
host lock), and confirm.py against a throwaway loopback sshd.

Never touches this machine's firewall, /etc/ufw, /var/lib/froxlor-fleet or /run: every
path is below a temp dir; the sshd runs as root only inside a private mount namespace
(its own /run) and is killed by its PID.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import ClassVar

import pytest
from pyinfra.api import Config, Inventory, QuoteString, State, StringCommand

from froxlor_fleet import confirm
from helpers import UFW_FIXTURES

SCRIPT = Path(confirm.__file__).parent / "remote" / "confirm.sh"
SH = shutil.which("dash") or "sh"
IN_CI = os.environ.get("CI") == "true"
TOKEN = "t0k3n-abcdef12"
UFW_FILES = {  # name in the fixture dir -> path below the root
    "user.rules": "etc/ufw/user.rules",
    "user6.rules": "etc/ufw/user6.rules",
    "ufw.conf": "etc/ufw/ufw.conf",
    "default-ufw": "etc/default/ufw",
}

FAKE_UFW = """#!/bin/sh
echo "ufw $*" >> "$FAKE_CALLS"
case "$*" in
  reload) touch "$FROXLOR_FLEET_ROOT/chains-loaded"; echo "Firewall reloaded" ;;
  "--force disable")
    rm -f "$FROXLOR_FLEET_ROOT/chains-loaded"
    sed -i 's/^ENABLED=.*/ENABLED=no/' "$FROXLOR_FLEET_ROOT/etc/ufw/ufw.conf"
    echo "Firewall stopped and disabled on system startup" ;;
  *) echo "fake ufw: unexpected $*"; exit 9 ;;
esac
"""
FAKE_IPTABLES = """#!/bin/sh
echo "iptables $*" >> "$FAKE_CALLS"
[ "$*" = "-w -n -L ufw-user-input" ] || exit 9
[ -e "$FROXLOR_FLEET_ROOT/chains-loaded" ]
"""
FAKE_LOGGER = """#!/bin/sh
echo "logger $*" >> "$FAKE_CALLS"
"""
# Stands in for ufw_apply.py: makes the host's UFW files those of the converged capture.
CHANGE = ('for f in user.rules:etc/ufw/user.rules user6.rules:etc/ufw/user6.rules '
          'ufw.conf:etc/ufw/ufw.conf default-ufw:etc/default/ufw; do '
          'cat "$0/${f%%:*}" > "$FROXLOR_FLEET_ROOT/${f#*:}"; done; '
          'touch "$FROXLOR_FLEET_ROOT/chains-loaded"; echo applied')


# --- helpers -------------------------------------------------------------------------


class Tree:
    """A host's / below a temp dir, fake commands, and the env to run confirm.sh."""

    def __init__(self, base: Path, scenario: str = "pristine"):
        self.base = base
        self.root = base / "root"
        self.bin = base / "bin"
        self.calls = base / "calls"
        self.lock = base / "froxlor-fleet.lock"
        for sub in ("etc/ufw", "etc/default", "run"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        self.bin.mkdir()
        for name, text in (("ufw", FAKE_UFW), ("iptables", FAKE_IPTABLES), ("logger", FAKE_LOGGER)):
            (self.bin / name).write_text(text)
            (self.bin / name).chmod(0o755)
        self.calls.write_text("")
        self.load(scenario)
        self.env = {
            "PATH": f"{self.bin}:/usr/bin:/bin",
            "FROXLOR_FLEET_ROOT": str(self.root),
            "FROXLOR_FLEET_LOCK": str(self.lock),
            "FROXLOR_FLEET_UFW": str(self.bin / "ufw"),
            "FROXLOR_FLEET_IPTABLES": str(self.bin / "iptables"),
            "FAKE_CALLS": str(self.calls),
            "TZ": "UTC",
        }
        self.state_dir = self.root / "var/lib/froxlor-fleet"
        self.pending = self.state_dir / "pending"
        self.revert_log = self.state_dir / "revert.log"

    def load(self, scenario: str, active: bool | None = None, enabled: bool | None = None) -> None:
        """The captured scenario's files; ``enabled`` rewrites ENABLED in ufw.conf,
        ``active`` says whether ufw's chains are loaded (default: as ENABLED)."""
        for name, rel in UFW_FILES.items():
            shutil.copyfile(UFW_FIXTURES / scenario / name, self.root / rel)
        conf_path = self.root / "etc/ufw/ufw.conf"
        conf = conf_path.read_text()
        if enabled is not None:
            conf = re.sub(r"(?m)^ENABLED=.*$", f"ENABLED={'yes' if enabled else 'no'}", conf)
            conf_path.write_text(conf)
        loaded = "ENABLED=yes" in conf if active is None else active
        (self.root / "chains-loaded").unlink(missing_ok=True)
        if loaded:
            (self.root / "chains-loaded").touch()

    def files(self) -> dict[str, tuple[bytes, int, int]]:
        """Each UFW file's bytes, mode and mtime (ns)."""
        out = {}
        for rel in UFW_FILES.values():
            st = (self.root / rel).stat()
            out[rel] = ((self.root / rel).read_bytes(), st.st_mode, st.st_mtime_ns)
        return out

    def run(self, *args, timeout: float = 30, sh: str = SH) -> subprocess.CompletedProcess:
        return subprocess.run([sh, str(SCRIPT), *map(_arg, args)], env=self.env,
                              capture_output=True, text=True, timeout=timeout)

    def run_locked(self, *args: str, timeout: float = 30) -> subprocess.CompletedProcess:
        """As inside a guarded step: fd 9 open on the host lock, locked."""
        wrapper = 'exec 9>>"$FROXLOR_FLEET_LOCK"; flock 9; exec "$0" "$@"'
        return subprocess.run([SH, "-c", wrapper, SH, str(SCRIPT), *map(_arg, args)], env=self.env,
                              capture_output=True, text=True, timeout=timeout)

    def change_argv(self, scenario: str = "converged-web-ftp") -> list:
        return ["sh", "-c", QuoteString(CHANGE), str(UFW_FIXTURES / scenario)]

    def call_lines(self) -> list[str]:
        return [line for line in self.calls.read_text().splitlines() if not line.startswith("iptables")]

    def timer_pid(self, token: str = TOKEN) -> int:
        for entry in (token, f"{token}.confirming", f"{token}.reverting"):
            path = self.pending / entry / "timer"
            if path.exists():
                return int(path.read_text().split()[0])
        raise AssertionError("no timer recorded")

    def wait_resolved(self, token: str = TOKEN, within: float = 10) -> None:
        ends = time.monotonic() + within
        while any(self.pending.glob(f"{token}*")):
            assert time.monotonic() < ends, f"pending revert {token} not resolved in {within} s"
            time.sleep(0.05)

    def lock_free(self) -> bool:
        return subprocess.run(["flock", "-n", str(self.lock), "true"]).returncode == 0


def _arg(value) -> str:
    """An argv word: QuoteString (for StringCommand) unwrapped."""
    return value.obj if isinstance(value, QuoteString) else str(value)


def proc_start(pid: int) -> str | None:
    """Start time of a live (non-zombie) process, else None."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return None if fields[0] in ("Z", "X", "x") else fields[19]


def comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def group_members(pgid: int) -> list[int]:
    """Live processes of process group ``pgid`` (from /proc)."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[2]) == pgid and fields[0] not in ("Z", "X", "x"):
            members.append(int(entry.name))
    return members


def wait_gone(pgid: int, within: float = 5) -> list[int]:
    ends = time.monotonic() + within
    while group_members(pgid) and time.monotonic() < ends:
        time.sleep(0.05)
    return group_members(pgid)


@pytest.fixture
def tree(tmp_path):
    t = Tree(tmp_path)
    yield t
    # Never leave a timer behind, even when a test failed: kill the groups we started.
    for record in list(t.state_dir.glob("*/*/timer")):
        try:
            pid, start, _ = record.read_text().split()
        except (OSError, ValueError):
            continue
        if proc_start(int(pid)) == start:
            os.killpg(int(pid), signal.SIGKILL)


# --- confirm.sh ------------------------------------------------------------------------


@pytest.mark.skipif(not shutil.which("shellcheck") and not IN_CI, reason="shellcheck not installed")
def test_shellcheck_clean() -> None:
    result = subprocess.run(["shellcheck", "-s", "sh", str(SCRIPT)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_unconfirmed_change_on_an_active_firewall_is_reverted(tree: Tree) -> None:
    tree.load("hand-made-mixed", enabled=True)
    before = tree.files()
    result = tree.run_locked("arm", "1", TOKEN, *tree.change_argv())
    assert result.returncode == 0, result.stdout + result.stderr
    assert "applied" in result.stdout and "armed: unless confirmed by" in result.stdout
    assert tree.files() != before  # the change is in place
    assert not tree.lock_free()  # the timer holds the host lock until it reverts
    pid = tree.timer_pid()
    assert proc_start(pid)

    tree.wait_resolved(within=8)
    assert tree.files() == before  # bytes, mode and mtime: cp -p of the snapshot
    (line,) = tree.revert_log.read_text().splitlines()
    assert tree.call_lines() == ["ufw reload", f"logger -t froxlor-fleet -- {line.split(' ', 1)[1]}"]
    assert f" token={TOKEN} reverted (not confirmed within 1 s)" in line
    assert "files ok" in line and "ENABLED=yes chains-loaded=yes: ufw reload ok: Firewall reloaded" in line
    assert wait_gone(pid) == [] and tree.lock_free()
    assert (tree.root / "chains-loaded").exists()


def test_unconfirmed_first_enable_is_reverted_to_inactive(tree: Tree) -> None:
    before = tree.files()  # pristine capture: ENABLED=no, chains not loaded
    assert tree.run_locked("arm", "1", TOKEN, *tree.change_argv()).returncode == 0
    assert (tree.root / "chains-loaded").exists()
    tree.wait_resolved(within=8)
    assert tree.files() == before
    assert not (tree.root / "chains-loaded").exists()
    assert tree.call_lines()[0] == "ufw --force disable"
    assert "ENABLED=no chains-loaded=no: ufw --force disable ok" in tree.revert_log.read_text()
    assert tree.lock_free()


def test_enabled_but_not_loaded_keeps_its_exact_ufw_conf(tree: Tree) -> None:
    # ENABLED=yes with no chains is "inactive": disable unloads, and ufw.conf gets the
    # snapshot's bytes back although ufw disable rewrote ENABLED.
    tree.load("converged-web-ftp", active=False)
    before = tree.files()
    assert tree.run_locked("arm", "1", TOKEN, *tree.change_argv("hand-made-mixed")).returncode == 0
    tree.wait_resolved(within=8)
    assert tree.files() == before
    assert "ENABLED=yes" in (tree.root / "etc/ufw/ufw.conf").read_text()
    assert tree.call_lines()[0] == "ufw --force disable"


def test_confirm_cancels_the_revert_and_leaves_no_process(tree: Tree) -> None:
    assert tree.run_locked("arm", "30", TOKEN, *tree.change_argv()).returncode == 0
    after = tree.files()
    pid = tree.timer_pid()
    ends = time.monotonic() + 5
    while sorted(comm(p) for p in group_members(pid)) != ["sh", "sleep"]:
        assert time.monotonic() < ends, "the timer did not settle into its sleep"
        time.sleep(0.05)
    assert not tree.lock_free()

    result = tree.run("confirm", TOKEN)  # not under the lock: a new SSH connection
    assert (result.returncode, result.stdout) == (0, "confirmed\n")
    assert group_members(pid) == []  # confirm waited for the timer group to exit
    assert tree.lock_free()
    assert not any(tree.pending.iterdir())
    time.sleep(0.3)
    assert tree.files() == after and tree.call_lines() == []
    assert not tree.revert_log.exists()
    # A second confirm of the same token: it is no longer pending.
    again = tree.run("confirm", TOKEN)
    assert again.returncode == 3 and "no pending revert" in again.stdout


def test_confirm_after_the_revert_says_too_late(tree: Tree) -> None:
    assert tree.run_locked("arm", "1", TOKEN, *tree.change_argv()).returncode == 0
    tree.wait_resolved(within=8)
    result = tree.run("confirm", TOKEN)
    assert result.returncode == confirm.EXIT_TOO_LATE
    assert result.stdout.startswith("froxlor-fleet: too late: ")
    assert f"token={TOKEN} reverted (not confirmed within 1 s)" in result.stdout
    assert result.stdout.count("\n") == 1


def test_confirm_while_the_revert_runs_says_too_late(tree: Tree) -> None:
    (tree.pending / f"{TOKEN}.reverting").mkdir(parents=True)
    result = tree.run("confirm", TOKEN)
    assert result.returncode == 2 and "the revert of" in result.stdout and "has started" in result.stdout


def test_unknown_token(tree: Tree) -> None:
    result = tree.run("confirm", "nosuchtoken1")
    assert result.returncode == 3 and "no pending revert with token nosuchtoken1" in result.stdout


@pytest.mark.parametrize("token", ["short", "a" * 65, "bad_token!", "with space 1", "../../etc/x",
                                   "tok\nen12345", "", "t" * 8 + ";id", "$(reboot)-x"])
def test_bad_tokens_are_rejected(tree: Tree, token: str) -> None:
    marker = tree.base / "ran"
    for args in (("arm", "5", token, "touch", str(marker)), ("confirm", token)):
        result = tree.run(*args)
        assert result.returncode == 64 and "invalid token" in result.stdout
    assert not marker.exists() and not tree.pending.exists()
    with pytest.raises(ValueError):
        confirm.confirm_command(token)
    with pytest.raises(ValueError):
        confirm.arm_argv(5, token)


@pytest.mark.parametrize("timeout", ["-1", "1.5", "010", "86401", "x", ""])
def test_bad_timeouts_are_rejected(tree: Tree, timeout: str) -> None:
    result = tree.run("arm", timeout, TOKEN, "true")
    assert result.returncode == 64 and "invalid timeout" in result.stdout


def test_token_can_not_be_reused(tree: Tree) -> None:
    assert tree.run("arm", "1", TOKEN, "true").returncode == 0
    tree.wait_resolved(within=8)
    result = tree.run("arm", "1", TOKEN, "true")
    assert result.returncode == 64 and "used before" in result.stdout


def test_lock_is_held_until_confirmed(tree: Tree) -> None:
    assert tree.run_locked("arm", "30", TOKEN, "true").returncode == 0
    assert "lock=held" in tree.run("status").stdout
    for _ in range(3):
        assert not tree.lock_free()
        time.sleep(0.2)
    assert tree.run("confirm", TOKEN).returncode == 0
    assert tree.lock_free()


def test_without_the_lock_fd_the_timer_holds_no_lock(tree: Tree) -> None:
    assert tree.run("arm", "30", TOKEN, "true").returncode == 0
    assert "lock=none" in tree.run("status").stdout and tree.lock_free()
    assert tree.run("confirm", TOKEN).returncode == 0


def test_a_failing_change_is_restored_at_once(tree: Tree) -> None:
    tree.load("hand-made-mixed", enabled=True)
    before = tree.files()
    argv = ["sh", "-c", QuoteString(CHANGE + "; echo 'froxlor-fleet: ufw: boom'; exit 5"),
            str(UFW_FIXTURES / "converged-web-ftp")]
    result = tree.run_locked("arm", "30", TOKEN, *argv)
    assert result.returncode == 5
    assert "ufw: boom" in result.stdout
    assert "the change failed; UFW's previous state is restored" in result.stdout
    assert tree.files() == before and not any(tree.pending.iterdir())
    assert "reverted (the change failed with exit status 5)" in tree.revert_log.read_text()
    assert tree.call_lines()[0] == "ufw reload" and tree.lock_free()
    assert tree.run("confirm", TOKEN).returncode == 2


def test_a_change_that_fails_before_changing_anything_reloads_nothing(tree: Tree) -> None:
    result = tree.run_locked("arm", "30", TOKEN, "sh", "-c",
                             "echo 'froxlor-fleet: lockout guard: no'; exit 3")
    assert result.returncode == 3
    assert tree.call_lines() == [f"logger -t froxlor-fleet -- token={TOKEN} not reverted: the change "
                                 "failed with exit status 3 before it changed anything"]
    assert not any(tree.pending.iterdir()) and tree.lock_free()


def test_timeout_zero_only_runs_the_command(tree: Tree) -> None:
    result = tree.run("arm", "0", TOKEN, *tree.change_argv())
    assert result.returncode == 0 and result.stdout == "applied\n"
    assert not any(tree.pending.iterdir()) and tree.call_lines() == []


def test_status_lists_pending_reverts(tree: Tree) -> None:
    assert tree.run("status").stdout == "no pending reverts\n"
    assert tree.run("arm", "30", TOKEN, "true").returncode == 0
    (line,) = tree.run("status").stdout.splitlines()
    assert re.fullmatch(rf"{TOKEN} armed deadline=\d+ \(\d{{4}}-\d\d-\d\d \d\d:\d\d:\d\d UTC\) "
                        r"timer=alive lock=none", line), line
    deadline = int(line.split("deadline=")[1].split()[0])
    assert abs(deadline - (time.time() + 30)) < 5
    assert tree.run("confirm", TOKEN).returncode == 0


def test_a_second_arm_waits_for_a_pending_revert(tree: Tree) -> None:
    # No lock passed (the timer holds none): the next arm still never interleaves.
    assert tree.run("arm", "2", TOKEN, *tree.change_argv()).returncode == 0
    record = tree.base / "second-ran"
    check = f'if ls "{tree.pending}" | grep -q {TOKEN}; then echo early; else echo after; fi > "{record}"'
    result = tree.run("arm", "30", "second-token", "sh", "-c", check)
    assert result.returncode == 0
    assert f"waiting for the pending revert {TOKEN} of another run" in result.stdout
    assert record.read_text() == "after\n"
    assert f"token={TOKEN} reverted" in tree.revert_log.read_text()
    assert tree.run("confirm", "second-token").returncode == 0


def test_a_dead_timer_is_abandoned_by_the_next_arm(tree: Tree) -> None:
    assert tree.run("arm", "30", TOKEN, *tree.change_argv()).returncode == 0
    changed = tree.files()
    pid = tree.timer_pid()
    os.killpg(pid, signal.SIGKILL)  # as a reboot would
    assert wait_gone(pid) == []
    result = tree.run("arm", "30", "next-token", "true")
    assert result.returncode == 0
    assert f"token={TOKEN} abandoned" in tree.revert_log.read_text()
    assert (tree.state_dir / "abandoned" / TOKEN / "files" / "user.rules").exists()
    assert tree.files() == changed and "ufw" not in " ".join(tree.call_lines()[:-1])
    assert tree.run("confirm", "next-token").returncode == 0


def test_boot_reverts_an_expired_change_and_rearms_a_running_one(tree: Tree) -> None:
    before = tree.files()
    assert tree.run("arm", "1", TOKEN, *tree.change_argv()).returncode == 0
    os.killpg(tree.timer_pid(), signal.SIGKILL)
    assert tree.run("arm", "60", "later-token", "true").returncode == 0  # abandons TOKEN
    # Simulate a restart: the second timer dies, its deadline still ahead.
    os.killpg(tree.timer_pid("later-token"), signal.SIGKILL)
    result = tree.run("boot")
    assert result.returncode == 0 and "re-armed the revert later-token" in result.stdout
    assert "timer=alive lock=held" in tree.run("status").stdout
    assert not tree.lock_free()  # the re-armed timer holds the host lock
    assert tree.run("confirm", "later-token").returncode == 0 and tree.lock_free()

    # An unconfirmed change found after its deadline is reverted by the boot hook.
    tree.load("pristine")
    before = tree.files()
    assert tree.run("arm", "1", "boot-token", *tree.change_argv()).returncode == 0
    os.killpg(tree.timer_pid("boot-token"), signal.SIGKILL)
    time.sleep(1.2)
    assert tree.run("boot").returncode == 0
    assert tree.files() == before
    assert ("token=boot-token reverted (not confirmed before the host restarted)"
            in tree.revert_log.read_text())


# --- confirm.py commands through sh -c, as pyinfra sends them -------------------------


def test_commands_run_through_sh_c(tree: Tree) -> None:
    before = tree.files()
    arm = StringCommand(*confirm.arm_argv(30, TOKEN), *tree.change_argv())
    result = subprocess.run(["sh", "-c", arm.get_raw_value()], env=tree.env, capture_output=True,
                            text=True, timeout=30)
    assert result.returncode == 0, result.stdout + result.stderr
    # The timer runs the script text the arm got through "sh -c" (read back from /proc).
    copy = (tree.pending / TOKEN / "confirm.sh").read_text()
    assert copy.rstrip("\n") == SCRIPT.read_text().rstrip("\n")
    assert (tree.state_dir / "confirm.sh").read_text() == copy  # for a boot hook
    assert tree.files() != before
    result = subprocess.run(["sh", "-c", confirm.confirm_command(TOKEN).get_raw_value()],
                            env=tree.env, capture_output=True, text=True, timeout=30)
    assert (result.returncode, result.stdout) == (0, "confirmed\n")
    status = subprocess.run(["sh", "-c", confirm.status_command().get_raw_value()], env=tree.env,
                            capture_output=True, text=True)
    assert status.stdout == "no pending reverts\n"


def _step_script(tree: Tree, keep_lock_fd: bool) -> str:
    from froxlor_fleet.catalog import LOCK_PATH
    from froxlor_fleet.steps import STEP_SCRIPT

    if LOCK_PATH not in STEP_SCRIPT or "/run/froxlor-fleet.XXXXXX" not in STEP_SCRIPT:
        pytest.skip("STEP_SCRIPT changed shape; adapt this test's path substitution")
    script = (STEP_SCRIPT.replace(LOCK_PATH, str(tree.lock))
              .replace("/run/froxlor-fleet.XXXXXX", f"{tree.base}/step.XXXXXX"))
    if keep_lock_fd:
        if ' 7>&- 9>&-;' not in script:
            pytest.skip("STEP_SCRIPT changed shape")
        script = script.replace(' 7>&- 9>&-;', ' 7>&-;')
    return script


@pytest.mark.parametrize("keep_lock_fd", [False, True], ids=["step-closes-fd9", "step-passes-fd9"])
def test_guarded_step_relay_returns_and_the_host_reverts(tree: Tree, keep_lock_fd: bool) -> None:
    """The real STEP_SCRIPT (paths moved to the temp dir) around arm + a change: the relay
    returns at once (the timer does not keep fd 7), the revert fires later, and a
    second run never interleaves with it (held lock, or arm's wait)."""
    tree.load("hand-made-mixed", enabled=True)
    before = tree.files()
    step = StringCommand("sh", "-c", QuoteString(_step_script(tree, keep_lock_fd)), "froxlor-fleet",
                         *confirm.arm_argv(5, TOKEN), *tree.change_argv())  # the shortest allowed
    started = time.monotonic()
    result = subprocess.run(["sh", "-c", step.get_raw_value()], env=tree.env, capture_output=True,
                            text=True, timeout=30)
    took = time.monotonic() - started
    assert result.returncode == 0, result.stdout + result.stderr
    assert "applied" in result.stdout and "armed:" in result.stdout
    # Had the relay waited for the timer (fd 7 kept), the revert would be over by now.
    assert (tree.pending / TOKEN).is_dir() and proc_start(tree.timer_pid()), f"took {took:.1f} s"
    mode = (tree.pending / TOKEN / "lock").read_text().strip()
    assert mode == ("held" if keep_lock_fd else "none")
    assert tree.lock_free() is (not keep_lock_fd)

    record = tree.base / "second-ran"
    second = StringCommand("sh", "-c", QuoteString(_step_script(tree, keep_lock_fd)), "froxlor-fleet",
                           *confirm.arm_argv(30, "second-token"), "sh", "-c",
                           QuoteString(f'ls "{tree.pending}" > "{record}"; '
                                       f'cat "$FROXLOR_FLEET_ROOT/etc/ufw/user.rules" >> "{record}"'))
    result = subprocess.run(["sh", "-c", second.get_raw_value()], env=tree.env, capture_output=True,
                            text=True, timeout=30)
    assert result.returncode == 0, result.stdout + result.stderr
    seen = record.read_text()
    assert TOKEN not in seen  # the first revert was over before the second change ran
    assert seen.endswith(before["etc/ufw/user.rules"][0].decode())
    if keep_lock_fd:
        assert "another run holds the lock on this host, waiting" in result.stdout
    else:
        assert f"waiting for the pending revert {TOKEN}" in result.stdout
    assert f"token={TOKEN} reverted" in tree.revert_log.read_text()
    assert tree.run("confirm", "second-token").returncode == 0
    assert tree.lock_free()


# --- confirm.py -------------------------------------------------------------------------


def test_tokens() -> None:
    tokens = {confirm.new_token() for _ in range(200)}
    assert len(tokens) == 200
    assert all(confirm.TOKEN_RE.fullmatch(t) for t in tokens)
    with pytest.raises(ValueError):
        confirm.arm_argv(-1, TOKEN)
    with pytest.raises(ValueError):
        confirm.arm_argv(True, TOKEN)  # type: ignore[arg-type]
    argv = confirm.arm_argv(60, TOKEN)
    assert argv[:2] == ["sh", "-c"] and isinstance(argv[2], QuoteString)
    assert argv[3:] == ["froxlor-fleet", "arm", "60", TOKEN]
    raw = confirm.confirm_command(TOKEN).get_raw_value()
    assert raw.startswith("sh -c '") and raw.endswith(f"' froxlor-fleet confirm {TOKEN}")


def test_run_arguments_come_from_the_executing_operation() -> None:
    class OpData:
        global_arguments: ClassVar[dict[str, object]] = {
            "_sudo": True, "_sudo_user": "admin", "_timeout": 5, "_env": {"A": "1"},
            "_ignore_errors": False}

    class FakeState:
        def get_op_data_for_host(self, host, op_hash):
            assert op_hash == "op1"
            return OpData()

    class FakeHost:
        nested_executing_op_hash = None
        executing_op_hash = "op1"

    assert confirm.run_arguments(FakeState(), FakeHost()) == {  # type: ignore[arg-type]
        "_sudo": True, "_sudo_user": "admin", "_env": {"A": "1"}}

    # Outside an operation: host data, then config.
    inventory = Inventory(([("h", {"_sudo": True, "_sudo_user": "ops"})], {}))
    state = State(inventory, Config())
    arguments = confirm.run_arguments(state, inventory.get_host("h"))
    assert arguments["_sudo"] is True and arguments["_sudo_user"] == "ops"
    assert set(arguments) <= set(confirm.RUN_AS_KEYS)


class _LogHost:
    def __init__(self):
        self.lines: list[tuple[str, dict]] = []

    def log_styled(self, message, **kwargs):
        self.lines.append((message, kwargs))


def test_confirm_step_messages(monkeypatch) -> None:
    deadline = time.time() + 60
    at = time.strftime("%H:%M:%S", time.localtime(deadline))
    step = confirm.confirm_step(TOKEN, deadline)
    cases = [
        (confirm.FreshResult(True, 0, "confirmed\n"), True, None),
        (confirm.FreshResult(False, None, "Could not connect (timed out)"), False,
         "could not open a new SSH connection after the change; the host restores its previous "
         f"firewall at {at} (Could not connect (timed out))"),
        (confirm.FreshResult(True, 2, "froxlor-fleet: too late: x reverted\n"), False,
         "a new SSH connection worked but the confirmation came too late; the host restored its "
         "previous firewall (exit status 2: froxlor-fleet: too late: x reverted)"),
        (confirm.FreshResult(True, 1, "sudo: a password is required\n"), False,
         "could not confirm the change over a new SSH connection; the host restores its previous "
         f"firewall at {at} (exit status 1: sudo: a password is required)"),
    ]
    for result, ok, message in cases:
        seen = []
        host = _LogHost()
        def fake_run(state, host_, command, timeout, result=result, seen=seen, host=host):
            seen.append((command, timeout, list(host.lines)))
            return result
        monkeypatch.setattr(confirm, "fresh_run", fake_run)
        assert step.function(None, host, *step.args) is ok
        said = [m for m, _ in host.lines]
        # live: the operator sees the confirmation start before it runs (up to 60 s)
        assert said[0] == ("commit-confirm: confirming the UFW change over a new SSH "
                           f"connection; unconfirmed, the host restores its previous one at {at}")
        if ok:
            assert len(said) == 2 and re.fullmatch(
                r"commit-confirm: confirmed over a new SSH connection in \d+\.\d s", said[1])
        else:
            assert said[1:] == [message]
        (command, timeout, before), = seen
        assert [m for m, _ in before] == said[:1]
        assert command.get_raw_value() == confirm.confirm_command(TOKEN).get_raw_value()
        assert 55 < timeout < 60


# --- a real loopback sshd ---------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def sshd(tmp_path_factory):
    binary = shutil.which("sshd") or next(
        (p for p in ("/usr/sbin/sshd", "/sbin/sshd") if os.path.exists(p)), None)
    if not binary or not shutil.which("ssh-keygen"):
        if IN_CI:
            pytest.fail("sshd/ssh-keygen missing in CI")
        pytest.skip("sshd not installed")
    d = tmp_path_factory.mktemp("sshd")
    for name in ("host_key", "client_key"):  # generated now, never committed
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(d / name)], check=True)
    (d / "authorized_keys").write_text((d / "client_key.pub").read_text())
    (d / "ssh_config").write_text("")  # no ~/.ssh/config influence
    port = _free_port()
    root = os.geteuid() == 0
    (d / "sshd_config").write_text(f"""
Port {port}
ListenAddress 127.0.0.1
HostKey {d}/host_key
AuthorizedKeysFile {d}/authorized_keys
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin {"prohibit-password" if root else "no"}
UsePAM no
StrictModes no
PidFile none
LogLevel ERROR
""")
    argv = [binary, "-D", "-e", "-f", str(d / "sshd_config")]
    if root:
        # A private mount namespace: sshd as root wants /run/sshd (a private /run instead
        # of touching ours), and root logs in with /bin/sh there, because bash reads this
        # machine's root ~/.bashrc for sshd commands (it may run e.g. `pyenv rehash`, whose
        # lock a killed session leaves behind, stalling every later login).
        (d / "passwd").write_text("".join(
            (":".join(line.split(":")[:6] + ["/bin/sh"]) if line.startswith("root:") else line)
            + "\n" for line in Path("/etc/passwd").read_text().splitlines()))
        setup = f'mount --bind {d}/passwd /etc/passwd && '
        if not os.path.isdir("/run/sshd"):
            setup += 'mount -t tmpfs -o mode=0755 froxlor-fleet-test /run && mkdir /run/sshd && '
        argv = ["unshare", "-m", "--propagation", "private", "sh", "-c",
                setup + 'exec "$@"', "sh", *argv]
    with open(d / "sshd.log", "w") as log:
        proc = subprocess.Popen(argv, stdout=log, stderr=log, stdin=subprocess.DEVNULL)
        try:
            ends = time.monotonic() + 10
            while True:
                if proc.poll() is not None:
                    pytest.fail(f"sshd exited: {(d / 'sshd.log').read_text()}")
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                    break
                except OSError:
                    if time.monotonic() > ends:
                        pytest.fail(f"sshd did not listen: {(d / 'sshd.log').read_text()}")
                    time.sleep(0.1)
            host_key = (d / "host_key.pub").read_text().split()
            (d / "known_hosts").write_text(f"[127.0.0.1]:{port} {host_key[0]} {host_key[1]}\n")
            yield {"port": port, "dir": d, "user": "root" if root else os.environ.get("USER") or
                   __import__("getpass").getuser()}
        finally:
            proc.terminate()  # by its PID
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)


def _ssh_host(sshd, **data):
    d = sshd["dir"]
    host_data = {
        "ssh_hostname": "127.0.0.1", "ssh_port": sshd["port"], "ssh_user": sshd["user"],
        "ssh_key": str(d / "client_key"), "ssh_known_hosts_file": str(d / "known_hosts"),
        "ssh_strict_host_key_checking": "yes", "ssh_config_file": str(d / "ssh_config"),
        **data,
    }
    inventory = Inventory(([("loopback", host_data)], {}))
    state = State(inventory, Config(CONNECT_TIMEOUT=5))
    return state, inventory.get_host("loopback")


def test_fresh_connection_check_opens_a_new_connection(sshd) -> None:
    state, host = _ssh_host(sshd)
    host.connect(raise_exceptions=True)
    try:
        client = host.connector.client
        ok, output = host.run_shell_command(StringCommand("echo", "$SSH_CONNECTION"))
        assert ok
        own = output.stdout.split()

        ok, text = confirm.fresh_connection_check(state, host, 'echo "$SSH_CONNECTION"; id -u', 10)
        assert ok, text
        fresh, uid = text.splitlines()
        fresh = fresh.split()
        assert fresh[0] == own[0] == "127.0.0.1" and fresh[3] == own[3] == str(sshd["port"])
        assert fresh[1] != own[1]  # another client port: a new TCP connection
        assert uid == str(os.geteuid())

        # The host's own connection is untouched and still works.
        assert host.connector.client is client and client.get_transport().is_active()
        ok, output = host.run_shell_command(StringCommand("echo", "$SSH_CONNECTION"))
        assert ok and output.stdout.split() == own
    finally:
        host.disconnect()


def test_fresh_connection_check_reports_failures_in_one_line(sshd) -> None:
    state, host = _ssh_host(sshd)
    ok, reason = confirm.fresh_connection_check(state, host, "echo out; echo last >&2; exit 4", 10)
    assert (ok, reason) == (False, "exit status 4: last")

    state, host = _ssh_host(sshd, ssh_port=_free_port())  # nothing listens there
    started = time.monotonic()
    ok, reason = confirm.fresh_connection_check(state, host, "true", 10)
    assert not ok and "\n" not in reason and "Connection refused" in reason, reason
    assert time.monotonic() - started < 5

    state, host = _ssh_host(sshd, ssh_key=str(sshd["dir"] / "host_key"))  # not authorized
    ok, reason = confirm.fresh_connection_check(state, host, "true", 10)
    assert not ok and "\n" not in reason and "Authentication" in reason, reason


@pytest.mark.skipif(not shutil.which("sudo"), reason="sudo not installed")
def test_fresh_connection_runs_with_the_hosts_sudo(sshd) -> None:
    if sshd["user"] != "root":
        pytest.skip("sudo without a password needs root here")
    state, host = _ssh_host(sshd, _sudo=True)
    ok, text = confirm.fresh_connection_check(state, host, 'echo "${SUDO_COMMAND:-no sudo}"', 10)
    assert ok, text
    assert text.startswith("/") and "sh -c" in text  # sudo ran it


def test_confirm_step_over_ssh(sshd, tree: Tree) -> None:
    assert tree.run("arm", "30", TOKEN, *tree.change_argv()).returncode == 0
    pid = tree.timer_pid()
    env = {k: v for k, v in tree.env.items() if k != "TZ"}
    state, host = _ssh_host(sshd, _env=env)
    step = confirm.confirm_step(TOKEN, time.time() + 30)
    logged = []
    host.log_styled = lambda message, **kw: logged.append(message)  # type: ignore[method-assign]
    assert step.execute(state, host, {}) is True, logged
    assert [line.split(";")[0].split(" in ")[0] for line in logged] == [
        "commit-confirm: confirming the UFW change over a new SSH connection",
        "commit-confirm: confirmed over a new SSH connection"]
    assert group_members(pid) == [] and not any(tree.pending.iterdir())
    logged.clear()

    # Unreachable (nothing listens): one line with the local time of the deadline.
    assert tree.run("arm", "30", "other-token", "true").returncode == 0
    deadline = time.time() + 30
    state, host = _ssh_host(sshd, _env=env, ssh_port=_free_port())
    host.log_styled = lambda message, **kw: logged.append(message)  # type: ignore[method-assign]
    assert confirm.confirm_step("other-token", deadline).execute(state, host, {}) is False
    (_, line) = logged
    at = time.strftime("%H:%M:%S", time.localtime(deadline))
    assert line.startswith("could not open a new SSH connection after the change; the host "
                           f"restores its previous firewall at {at} (")
    assert tree.run("confirm", "other-token").returncode == 0


@pytest.mark.parametrize("timeout,ok", [(0, True), (5, True), (240, True), (4, False),
                                        (241, False), (86400, False), (True, False)])
def test_the_control_side_arms_only_what_the_data_allows(timeout, ok) -> None:
    """One limit for the confirm timeout (catalog.CONFIRM_TIMEOUT_RANGE), used by the
    data check and by the command that arms the host (was 5-240 and 0-86400)."""
    from froxlor_fleet.catalog import CONFIRM_TIMEOUT_RANGE

    assert CONFIRM_TIMEOUT_RANGE == (5, 240)
    if ok:
        assert str(timeout) in confirm.arm_argv(timeout, TOKEN)
    else:
        with pytest.raises(ValueError):
            confirm.arm_argv(timeout, TOKEN)
