"""Commit-confirmed changes, ON THE MANAGED HOST, part of the host program (stdlib only,
Python 3.7 syntax).

A change that could cut the control side off (a firewall change) is *armed* before it
is made: a detached timer process undoes it unless the control side confirms it over a
new SSH connection before the deadline. This module knows nothing about what the
change is: the caller gives an ``undo`` record (JSON) when it arms, and a ``revert``
callback that applies such a record. The revert undoes only this transaction's own
change (not a restore of whole files: fail2ban adds and removes ban rules meanwhile),
so the callback must be idempotent: a revert a crash cut short is run again.

State, below ``Paths.state_dir`` (/var/lib/froxlor-fleet), all root-only:

    pending/TOKEN/          an armed change: undo.json, timeout, created, lock
                            (held|none), applying (flocked by the arm while the change
                            runs), timer ("pid starttime bootid"), deadline (epoch,
                            written when the change is done)
    pending/TOKEN.reverting claimed by the timer (or a failed change, or boot): undoing
    pending/TOKEN.confirming claimed by confirm: stopping the timer
    pending/.new-TOKEN      an arm being prepared (renamed to pending/TOKEN when whole)
    abandoned/TOKEN         armed, timer gone (reboot, killed), found by a later run
    revert.log              one line per revert: "<iso time> token=T reverted (...)"

The race between confirm and the timer. pending/TOKEN is claimed by rename(2), which is
atomic: confirm renames it to TOKEN.confirming, the timer (at the deadline) to
TOKEN.reverting. Exactly one rename succeeds; the loser finds the source gone. The timer
reverts only after its own rename succeeded and then ignores SIGTERM; confirm kills the
timer's process group only after its own rename succeeded, so it can only kill a timer
that has not claimed (and checks pid, start time and boot id first). The revert logs its
line before it removes TOKEN.reverting, so a late confirm sees one of the two. A failing
change: the arming process claims TOKEN.reverting itself while the timer still waits for
the change to end (the timer cannot claim before), stops the timer, and reverts.

The host lock. When the caller holds the host lock (``lock_fd``), the timer inherits
that open file description and keeps it until it exits: no other run changes the host
until the change is confirmed or reverted. Before any change (armed or not) the caller
settles the pending reverts of other runs (``settle_pending``: the transaction does it
first thing under the lock), so a change never interleaves with a revert; ``arm``
relies on that and does not settle again.

The timer is a fork of the arming process (no second interpreter: it has every module
it needs) in a session of its own: an SSH disconnect or a dead control side can't stop
it. A reboot before the deadline kills it; pending/TOKEN survives: the
optional ``boot`` hook reverts or re-arms, else the next arm records it as abandoned
(that run reached the host, so the current state stays).

Testing: FROXLOR_FLEET_ROOT prefixes every path (``Paths.from_env``).

Imports: ``confirm`` and ``status`` run as processes of their own on every changed
host, so what they need is loaded at the top and is cheap (built into Debian's python3);
json and the signal module (and its enum) only where a change or a revert uses them;
no typing, dataclasses, re or shutil (tests/test_fleethost_imports.py).
"""

from __future__ import annotations

import errno
import fcntl
import math
import os
import syslog
import time

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (mypy: true)
if TYPE_CHECKING:
    from typing import Any, Callable, Dict, List, Optional, Tuple, Union

    Revert = Callable[[Dict[str, Any]], Tuple[bool, str]]  # (ok, one-line summary for the log)
    Say = Callable[[str], None]  # a progress line for the operator

ROOT_ENV = "FROXLOR_FLEET_ROOT"
SYSLOG_IDENT = "froxlor-fleet"
# A token: 8-64 of these (the control side's confirm.TOKEN_RE, [A-Za-z0-9-]{8,64}).
TOKEN_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-")

# confirm()'s statuses (the control side maps them: froxlor_fleet/operations/confirm.py).
CONFIRMED = 0
TOO_LATE = 2
UNKNOWN_TOKEN = 3
# CommitError.status for the entry point's exit (sysexits.h).
EX_USAGE = 64
EX_TEMPFAIL = 75

TIMER_START_WAIT = 5.0  # s for a new timer (a fork) to record itself
SETTLE_GRACE = 60  # s after a pending revert's deadline before a waiting arm gives up
POLL = 0.05  # s between looks at a file or a process we wait for

