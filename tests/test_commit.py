"""The commit-confirm protocol of the host program (remote/commit.py), driven for real:
a small driver program (written to the temp dir) arms, confirms, reports status and
runs the boot hook in separate processes; its timers are forks of the arming (or boot)
driver, as they are of the host program's transaction. Before it arms it settles other
runs' pending reverts, as the transaction does. Its revert callback records the undo
record it got (and its pid) in a file; nothing else is reverted.

Never touches this machine's /var/lib/froxlor-fleet or /run: FROXLOR_FLEET_ROOT points
below a temp dir, the host lock is a temp file, and every timer left by a failing test
is killed by its process group.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from froxlor_fleet.remote import commit

REMOTE = Path(commit.__file__).parent
TOKEN = "t0k3n-abcdef12"

DRIVER = """\
import fcntl, json, os, subprocess, sys
sys.path.insert(0, {remote!r})
import commit

PATHS = commit.Paths.from_env()
BASE = os.environ["DRIVER_BASE"]
LOCK = os.path.join(BASE, "froxlor-fleet.lock")
ME = [sys.executable, os.path.abspath(__file__)]


def revert(undo):
    with open(os.path.join(BASE, "reverts"), "a") as f:
        f.write(json.dumps({{"pid": os.getpid(), "undo": undo}}) + "\\n")
    if "raise" in undo:
        raise RuntimeError(undo["raise"])
    if "sleep" in undo:  # a slow revert (ufw takes its time)
        import time
        time.sleep(undo["sleep"])
    return True, "undid " + str(undo.get("what"))


def say(line):
    print("froxlor-fleet: " + line, flush=True)


def confirm_now(token):
    # Another process, as the control side's new SSH connection would be.
    out = subprocess.run(ME + ["confirm", token], stdout=subprocess.PIPE, universal_newlines=True)
    print("confirm-said " + out.stdout.strip(), flush=True)


def change(armed, how):
    if how == "ok":
        open(os.path.join(BASE, "changed"), "w").close()
    elif how == "fail":
        armed.failed("the change failed with exit status 5")
        return 5
    elif how == "fail-nothing":
        armed.failed("the change failed with exit status 3", changed=False)
        return 3
    elif how.startswith("update:"):
        commit.update_undo(armed, json.loads(how[len("update:"):]))
    elif how == "confirm-then-ok":
        confirm_now(armed.token)
    elif how == "confirm-then-fail":
        confirm_now(armed.token)
        armed.failed("the change failed with exit status 5")
        return 5
    elif how == "die":
        os._exit(0)  # neither started() nor failed(): the caller died mid-change
    elif how == "slow":  # longer than the timeout: the countdown must start at its end
        import time
        time.sleep(1.5)
    elif how == "record-pending":
        with open(os.path.join(BASE, "seen"), "w") as f:
            f.write(" ".join(sorted(os.listdir(PATHS.pending))))
    print("deadline " + str(armed.started()), flush=True)
    return 0