# Signals that end a process: its /proc/PID/stat state field.
_DEAD_STATES = ("Z", "X", "x")
# What confirm sends a timer: Linux's numbers (the same on every architecture), as
# signal.SIGTERM/SIGKILL are; importing signal costs confirm its enum.
SIGTERM = 15
SIGKILL = 9


class CommitError(Exception):
    """One line for the operator; ``status`` is the exit status the entry point uses."""

    def __init__(self, message: str, status: int = 1) -> None:
        super().__init__(message)
        self.status = status


class Paths:
    """Where the state lives; ``root`` prefixes every path (tests use a temp tree)."""

    __slots__ = ("root",)

    def __init__(self, root: str = "/") -> None:
        self.root = root

    def __repr__(self) -> str:
        return "Paths(root=%r)" % self.root

    @property
    def state_dir(self) -> str:
        return os.path.join(self.root, "var/lib/froxlor-fleet")

    @property
    def pending(self) -> str:
        return os.path.join(self.state_dir, "pending")

    @property
    def abandoned(self) -> str:
        return os.path.join(self.state_dir, "abandoned")

    @property
    def revert_log(self) -> str:
        return os.path.join(self.state_dir, "revert.log")

    @classmethod
    def from_env(cls) -> Paths:
        return cls(os.environ.get(ROOT_ENV) or "/")


# --- syntax checks (the control side validates the ranges) -------------------------------


def check_token(token: str) -> None:
    if not isinstance(token, str) or not 8 <= len(token) <= 64 or not TOKEN_CHARS.issuperset(token):
        raise CommitError("invalid token (8-64 characters A-Z a-z 0-9 -)", EX_USAGE)


def check_timeout(timeout: int) -> None:
    # bool is an int subclass: True must not arm for 1 s.
    if isinstance(timeout, bool) or not isinstance(timeout, int) or timeout < 1:
        raise CommitError("invalid timeout (whole seconds, at least 1)", EX_USAGE)


# --- small file helpers ------------------------------------------------------------------


class _Private:
    """``with _Private():`` umask 077 while we create state: undo records and locks are
    root's business."""

    def __enter__(self) -> None:
        self.old = os.umask(0o077)

    def __exit__(self, *exc: object) -> None:
        os.umask(self.old)


def _write(path: str, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
        # The boot hook reads these after a crash: make them reach the disk.
        f.flush()
        os.fsync(f.fileno())


def _write_atomic(path: str, text: str) -> None:
    """Readers see the old or the new content, never half (tmp file + rename)."""
    tmp = "%s.tmp-%d" % (path, os.getpid())
    try:
        _write(tmp, text)
        os.rename(tmp, path)
    except OSError:
        _unlink(tmp)
        raise


def _read(path: str) -> Optional[str]:
    try:
        with open(path) as f:
            return f.read()
    except (OSError, UnicodeDecodeError):
        return None


def _read_int(path: str) -> Optional[int]:
    text = _read(path)
    try:
        return int(text.strip()) if text is not None else None
    except ValueError:
        return None


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


def _rmdir(path: str) -> None:
    """An empty folder (a link: the link)."""
    if os.path.islink(path):
        _unlink(path)
        return
    try:
        os.rmdir(path)
    except OSError:
        pass


def _rmtree(path: str) -> None:
    """The folder ``path`` and what is in it, or the file ``path``; what can't be removed
    stays (as with shutil.rmtree's ignore_errors). Our folders are small trees in a
    root-only folder (an entry's files, the FTP daemon's backup folder in it); a link is
    removed, never followed. Not shutil: its imports (re, enum, bz2, lzma...) were a
    third of confirm's CPU."""
    if not os.path.isdir(path) or os.path.islink(path):
        _unlink(path)
        return
    for folder, dirs, files in os.walk(path, topdown=False):  # the deepest first
        for name in files:
            _unlink(os.path.join(folder, name))
        for name in dirs:
            _rmdir(os.path.join(folder, name))
    _rmdir(path)


def _discard(entry: str) -> None:
    """Remove a pending entry at once: rename it to a dot name (ignored by everyone but
    the leftover sweep), then delete. A reader never sees it half deleted (no timer
    record: "timer gone"), which would make it settle the entry a second time."""
    trash = os.path.join(os.path.dirname(entry), ".done-%s-%d" % (os.path.basename(entry), os.getpid()))
    try:
        os.rename(entry, trash)
    except OSError:
        trash = entry
    _rmtree(trash)


def _entries(paths: Paths) -> List[str]:
    """Names in pending/, sorted (oldest token first is not knowable; stable is enough)."""
    try:
        return sorted(os.listdir(paths.pending))
    except OSError:
        return []


def _token_of(name: str) -> str:
    return name.split(".", 1)[0]


def _clock(epoch: int) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(epoch))


def _deadline_from_now(timeout: int) -> int:
    """Whole seconds (they are shown and compared as such), rounded up: the change gets
    at least TIMEOUT seconds (rounding down could leave a 1 s timeout almost nothing)."""
    return math.ceil(time.time()) + timeout


def _dump_undo(undo: Dict[str, Any]) -> str:
    import json

    if not isinstance(undo, dict):
        raise CommitError("the undo record must be a dict, not %s" % type(undo).__name__)
    try:
        return json.dumps(undo, sort_keys=True) + "\n"
    except (TypeError, ValueError) as exc:
        raise CommitError("the undo record is not JSON: %s" % exc) from None


# --- the log ----------------------------------------------------------------------------


def log_line(paths: Paths, text: str) -> None:
    """"<iso time> text" appended to revert.log, and to syslog; never fails the caller
    (a revert that happened must not look failed because its log could not be written)."""
    text = " ".join(text.split("\n"))  # one line, whatever a callback said
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    try:
        with _Private():
            os.makedirs(paths.state_dir, exist_ok=True)
            fd = os.open(paths.revert_log, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
            with os.fdopen(fd, "a") as f:
                f.write("%s %s\n" % (stamp, text))
    except OSError:
        pass
    # A prefixed root is a test tree, not this host: keep the host's syslog clean.
    if os.path.realpath(paths.root) != "/":
        return
    try:
        syslog.openlog(SYSLOG_IDENT, 0, syslog.LOG_USER)
        syslog.syslog(syslog.LOG_NOTICE, text)
    except Exception:
        pass


def _last_log_line(paths: Paths, token: str) -> Optional[str]:
    text = _read(paths.revert_log) or ""
    hits = [line for line in text.splitlines() if (" token=%s " % token) in line]
    return hits[-1] if hits else None


# --- processes --------------------------------------------------------------------------


def _boot_id() -> str:
    text = _read("/proc/sys/kernel/random/boot_id")
    return text.strip() if text else "unknown"


def _stat_fields(pid: int) -> Optional[List[str]]:
    """/proc/PID/stat after the command name (which may hold spaces and parentheses)."""
    text = _read("/proc/%d/stat" % pid)
    if text is None or ")" not in text:
        return None
    return text.rsplit(")", 1)[1].split()


def proc_start(pid: int) -> Optional[str]:
    """A live process's start time (field 22 of /proc/PID/stat); None for a dead or
    zombie one. With the boot id it tells a process from a later one with its pid."""
    fields = _stat_fields(pid)
    if fields is None or len(fields) < 20 or fields[0] in _DEAD_STATES:
        return None
    return fields[19]


def _group_alive(pgid: int) -> bool:
    """Whether process group PGID has a live (not zombie) member."""
    try:
        names = os.listdir("/proc")
    except OSError:
        return False
    for name in names:
        if not name.isdigit():
            continue
        fields = _stat_fields(int(name))
        if fields and len(fields) >= 3 and fields[2] == str(pgid) and fields[0] not in _DEAD_STATES:
            return True
    return False


def _timer_record(entry: str) -> Optional[Tuple[int, str, str]]:
    parts = (_read(os.path.join(entry, "timer")) or "").split()
    if len(parts) != 3 or not parts[0].isdigit():
        return None
    return int(parts[0]), parts[1], parts[2]


def timer_alive(entry: str) -> bool:
    """The timer recorded in ENTRY/timer is this boot's, alive, and the same process."""
    record = _timer_record(entry)
    if record is None:
        return False
    pid, start, boot = record
    return boot == _boot_id() and proc_start(pid) == start


def _signal_group(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)
    except OSError:
        try:
            os.kill(pid, sig)
        except OSError:
            pass


def _kill_timer(entry: str) -> bool:
    """Stop ENTRY's timer (its process group) and wait until it is gone. Only after a
    claim (see the module docstring). False: it does not exit."""
    if not timer_alive(entry):
        return True
    record = _timer_record(entry)
    if record is None:
        return True
    pid, start, _ = record
    _signal_group(pid, SIGTERM)
    tries = 0
    while proc_start(pid) == start:
        tries += 1
        if tries == 50:  # 5 s: something blocks TERM
            _signal_group(pid, SIGKILL)
        if tries > 100:
            return False
        time.sleep(0.1)
    # Anything the timer started got the same signal: leave no stray process (<= 2 s).
    ends = time.monotonic() + 2
    while _group_alive(pid) and time.monotonic() < ends:
        time.sleep(POLL)
    return True


class _Forked:
    """A timer forked from this process: ``poll`` and ``wait`` for it, as for a child."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.returncode: Optional[int] = None

    def poll(self) -> Optional[int]:
        if self.returncode is None:
            try:
                pid, status = os.waitpid(self.pid, os.WNOHANG)
            except ChildProcessError:
                self.returncode = 0
                return 0
            if pid:
                self.returncode = (os.WEXITSTATUS(status) if os.WIFEXITED(status)
                                   else -os.WTERMSIG(status))
        return self.returncode

    def wait(self, timeout: Optional[float] = None) -> int:
        ends = None if timeout is None else time.monotonic() + timeout
        while self.poll() is None:
            if ends is not None and time.monotonic() > ends:
                raise TimeoutError("the revert timer %d did not exit" % self.pid)
            time.sleep(POLL)
        return self.returncode or 0


def _fork_timer(paths: Paths, token: str, lock_fd: Optional[int], revert: Revert) -> _Forked:
    """The timer as a fork of this process (no new interpreter to start: it has every
    module it needs already): its own session, stdio on /dev/null, every other fd closed
    but the host lock's (above all "applying": the countdown waits for its release)."""
    pid = os.fork()
    if pid:
        return _Forked(pid)
    code = 70
    try:  # pragma: no cover - the child; what it does is tested through its effects
        os.setsid()
        os.chdir("/")
        null = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(null, fd)
        keep = {0, 1, 2} if lock_fd is None else {0, 1, 2, lock_fd}
        for name in os.listdir("/proc/self/fd"):
            if int(name) not in keep:
                try:
                    os.close(int(name))
                except OSError:
                    pass
        code = run_timer(paths, token, revert)
    finally:
        os._exit(code)


def _start_timer(paths: Paths, entry: str, token: str, lock_fd: Optional[int],
                 revert: Revert) -> _Forked:
    """Start ENTRY's timer (``_fork_timer``) and wait until it recorded itself in
    ENTRY/timer. CommitError if it doesn't."""
    record = os.path.join(entry, "timer")
    _unlink(record)
    try:
        proc = _fork_timer(paths, token, lock_fd, revert)
    except OSError as exc:
        raise CommitError("could not start the revert timer: %s" % exc) from None
    ends = time.monotonic() + TIMER_START_WAIT
    while not (_read(record) or "").strip():
        status = proc.poll()
        if status is not None:
            raise CommitError("the revert timer exited (status %d) before it started" % status)
        if time.monotonic() > ends:
            _stop(proc)
            raise CommitError("the revert timer did not start within %d s" % TIMER_START_WAIT)
        time.sleep(0.02)
    return proc


def _stop(proc: Optional[_Forked]) -> None:
    """Kill (if still running) and reap a timer this process started."""
    if proc is None:
        return
    try:
        if proc.poll() is None:
            _signal_group(proc.pid, SIGKILL)
        proc.wait(timeout=5)
    except OSError:  # TimeoutError among them
        pass


# --- reverting --------------------------------------------------------------------------


def _call_revert(revert: Revert, undo: Dict[str, Any]) -> Tuple[bool, str]:
    """The callback, which must not take the protocol down with it: whatever it raises
    becomes a failed revert with one line (no traceback: the host can cause it)."""
    try:
        ok, summary = revert(undo)
    except Exception as exc:
        return False, "the revert raised %s: %s" % (type(exc).__name__, exc)
    return bool(ok), str(summary)


def _finish_revert(paths: Paths, claimed: str, token: str, why: str, revert: Revert) -> bool:
    """Revert the change in the (claimed) entry, log it, remove the entry. Logs before it
    removes: a late confirm finds the entry or the log line, never neither."""
    import json

    text = _read(os.path.join(claimed, "undo.json"))
    try:
        undo = json.loads(text) if text is not None else None
    except ValueError:
        undo = None
    if not isinstance(undo, dict):
        log_line(paths, "token=%s not reverted (%s): its undo record %s/undo.json is missing or "
                 "unreadable" % (token, why, claimed))
        _discard(claimed)
        return False
    ok, summary = _call_revert(revert, undo)
    log_line(paths, "token=%s reverted (%s): %s%s" % (token, why, "" if ok else "FAILED: ", summary))
    _discard(claimed)
    return ok


def _claim(entry: str, suffix: str) -> Optional[str]:
    """rename(2) ENTRY to ENTRY+SUFFIX: the claim. None when another claim won (gone)."""
    claimed = entry + suffix
    try:
        os.rename(entry, claimed)
    except OSError:
        return None
    return claimed


# --- settling other runs' entries -------------------------------------------------------


def _abandon(paths: Paths, entry: str, token: str) -> None:
    """An armed entry whose timer is gone: keep it for the record, keep the current state
    (a later run reached the host, so the change did not lock anybody out)."""
    target = os.path.join(paths.abandoned, token)
    try:
        with _Private():
            os.makedirs(paths.abandoned, exist_ok=True)
        _rmtree(target)
        os.rename(entry, target)
    except OSError as exc:
        if exc.errno == errno.ENOENT and not os.path.lexists(entry):
            return  # confirmed meanwhile
        _discard(entry)
    log_line(paths, "token=%s abandoned: its revert timer is gone (host restarted or timer killed) "
             "before it was confirmed; a later run reached the host, the current state stays" % token)


def _settle_dead(paths: Paths, entry: str, revert: Revert) -> None:
    """One entry whose timer is gone."""
    name = os.path.basename(entry)
    token = _token_of(name)
    if name.endswith(".reverting"):
        _finish_revert(paths, entry, token, "finishing a revert that was interrupted", revert)
    elif name.endswith(".confirming"):
        _discard(entry)  # confirm claimed it: the change stays, nothing to do
    else:
        _abandon(paths, entry, token)


def _settle_one(paths: Paths, entry: str, say: Say, revert: Revert, said: List[str]) -> None:
    """Wait while ENTRY's timer lives (up to its deadline + 60 s), then settle it. SAID:
    the tokens we already told the operator about."""
    token = _token_of(os.path.basename(entry))
    first_seen = int(time.time())
    while os.path.lexists(entry):
        if not timer_alive(entry):
            _settle_dead(paths, entry, revert)
            if os.path.lexists(entry):  # could not remove it: don't loop on it forever
                raise CommitError("cannot clear the pending entry %s; nothing was changed" % entry)
            return
        deadline = _read_int(os.path.join(entry, "deadline"))
        if deadline is None:  # its change is still running: count from now
            deadline = first_seen + (_read_int(os.path.join(entry, "timeout")) or 0)
        if time.time() > deadline + SETTLE_GRACE:
            raise CommitError("the pending revert %s has not finished %d s after its deadline; "
                              "nothing was changed" % (token, SETTLE_GRACE), EX_TEMPFAIL)
        if token not in said:
            say("waiting for the pending revert %s of another run (deadline %s)" % (token, _clock(deadline)))
            said.append(token)
        time.sleep(POLL * 4)


def _remove_leftovers(paths: Paths) -> None:
    """.new-*: arms that died while preparing (nothing was changed); .done-*: removals
    cut short."""
    for name in _entries(paths):
        if name.startswith((".new-", ".done-")):
            _rmtree(os.path.join(paths.pending, name))


def settle_pending(paths: Paths, say: Say, revert: Revert) -> None:
    """Before any change: the entries other runs left. A live timer: wait for it; a dead
    one: finish its revert, drop a confirm, or record the entry as abandoned."""
    _remove_leftovers(paths)
    said: List[str] = []
    # List again after each entry: the one we waited for may have become TOKEN.reverting
    # (its timer claimed it), which must be waited for too.
    while True:
        names = [name for name in _entries(paths) if not name.startswith(".")]
        if not names:
            return
        _settle_one(paths, os.path.join(paths.pending, names[0]), say, revert, said)


# --- arming -----------------------------------------------------------------------------


def _token_used(paths: Paths, token: str) -> bool:
    for name in _entries(paths):
        if name == token or name.startswith(token + ".") or name == ".new-" + token:
            return True
    return _last_log_line(paths, token) is not None


def _prepare(paths: Paths, token: str, timeout: int, undo_text: str, lock_held: bool) -> str:
    """pending/.new-TOKEN with everything, renamed whole to pending/TOKEN."""
    new = os.path.join(paths.pending, ".new-" + token)
    entry = os.path.join(paths.pending, token)
    try:
        with _Private():
            os.mkdir(new, 0o700)
            _write(os.path.join(new, "undo.json"), undo_text)
            _write(os.path.join(new, "timeout"), "%d\n" % timeout)
            _write(os.path.join(new, "created"), "%d\n" % int(time.time()))
            _write(os.path.join(new, "lock"), "held\n" if lock_held else "none\n")
            _write(os.path.join(new, "applying"), "")
        os.rename(new, entry)
    except OSError as exc:
        _rmtree(new)
        raise CommitError("cannot prepare %s: %s; nothing was changed" % (entry, exc.strerror)) from None
    return entry


def _lock_applying(entry: str) -> int:
    """Take ENTRY/applying in this process: the timer's countdown waits for its release."""
    fd = os.open(os.path.join(entry, "applying"), os.O_RDWR | os.O_CLOEXEC)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
    except OSError:
        os.close(fd)
        raise
    return fd


class Armed:
    """An armed change: call ``started()`` when it is made, or ``failed(why)``."""

    def __init__(self, paths: Paths, token: str, dir: str, timeout: int, applying_fd: int,
                 timer: Optional[_Forked], say: Say, revert: Revert) -> None:
        self.paths = paths
        self.token = token
        self.dir = dir
        self.timeout = timeout
        self._applying_fd: Optional[int] = applying_fd
        self._timer = timer
        self._say = say
        self._revert = revert

    def _release(self) -> None:
        """Release the "applying" lock: the timer's countdown starts."""
        if self._applying_fd is not None:
            os.close(self._applying_fd)
            self._applying_fd = None

    def started(self) -> int:
        """The change is done: write the deadline, start the countdown. Returns the
        deadline (epoch), or 0 when confirm came while the change ran."""
        try:
            if not os.path.isdir(self.dir):
                return self._confirmed_meanwhile()
            deadline = _deadline_from_now(self.timeout)
            try:
                _write_atomic(os.path.join(self.dir, "deadline"), "%d\n" % deadline)
            except OSError:
                if not os.path.isdir(self.dir):
                    return self._confirmed_meanwhile()
                # Not written (disk full?): the timer counts from the release instead.
            self._say("armed: unless confirmed by %s (%d s), this host undoes the change (token %s)"
                      % (_clock(deadline), self.timeout, self.token))
            return deadline
        finally:
            self._release()

    def _confirmed_meanwhile(self) -> int:
        self._say("the change is done and token %s is already confirmed" % self.token)
        self._reap_timer()
        return 0

    def _reap_timer(self) -> None:
        # confirm killed our child timer and waited for it: collect it, no zombie while
        # the caller lives on (poll() never blocks).
        if self._timer is not None:
            self._timer.poll()

    def failed(self, why: str, changed: bool = True) -> None:
        """The change failed: nobody will confirm it, so undo it now. ``changed=False``:
        it failed before it changed anything; nothing is reverted, only logged."""
        try:
            claimed = _claim(self.dir, ".reverting")
            if claimed is None:
                self._say("%s, but token %s was confirmed meanwhile; not undoing it" % (why, self.token))
                return
            # The timer still waits for the change to end (it cannot have claimed): stop it.
            if not _kill_timer(claimed):
                self._say("the revert timer of %s does not exit; it will find nothing to do" % self.token)
            _stop(self._timer)
            if not changed:
                log_line(self.paths, "token=%s not reverted: %s before it changed anything"
                         % (self.token, why))
                _discard(claimed)
                return
            if _finish_revert(self.paths, claimed, self.token, why, self._revert):
                self._say("%s; it was undone" % why)
            else:
                self._say("%s, and undoing it failed too: see %s" % (why, self.paths.revert_log))
        finally:
            self._release()


def arm(paths: Paths, timeout: int, token: str, undo: Dict[str, Any], lock_fd: Optional[int],
        say: Say, revert: Revert) -> Armed:
    """Arm a change before it is made, once the caller settled other runs' pending
    reverts (``settle_pending``). CommitError leaves nothing behind. ``say`` tells the
    operator the deadline; ``revert`` undoes an ``undo`` record (in the timer, or here
    when the change fails)."""
    check_timeout(timeout)
    check_token(token)
    undo_text = _dump_undo(undo)
    if lock_fd is not None:
        try:
            os.fstat(lock_fd)
        except OSError:
            raise CommitError("the host lock's fd %d is not open" % lock_fd, EX_USAGE) from None
    try:
        with _Private():
            os.makedirs(paths.pending, exist_ok=True)
    except OSError as exc:
        raise CommitError("cannot create %s: %s; nothing was changed"
                          % (paths.pending, exc.strerror)) from None
    if _token_used(paths, token):
        raise CommitError("token %s was used before on this host" % token, EX_USAGE)
    entry = _prepare(paths, token, timeout, undo_text, lock_fd is not None)
    try:
        applying_fd = _lock_applying(entry)
    except OSError as exc:
        _rmtree(entry)
        raise CommitError("cannot lock %s/applying: %s; nothing was changed"
                          % (entry, exc.strerror)) from None
    try:
        timer = _start_timer(paths, entry, token, lock_fd, revert)
    except CommitError as exc:
        _rmtree(entry)
        os.close(applying_fd)
        raise CommitError("%s; nothing was changed" % exc) from None
    return Armed(paths, token, entry, timeout, applying_fd, timer, say, revert)


def update_undo(armed_or_dir: Union[Armed, str], undo: Dict[str, Any]) -> None:
    """Replace the undo record (atomically) while the change runs, e.g. as it learns
    what it really changed. Gone (confirmed meanwhile): nothing to update."""
    entry = armed_or_dir.dir if isinstance(armed_or_dir, Armed) else armed_or_dir
    text = _dump_undo(undo)
    try:
        _write_atomic(os.path.join(entry, "undo.json"), text)
    except OSError as exc:
        if os.path.isdir(entry):
            raise CommitError("cannot update %s/undo.json: %s" % (entry, exc.strerror)) from None


# --- the timer --------------------------------------------------------------------------


def _record_self(entry: str) -> bool:
    pid = os.getpid()
    try:
        _write_atomic(os.path.join(entry, "timer"), "%d %s %s\n" % (pid, proc_start(pid), _boot_id()))
    except OSError:
        return False
    return True


def _wait_for_change(entry: str) -> bool:
    """Block until the arm released ENTRY/applying (the change ended, or its process
    died). False when the entry is gone (confirmed meanwhile)."""
    try:
        fd = os.open(os.path.join(entry, "applying"), os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
    except OSError:
        pass
    finally:
        os.close(fd)
    return os.path.isdir(entry)


def _deadline_of(entry: str, timeout: int) -> Optional[int]:
    deadline = _read_int(os.path.join(entry, "deadline"))
    if deadline is not None:
        return deadline
    # The arm died before it wrote the deadline: count from now.
    deadline = _deadline_from_now(timeout)
    try:
        _write_atomic(os.path.join(entry, "deadline"), "%d\n" % deadline)
    except OSError:
        return None  # entry gone: confirmed meanwhile
    return deadline


def run_timer(paths: Paths, token: str, revert: Revert) -> int:
    """The timer (``_fork_timer``): revert at the deadline unless confirm claimed the
    entry first. Returns its exit status (nobody reads it)."""
    try:
        check_token(token)
    except CommitError:
        return EX_USAGE
    import signal

    # A hang-up or ^C of the arming session must not stop it; confirm's TERM must (the
    # fork inherits the arming process's handlers: an ignored or caught TERM would make
    # confirm wait for its KILL).
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    entry = os.path.join(paths.pending, token)
    if not _record_self(entry):
        return 1
    if not _wait_for_change(entry):
        return 0
    # arm writes the timeout before it starts the timer; unreadable: no time is left
    timeout = _read_int(os.path.join(entry, "timeout")) or 0
    deadline = _deadline_of(entry, timeout)
    if deadline is None:
        return 0
    while time.time() < deadline:
        time.sleep(max(0.01, min(deadline - time.time(), 60.0)))
    claimed = _claim(entry, ".reverting")
    if claimed is None:
        return 0  # confirm won the claim
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a revert half done is worse than none
    ok = _finish_revert(paths, claimed, token, "not confirmed within %d s" % timeout, revert)
    return 0 if ok else 1


# --- confirm, status --------------------------------------------------------------------


def confirm(paths: Paths, token: str) -> Tuple[int, str]:
    """Cancel TOKEN's revert. (0, "confirmed"), (2, "too late: ..."), (3, "no pending ...")."""
    check_token(token)
    entry = os.path.join(paths.pending, token)
    claimed = _claim(entry, ".confirming")
    if claimed is None and os.path.isdir(entry + ".confirming"):
        claimed = entry + ".confirming"  # a confirm before us was cut short: finish it
    if claimed is not None:
        if not _kill_timer(claimed):
            record = _timer_record(claimed)
            raise CommitError("the revert timer (pid %s) does not exit" % (record[0] if record else "?"))
        _discard(claimed)
        return CONFIRMED, "confirmed"
    if os.path.isdir(entry + ".reverting"):
        return TOO_LATE, "too late: the revert of %s has started; this host is undoing the change" % token
    line = _last_log_line(paths, token)
    if line is not None:
        return TOO_LATE, "too late: %s" % line
    return UNKNOWN_TOKEN, "no pending revert with token %s on this host" % token


def _state_of(name: str) -> str:
    if name.endswith(".reverting"):
        return "reverting"
    if name.endswith(".confirming"):
        return "confirming"
    return "armed"


def status(paths: Paths) -> List[str]:
    """One line per pending revert, or ["no pending reverts"]."""
    lines = []
    for name in _entries(paths):
        entry = os.path.join(paths.pending, name)
        if name.startswith(".") or not os.path.isdir(entry):
            continue
        deadline = _read_int(os.path.join(entry, "deadline"))
        when = ("deadline=%d (%s)" % (deadline, _clock(deadline)) if deadline is not None
                else "deadline=- (change still running)")
        lock = (_read(os.path.join(entry, "lock")) or "").strip() or "none"
        lines.append("%s %s %s timer=%s lock=%s" % (_token_of(name), _state_of(name), when,
                                                    "alive" if timer_alive(entry) else "gone", lock))
    return lines or ["no pending reverts"]


# --- the boot hook ----------------------------------------------------------------------


def _take_lock(lock_path: str, within: float) -> int:
    """Open and flock the host lock, waiting up to WITHIN seconds."""
    try:
        with _Private():
            os.makedirs(os.path.dirname(lock_path) or ".", exist_ok=True)
            fd = os.open(lock_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        raise CommitError("cannot open %s: %s" % (lock_path, exc.strerror), EX_TEMPFAIL) from None
    ends = time.monotonic() + within
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return fd
        except OSError:
            if time.monotonic() > ends:
                os.close(fd)
                raise CommitError("could not take %s within %d s" % (lock_path, within),
                                  EX_TEMPFAIL) from None
            time.sleep(0.2)


def _boot_one(paths: Paths, name: str, lock_fd: int, revert: Revert, say: Say) -> None:
    entry = os.path.join(paths.pending, name)
    token = _token_of(name)
    if name.endswith(".reverting"):
        _finish_revert(paths, entry, token, "finishing a revert the restart interrupted", revert)
        return
    if name.endswith(".confirming"):
        _discard(entry)
        return
    deadline = _read_int(os.path.join(entry, "deadline")) or 0
    if deadline <= time.time():
        claimed = _claim(entry, ".reverting")
        if claimed is not None:
            _finish_revert(paths, claimed, token, "not confirmed before the host restarted", revert)
        return
    try:
        _write(os.path.join(entry, "lock"), "held\n")
        _start_timer(paths, entry, token, lock_fd, revert)  # it keeps the host lock
    except (OSError, CommitError) as exc:
        say("could not re-arm the revert %s (%s); it stays pending" % (token, exc))
        return
    say("re-armed the revert %s for %s" % (token, _clock(deadline)))


def boot(paths: Paths, lock_path: str, revert: Revert, say: Say, lock_wait: float) -> int:
    """Optional boot hook (after the firewall's own boot service): finish reverts a
    restart interrupted, revert expired unconfirmed changes, re-arm the others for the
    time they have left. Under the host lock, which the re-armed timers keep."""
    if not os.path.isdir(paths.pending):
        return 0
    lock_fd = _take_lock(lock_path, lock_wait)
    try:
        _remove_leftovers(paths)
        for name in _entries(paths):
            if name.startswith(".") or timer_alive(os.path.join(paths.pending, name)):
                continue
            _boot_one(paths, name, lock_fd, revert, say)
    finally:
        os.close(lock_fd)  # the re-armed timers hold their own copies
    return 0