def main(argv):
    if argv[0] == "arm":
        lock_fd = None
        if "--lock" in argv:  # as inside a guarded step: the host lock held
            lock_fd = os.open(LOCK, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
            fcntl.flock(lock_fd, fcntl.LOCK_EX)
        commit.settle_pending(PATHS, say, revert)  # as the transaction does, first
        armed = commit.arm(PATHS, int(argv[1]), argv[2], json.loads(argv[3]), lock_fd, say, revert)
        with open(os.path.join(armed.dir, "timer")) as f:
            print("timer-pid " + f.read().split()[0], flush=True)
        return change(armed, argv[4])
    if argv[0] == "confirm":
        code, text = commit.confirm(PATHS, argv[1])
        print(text if code == 0 else "froxlor-fleet: " + text)
        return code
    if argv[0] == "status":
        print("\\n".join(commit.status(PATHS)))
        return 0
    if argv[0] == "boot":
        return commit.boot(PATHS, LOCK, revert, say, 300.0)
    return 64


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except commit.CommitError as exc:
        say(str(exc))
        sys.exit(exc.status)
"""


# --- helpers -------------------------------------------------------------------------


class Host:
    """A host's state below a temp dir and the driver to run the protocol there."""

    def __init__(self, base: Path):
        self.base = base
        self.root = base / "root"
        self.root.mkdir()
        self.driver = base / "driver.py"
        self.driver.write_text(DRIVER.format(remote=str(REMOTE)))
        self.lock = base / "froxlor-fleet.lock"
        self.paths = commit.Paths(str(self.root))
        self.state_dir = Path(self.paths.state_dir)
        self.pending = Path(self.paths.pending)
        self.revert_log = Path(self.paths.revert_log)
        self.env = dict(os.environ, FROXLOR_FLEET_ROOT=str(self.root), DRIVER_BASE=str(base), TZ="UTC")

    def run(self, *args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, str(self.driver), *args], env=self.env,
                              capture_output=True, text=True, timeout=timeout)

    def arm(self, timeout: int, token: str = TOKEN, undo: dict[str, Any] | None = None,
            how: str = "ok", lock: bool = False) -> subprocess.CompletedProcess[str]:
        undo = {"what": token} if undo is None else undo
        args = ["arm", str(timeout), token, json.dumps(undo), how] + (["--lock"] if lock else [])
        return self.run(*args)

    def reverts(self) -> list[dict[str, Any]]:
        path = self.base / "reverts"
        return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []

    def log(self) -> list[str]:
        return self.revert_log.read_text().splitlines() if self.revert_log.exists() else []

    def timer_pid(self, token: str = TOKEN) -> int:
        for entry in (token, f"{token}.confirming", f"{token}.reverting"):
            path = self.pending / entry / "timer"
            if path.exists():
                return int(path.read_text().split()[0])
        raise AssertionError("no timer recorded")

    def wait_resolved(self, token: str = TOKEN, within: float = 8) -> None:
        ends = time.monotonic() + within
        while any(self.pending.glob(f"{token}*")):
            assert time.monotonic() < ends, f"pending revert {token} not resolved in {within} s"
            time.sleep(0.05)

    def lock_free(self) -> bool:
        fd = os.open(self.lock, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except OSError:
            return False
        finally:
            os.close(fd)


def said(result: subprocess.CompletedProcess[str], prefix: str) -> int:
    """The number after PREFIX in the driver's output ("timer-pid 123")."""
    match = re.search(rf"^{prefix} (\d+)$", result.stdout, re.M)
    assert match, result.stdout + result.stderr
    return int(match.group(1))


def proc_start(pid: int) -> str | None:
    """Start time of a live (non-zombie) process, else None."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return None if fields[0] in ("Z", "X", "x") else fields[19]


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


def ok(result: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    return result


@pytest.fixture
def host(tmp_path: Path):
    h = Host(tmp_path)
    yield h
    # Never leave a timer behind, even when a test failed: kill the groups we started.
    for record in list(h.state_dir.glob("*/*/timer")):
        try:
            pid, start, _ = record.read_text().split()
        except (OSError, ValueError):
            continue
        if proc_start(int(pid)) == start:
            os.killpg(int(pid), signal.SIGKILL)


def _nothing_said(line: str) -> None:
    raise AssertionError(f"unexpected progress line: {line}")


def _no_revert(undo: dict[str, Any]) -> tuple[bool, str]:
    raise AssertionError(f"unexpected revert of {undo}")


# --- the timer reverts, confirm cancels ----------------------------------------------


def test_an_unconfirmed_change_is_reverted_with_its_own_undo_record(host: Host) -> None:
    undo = {"what": "ufw", "delete": [["allow", "22/tcp"]], "nested": {"n": 1}}
    result = ok(host.arm(1, undo=undo, lock=True))
    assert "armed: unless confirmed by" in result.stdout and (host.base / "changed").exists()
    pid = said(result, "timer-pid")
    assert proc_start(pid) and host.reverts() == []
    assert not host.lock_free()  # the timer holds the host lock until it reverts

    host.wait_resolved()
    # The revert ran once, in the timer, with exactly the record given at arm time.
    assert host.reverts() == [{"pid": pid, "undo": undo}]
    (line,) = host.log()
    assert f" token={TOKEN} reverted (not confirmed within 1 s): undid ufw" in line
    assert re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d{4} token=", line)
    assert wait_gone(pid) == [] and host.lock_free()


def test_confirm_cancels_the_revert_and_leaves_no_process(host: Host) -> None:
    pid = said(ok(host.arm(30, lock=True)), "timer-pid")
    assert (host.pending / TOKEN / "deadline").exists() and proc_start(pid)
    assert not host.lock_free()

    started = time.monotonic()
    result = host.run("confirm", TOKEN)  # not under the lock: a new SSH connection
    assert (result.returncode, result.stdout) == (0, "confirmed\n")
    assert time.monotonic() - started < 3  # TERM stopped it (KILL is the 5 s fallback)
    assert group_members(pid) == []  # confirm waited for the timer group to exit
    assert host.lock_free()
    assert not any(host.pending.iterdir())
    assert host.reverts() == [] and host.log() == []
    # A second confirm of the same token: it is no longer pending.
    again = host.run("confirm", TOKEN)
    assert again.returncode == 3 and "no pending revert" in again.stdout


def test_a_confirmed_change_is_not_reverted_after_its_deadline(host: Host) -> None:
    deadline = said(ok(host.arm(1)), "deadline")
    assert host.run("confirm", TOKEN).returncode == 0
    time.sleep(max(0.0, deadline + 0.3 - time.time()))  # past the deadline the timer had
    assert host.reverts() == [] and host.log() == [] and not any(host.pending.iterdir())


def test_confirm_after_the_revert_says_too_late(host: Host) -> None:
    ok(host.arm(1))
    host.wait_resolved()
    result = host.run("confirm", TOKEN)
    assert result.returncode == commit.TOO_LATE == 2
    assert result.stdout.startswith("froxlor-fleet: too late: ")
    assert f"token={TOKEN} reverted (not confirmed within 1 s)" in result.stdout
    assert result.stdout.count("\n") == 1


def test_confirm_while_the_revert_runs_says_too_late(host: Host) -> None:
    (host.pending / f"{TOKEN}.reverting").mkdir(parents=True)
    code, text = commit.confirm(host.paths, TOKEN)
    assert code == 2 and "the revert of" in text and "has started" in text
    assert (host.pending / f"{TOKEN}.reverting").is_dir()  # confirm does not touch a claimed revert


def test_a_confirm_cut_short_is_finished(host: Host) -> None:
    (host.pending / f"{TOKEN}.confirming").mkdir(parents=True)
    assert commit.confirm(host.paths, TOKEN) == (0, "confirmed")
    assert not any(host.pending.iterdir())


def test_unknown_token(host: Host) -> None:
    result = host.run("confirm", "nosuchtoken1")
    assert result.returncode == 3 and "no pending revert with token nosuchtoken1" in result.stdout


@pytest.mark.parametrize("token", ["short", "a" * 65, "bad_token!", "with space 1", "../../etc/x",
                                   "tok\nen12345", "t0k3n-abcdef12\n", "", "t" * 8 + ";id"])
def test_bad_tokens_are_rejected(host: Host, token: str) -> None:
    with pytest.raises(commit.CommitError, match="invalid token") as exc:
        commit.arm(host.paths, 5, token, {}, None, _nothing_said, _no_revert)
    assert exc.value.status == 64
    with pytest.raises(commit.CommitError, match="invalid token"):
        commit.confirm(host.paths, token)
    assert commit.run_timer(host.paths, token, _no_revert) == 64
    assert not host.state_dir.exists()


@pytest.mark.parametrize("token", ["t0k3n-ab", "-" * 8, "Z" * 64, TOKEN, "a" * 7, "a" * 65,
                                   "t\u00f6kenabc", "\u0661\u0662\u0663\u0664\u0665\u0666\u0667\u0668",
                                   "abcdefgh\n", "abcdefgh\x00", "abc\u200bdefgh", "ABCDEFG\uff21"])
def test_a_token_is_what_the_control_side_makes(token: str) -> None:
    """check_token (no regex on the host: importing re costs confirm) accepts exactly
    what the control side's pattern does: 8-64 ASCII letters, digits and "-"."""
    valid = re.fullmatch(r"[A-Za-z0-9-]{8,64}", token) is not None
    try:
        commit.check_token(token)
        accepted = True
    except commit.CommitError:
        accepted = False
    assert accepted == valid


def test_removing_an_entry_follows_no_link(tmp_path: Path) -> None:
    """An entry (files, the FTP backup folder in it) goes whole; a link in it goes, what
    it points to stays (commit removes its folders with os.walk, not shutil)."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep").write_text("x")
    entry = tmp_path / "pending" / TOKEN
    (entry / "ftp-backup" / "deeper").mkdir(parents=True)
    for name in ("undo.json", "timer", "ftp-backup/proftpd-fragment", "ftp-backup/deeper/f"):
        (entry / name).write_text("x")
    (entry / "link-to-folder").symlink_to(outside)
    (entry / "ftp-backup" / "link-to-file").symlink_to(outside / "keep")
    commit._rmtree(str(entry))
    assert not entry.exists() and (outside / "keep").read_text() == "x"
    single = tmp_path / "a-file"
    single.write_text("x")
    commit._rmtree(str(single))
    assert not single.exists()
    commit._rmtree(str(tmp_path / "gone"))  # nothing there: no error
    link = tmp_path / "link"
    link.symlink_to(outside)
    commit._rmtree(str(link))
    assert not link.is_symlink() and (outside / "keep").exists()


@pytest.mark.parametrize("timeout", [0, -1, True, 1.5, "5", None])
def test_bad_timeouts_are_rejected(host: Host, timeout: Any) -> None:
    with pytest.raises(commit.CommitError, match="invalid timeout") as exc:
        commit.arm(host.paths, timeout, TOKEN, {}, None, _nothing_said, _no_revert)
    assert exc.value.status == 64 and not host.state_dir.exists()


def test_an_undo_record_that_is_not_json_is_rejected_before_anything(host: Host) -> None:
    with pytest.raises(commit.CommitError, match="not JSON"):
        commit.arm(host.paths, 5, TOKEN, {"x": object()}, None, _nothing_said, _no_revert)
    assert not host.state_dir.exists()


def test_token_can_not_be_reused(host: Host) -> None:
    assert host.arm(30, how="fail").returncode == 5  # reverted at once, logged
    result = host.arm(30)
    assert result.returncode == 64 and "used before" in result.stdout
    assert not (host.base / "changed").exists()


# --- the host lock ---------------------------------------------------------------------


def test_lock_is_held_until_confirmed(host: Host) -> None:
    ok(host.arm(30, lock=True))
    assert "lock=held" in host.run("status").stdout
    for _ in range(3):
        assert not host.lock_free()
        time.sleep(0.2)
    assert host.run("confirm", TOKEN).returncode == 0
    assert host.lock_free()


def test_without_the_lock_fd_the_timer_holds_no_lock(host: Host) -> None:
    ok(host.arm(30))
    assert "lock=none" in host.run("status").stdout and host.lock_free()
    assert host.run("confirm", TOKEN).returncode == 0


# --- a failing change, the arming process dying ----------------------------------------


def test_a_failing_change_is_reverted_at_once(host: Host) -> None:
    undo = {"what": "rules", "delete": ["x"]}
    result = host.arm(30, undo=undo, how="fail", lock=True)
    assert result.returncode == 5, result.stdout + result.stderr
    pid = said(result, "timer-pid")
    assert "the change failed with exit status 5; it was undone" in result.stdout
    (record,) = host.reverts()
    assert record["undo"] == undo and record["pid"] != pid  # by the arming process, not the timer
    assert wait_gone(pid) == [] and not any(host.pending.iterdir())
    assert f"token={TOKEN} reverted (the change failed with exit status 5): undid rules" in host.log()[0]
    assert host.lock_free()
    assert host.run("confirm", TOKEN).returncode == 2


def test_a_change_that_fails_before_changing_anything_reverts_nothing(host: Host) -> None:
    result = host.arm(30, how="fail-nothing", lock=True)
    assert result.returncode == 3
    assert host.reverts() == []
    (line,) = host.log()
    assert line.endswith(f" token={TOKEN} not reverted: the change failed with exit status 3 "
                         "before it changed anything")
    assert wait_gone(said(result, "timer-pid")) == []
    assert not any(host.pending.iterdir()) and host.lock_free()


def test_a_failing_revert_is_one_line_without_a_traceback(host: Host) -> None:
    result = host.arm(30, undo={"what": "x", "raise": "boom"}, how="fail")
    assert result.returncode == 5 and "Traceback" not in result.stdout + result.stderr
    assert f"undoing it failed too: see {host.revert_log}" in result.stdout
    (line,) = host.log()
    assert ("reverted (the change failed with exit status 5): FAILED: the revert raised RuntimeError: boom"
            in line)
    assert not any(host.pending.iterdir())


def test_the_revert_gets_the_record_of_update_undo(host: Host) -> None:
    updated = {"what": "updated", "delete": [["allow", "80/tcp"]]}
    result = ok(host.arm(1, undo={"what": "first"}, how="update:" + json.dumps(updated)))
    assert json.loads((host.pending / TOKEN / "undo.json").read_text()) == updated
    host.wait_resolved()
    assert host.reverts() == [{"pid": said(result, "timer-pid"), "undo": updated}]
    assert "reverted (not confirmed within 1 s): undid updated" in host.log()[0]


def test_confirm_while_the_change_runs_wins(host: Host) -> None:
    result = ok(host.arm(1, how="confirm-then-ok"))
    assert "confirm-said confirmed" in result.stdout
    assert "the change is done and token t0k3n-abcdef12 is already confirmed" in result.stdout
    assert said(result, "deadline") == 0
    # The timer was stopped while it waited for the change to end: nothing can revert.
    assert group_members(said(result, "timer-pid")) == []
    assert host.reverts() == [] and host.log() == [] and not any(host.pending.iterdir())


def test_a_failing_change_confirmed_meanwhile_is_not_reverted(host: Host) -> None:
    result = host.arm(1, how="confirm-then-fail")
    assert result.returncode == 5
    assert "confirmed meanwhile; not undoing it" in result.stdout
    assert group_members(said(result, "timer-pid")) == []  # confirm stopped it: nothing can revert
    assert host.reverts() == [] and host.log() == [] and not any(host.pending.iterdir())


def test_an_arm_that_dies_mid_change_is_reverted_from_its_end(host: Host) -> None:
    result = ok(host.arm(1, how="die", lock=True))
    pid = said(result, "timer-pid")
    assert "armed:" not in result.stdout  # started() never ran
    host.wait_resolved()
    assert host.reverts() == [{"pid": pid, "undo": {"what": TOKEN}}]
    assert "reverted (not confirmed within 1 s)" in host.log()[0]
    assert wait_gone(pid) == [] and host.lock_free()


def test_the_countdown_starts_when_the_change_is_done(host: Host) -> None:
    started = time.time()
    result = ok(host.arm(1, how="slow"))
    ended = time.time()
    assert ended - started >= 1.5 and host.reverts() == []  # not during the change
    assert said(result, "deadline") >= int(ended)
    host.wait_resolved()
    assert host.reverts() == [{"pid": said(result, "timer-pid"), "undo": {"what": TOKEN}}]
    assert time.time() >= ended + 0.5


def _no_fork() -> int:
    raise OSError(11, "Resource temporarily unavailable")


@pytest.mark.parametrize("broken", ["no-fork", "exits-at-once"])
def test_a_timer_that_does_not_start_leaves_nothing(host: Host, broken: str,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    if broken == "no-fork":  # the process limit reached
        monkeypatch.setattr(commit.os, "fork", _no_fork)
    else:  # the fork ends before it records itself
        monkeypatch.setattr(commit, "run_timer", lambda *args: 0)
    started = time.monotonic()
    with pytest.raises(commit.CommitError, match=r"revert timer.*; nothing was changed$"):
        commit.arm(host.paths, 5, TOKEN, {}, None, _nothing_said, _no_revert)
    assert time.monotonic() - started < 3  # not the whole 5 s start wait
    assert list(host.pending.iterdir()) == [] and host.log() == []


# --- status, other runs' entries ------------------------------------------------------


def test_status_lists_pending_reverts(host: Host) -> None:
    assert host.run("status").stdout == "no pending reverts\n"
    ok(host.arm(30))
    (line,) = host.run("status").stdout.splitlines()
    assert re.fullmatch(rf"{TOKEN} armed deadline=\d+ \(\d{{4}}-\d\d-\d\d \d\d:\d\d:\d\d UTC\) "
                        r"timer=alive lock=none", line), line
    deadline = int(line.split("deadline=")[1].split()[0])
    assert abs(deadline - (time.time() + 30)) < 5
    assert host.run("confirm", TOKEN).returncode == 0
    (host.pending / "other-token1.reverting").mkdir()
    assert commit.status(host.paths) == ["other-token1 reverting deadline=- (change still running) "
                                         "timer=gone lock=none"]


def test_state_is_root_only(host: Host) -> None:
    old = os.umask(0o022)  # the usual one (the driver inherits it): commit.py must not rely on it
    try:
        assert host.arm(30, how="fail").returncode == 5
        ok(host.arm(30, token="second-token"))
    finally:
        os.umask(old)
    for path in (host.state_dir, host.pending, host.pending / "second-token"):
        assert stat.S_IMODE(path.stat().st_mode) == 0o700, path
    for name in ("undo.json", "timeout", "created", "lock", "applying", "timer", "deadline"):
        assert stat.S_IMODE((host.pending / "second-token" / name).stat().st_mode) == 0o600, name
    assert stat.S_IMODE(host.revert_log.stat().st_mode) == 0o600
    assert host.run("confirm", "second-token").returncode == 0


def test_a_second_arm_waits_for_a_pending_revert(host: Host) -> None:
    # No lock passed (the timer holds none): the next arm still never interleaves, not
    # even with the revert itself (the entry it waited for becomes TOKEN.reverting).
    undo = {"what": TOKEN, "sleep": 0.8}
    ok(host.arm(1, undo=undo))
    result = ok(host.arm(30, token="second-token", how="record-pending"))
    assert result.stdout.count(f"waiting for the pending revert {TOKEN} of another run") == 1
    assert (host.base / "seen").read_text() == "second-token"  # the first revert was over
    assert f"token={TOKEN} reverted" in host.log()[0]
    assert [r["undo"] for r in host.reverts()] == [undo]
    assert host.run("confirm", "second-token").returncode == 0


def test_a_dead_timer_is_abandoned_by_the_next_arm(host: Host) -> None:
    pid = said(ok(host.arm(30)), "timer-pid")
    os.killpg(pid, signal.SIGKILL)  # as a reboot would
    assert wait_gone(pid) == []
    ok(host.arm(30, token="next-token"))
    (line,) = host.log()
    assert f" token={TOKEN} abandoned" in line
    assert json.loads((host.state_dir / "abandoned" / TOKEN / "undo.json").read_text()) == {"what": TOKEN}
    assert host.reverts() == []  # the current state stays
    assert host.run("confirm", "next-token").returncode == 0
    assert host.run("confirm", TOKEN).returncode == 2  # "too late: ... abandoned"


def test_the_next_arm_finishes_an_interrupted_revert_and_drops_leftovers(host: Host) -> None:
    interrupted = host.pending / "old-token1.reverting"
    interrupted.mkdir(parents=True)
    (interrupted / "undo.json").write_text(json.dumps({"what": "old"}))
    (interrupted / "timer").write_text("1 0 not-this-boot\n")  # a timer of another boot
    (host.pending / "conf-token1.confirming").mkdir()
    (host.pending / ".new-prep-token").mkdir()
    ok(host.arm(30))
    assert sorted(p.name for p in host.pending.iterdir()) == [TOKEN]
    assert [r["undo"] for r in host.reverts()] == [{"what": "old"}]
    (line,) = host.log()
    assert " token=old-token1 reverted (finishing a revert that was interrupted): undid old" in line
    assert host.run("confirm", TOKEN).returncode == 0


def test_a_live_timer_past_its_deadline_stops_the_next_arm(host: Host) -> None:
    # A pending revert that does not finish: the next arm gives up (after deadline + 60 s)
    # instead of changing the host under it.
    ok(host.arm(30))
    (host.pending / TOKEN / "deadline").write_text(f"{int(time.time()) - 61}\n")
    result = host.arm(5, token="second-token")
    assert "has not finished 60 s after its deadline" in result.stdout, result.stdout + result.stderr
    assert result.returncode == 75 and not (host.pending / "second-token").exists()
    assert host.run("confirm", TOKEN).returncode == 0


# --- the boot hook ---------------------------------------------------------------------


def test_boot_rearms_a_running_change_and_reverts_an_expired_one(host: Host) -> None:
    ok(host.arm(60, token="later-token"))
    os.killpg(host.timer_pid("later-token"), signal.SIGKILL)  # a restart: the timer dies
    assert wait_gone(host.timer_pid("later-token")) == []
    host.pending.joinpath("later-token", "lock").unlink()  # (so "held" is boot's doing)
    result = ok(host.run("boot"))
    assert "re-armed the revert later-token" in result.stdout
    assert re.search(r"^later-token armed .* timer=alive lock=held$", host.run("status").stdout, re.M)
    assert not host.lock_free()  # the re-armed timer holds the host lock
    assert host.run("confirm", "later-token").returncode == 0 and host.lock_free()
    assert host.reverts() == [] and host.log() == []

    # An unconfirmed change found after its deadline is reverted by the boot hook.
    ok(host.arm(1, token="boot-token", undo={"what": "boot"}))
    os.killpg(host.timer_pid("boot-token"), signal.SIGKILL)
    (host.pending / "boot-token" / "deadline").write_text(f"{int(time.time()) - 1}\n")  # time passed
    ok(host.run("boot"))
    assert [r["undo"] for r in host.reverts()] == [{"what": "boot"}]
    (line,) = host.log()
    assert " token=boot-token reverted (not confirmed before the host restarted): undid boot" in line
    assert not any(host.pending.iterdir()) and host.lock_free()


def test_boot_without_pending_reverts_does_nothing(host: Host) -> None:
    assert commit.boot(host.paths, str(host.lock), _no_revert, _nothing_said, 300.0) == 0
    assert not host.lock.exists()


# --- the log ---------------------------------------------------------------------------


def test_log_line_never_fails(host: Host) -> None:
    host.state_dir.parent.mkdir(parents=True)
    host.state_dir.write_text("a file where the state dir should be")
    commit.log_line(host.paths, "token=x reverted")  # no exception
    commit.log_line(commit.Paths(str(host.base / "other")), "two\nlines")
    assert (host.base / "other/var/lib/froxlor-fleet/revert.log").read_text().endswith(" two lines\n")
