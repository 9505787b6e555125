"""Runs ON THE MANAGED HOST under its python3 (stdlib only, 3.7 syntax), inside the host
program's transaction (under the host lock): the FTP daemon's side of a passive-range
change.

ProFTPd: ``proftpd_check`` tries a new fragment with ``proftpd -t -c`` on a candidate
configuration without touching the live fragment; ``proftpd_apply`` writes it, tests the
whole configuration, restarts a running ProFTPd and records what it loaded in a marker;
``proftpd_restore`` puts the saved fragment back (a revert, or a transaction rolled back).
pure-ftpd: ``pureftpd_apply`` / ``pureftpd_restore`` do the same for Debian's wrapper
files ``PassivePortRange`` and ``ForcePassiveIP``.

Facts this relies on (seen on Debian 11-13, ProFTPd 1.3.7a-1.3.8c):

* ``proftpd -t`` exits 0 when an *included* file has a fatal error; only its "fatal:"
  line tells. A configuration passes when it exits 0 and prints no "fatal:".
* With froxlor's ratelimit file (mod_ban) a SIGHUP kills ProFTPd (signal 11): it is
  restarted, never reloaded (froxlor's own templates restart it too). pure-ftpd has no
  reload at all.
* ProFTPd includes every file of conf.d, temporary ones too: temporary files go beside
  conf.d, never in it. Likewise Debian's pure-ftpd wrapper reads every file in conf/ as
  an option: temporary files go beside conf/.
* The markers (``LOADED_MARKER``, ``PUREFTPD_LOADED_MARKER`` on the control side) hold
  the sha256 of what the daemon runs with (``proftpd.digest``, ``pureftpd.digest``). A
  marker is written only after a successful restart and removed when what runs is
  unknown (a failed restart that did not come back either): the next run restarts.

Every failure a host can cause is an ``FtpError`` whose text is the operator's message
(ProFTPd's own lines included); no traceback. The caller owns the folders it passes
(``work`` for a check, ``backup`` for apply/restore): root-only, removed by the caller.
Signals: the entry point should turn SIGTERM/SIGHUP into an exception so the ``finally``
blocks here remove their temporary files.
"""

from __future__ import annotations

import fnmatch
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (mypy: true)
if TYPE_CHECKING:
    from typing import Callable, Dict, List, Optional, Tuple

# Seconds. A check or restart that hangs must not hold the host lock for ever; systemd's
# own start timeout (90 s by default) is below RESTART_TIMEOUT.
CHECK_TIMEOUT = 120.0
RESTART_TIMEOUT = 180.0
# After an init-script or pidfile restart the daemon forks and writes its pidfile: look
# after SETTLE seconds (a daemon that dies at once is seen dead), then poll up to COME_BACK.
PROFTPD_SETTLE = 0.2
PUREFTPD_SETTLE = 0.5
COME_BACK = 3.0
POLL = 0.1
TERM_WAIT = 5.0  # a ProFTPd stopped by SIGTERM (no init script) gets this long to exit

PROFTPD_NOT_RUNNING = "proftpd is not running; the fragment applies when it starts"
PUREFTPD_NOT_RUNNING = "pure-ftpd is not running; the range applies when it starts"
# pure-ftpd's flavours, froxlor's first (it installs pure-ftpd-mysql)
PUREFTPD_SERVICES = ("pure-ftpd-mysql", "pure-ftpd-postgresql", "pure-ftpd-ldap", "pure-ftpd")
PUREFTPD_FILES = ("PassivePortRange", "ForcePassiveIP")
ABSENT = ".absent"  # a backup's name + this: there was no such file
TEMP_PREFIX = ".froxlor-fleet-"


class FtpError(Exception):
    """The operator's message (several lines at most); nothing more to say."""


@dataclass(frozen=True)
class Host:
    """Where the host's files are: ``root`` prefixes /run, /etc/pure-ftpd, /etc/init.d,
    /lib/systemd... (tests point it at a temporary tree). The ProFTPd fragment's path is
    passed whole by the callers and is not prefixed."""

    root: str = ""

    def at(self, path: str) -> str:
        return self.root + path


# --- digests: the markers' contents ------------------------------------------------


def _sha256(data: bytes) -> str:
    import hashlib  # here: loading it (OpenSSL) is ~4 ms, and only an FTP switch needs it

    return hashlib.sha256(data).hexdigest()


def proftpd_digest(content: str) -> str:
    """sha256 hex of the fragment's bytes (``operations/ftpplan.fragment_digest``)."""
    return _sha256(content.encode())


def pureftpd_digest(range_text: str, force_ip: Optional[str]) -> str:
    """sha256 hex of what pure-ftpd runs with (``operations/ftpplan.pureftpd_files_digest``):
    "PassivePortRange LOW HIGH\\n", then "ForcePassiveIP ADDRESS\\n" when set."""
    text = "PassivePortRange %s\n" % range_text
    if force_ip is not None:
        text += "ForcePassiveIP %s\n" % force_ip
    return _sha256(text.encode())


# --- running programs ----------------------------------------------------------------


def _run(argv: List[str], timeout: float) -> Tuple[int, str]:
    """Exit status and output (stdout and stderr) of ``argv``; never raises: a missing
    program is 127, a timeout 124, each with a line saying so. The output goes to an
    anonymous file, not a pipe: a daemon an init script starts may keep the descriptor
    open, and reading a pipe would wait for it."""
    with tempfile.TemporaryFile() as out:
        try:
            rc = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                timeout=timeout).returncode
        except subprocess.TimeoutExpired:
            return 124, "%s did not finish within %d s" % (" ".join(argv), timeout)
        except OSError as e:
            return 127, "cannot run %s: %s" % (argv[0], e.strerror)
        out.seek(0)
        return rc, out.read().decode(errors="replace")


def _proftpd_test(extra: List[str]) -> Tuple[bool, str]:
    """``proftpd -t [extra]``: passes when it exits 0 and prints no "fatal:" (ProFTPd
    1.3.7a-1.3.8c exit 0 when an included file has a fatal error). Also ProFTPd's text."""
    rc, out = _run(["proftpd", "-t", *extra], CHECK_TIMEOUT)
    return rc == 0 and "fatal:" not in out, out


def _proftpd_says(out: str) -> List[str]:
    """ProFTPd's lines worth showing (not its "Checking syntax..." banner)."""
    return [line for line in out.splitlines() if line.strip() and not line.startswith("Checking syntax")]


def _settled(running: Callable[[], bool], settle: float) -> bool:
    """Does the daemon run after a restart? Looked at after ``settle`` seconds, then
    polled up to COME_BACK seconds (a slow host writes its pidfile late)."""
    time.sleep(settle)
    deadline = time.monotonic() + COME_BACK
    while not running():
        if time.monotonic() >= deadline:
            return False
        time.sleep(POLL)
    return True


def _pid(pidfile: str) -> Optional[int]:
    """The process id in ``pidfile`` (its first line, digits only), or None. Never 0 or
    negative: kill(0) or kill(-1) would signal whole process groups."""
    try:
        with open(pidfile) as f:
            pid = f.readline().strip()
    except OSError:
        return None
    if not pid.isdigit() or not 0 < int(pid) < 2 ** 31:
        return None
    return int(pid)


def _pid_running(pidfile: str) -> bool:
    """Is the process of ``pidfile`` alive?"""
    pid = _pid(pidfile)
    if pid is None:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists (only a non-root caller gets this)
        return True
    return True


def _systemd(host: Host) -> bool:
    """systemd is the init system (it runs the services; systemctl is asked)."""
    return os.path.isdir(host.at("/run/systemd/system"))


def _is_active(unit: str) -> bool:
    return _run(["systemctl", "is-active", "--quiet", unit], RESTART_TIMEOUT)[0] == 0


# --- files -----------------------------------------------------------------------------


def _remove(path: str) -> None:
    try:
        os.remove(path)
    except FileNotFoundError:
        pass


def _temp_beside(folder: str) -> str:
    """A new empty temporary file in ``folder`` (its caller renames or removes it)."""
    fd, tmp = tempfile.mkstemp(prefix=TEMP_PREFIX, dir=folder)
    os.close(fd)
    return tmp


def _install(path: str, data: Optional[bytes], tmp_dir: str, like: Optional[str] = None) -> None:
    """Make ``path`` hold ``data`` (None: remove it) in one rename, the temporary file
    in ``tmp_dir`` (same file system, and a folder the daemon does not read). ``like``:
    a file whose mode, times and owner the new one takes (a backup going back, as
    ``cp -p`` did); otherwise mode 0644."""
    if data is None:
        _remove(path)
        return
    tmp = _temp_beside(tmp_dir)
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        if like is None:
            os.chmod(tmp, 0o644)
        else:
            shutil.copystat(like, tmp)
            _copy_owner(like, tmp)
        os.replace(tmp, path)
    except BaseException:
        _remove(tmp)
        raise


def _copy_owner(src: str, dst: str) -> None:
    st = os.stat(src)
    try:
        os.chown(dst, st.st_uid, st.st_gid)
    except PermissionError:  # not root (tests): the file stays the caller's
        pass


def _read(path: str) -> Optional[bytes]:
    """The file's bytes, or None when there is no such file (a directory counts as none)."""
    if not os.path.isfile(path):
        return None
    with open(path, "rb") as f:
        return f.read()


def _save(src: str, saved: str) -> None:
    """Keep a copy of file ``src`` at ``saved`` (mode, times and owner too), or a file
    ``saved + ABSENT`` when there is none. Both names are removed first: a save cut
    short leaves neither, and a restore refuses rather than using a stale copy."""
    _remove(saved)
    _remove(saved + ABSENT)
    data = _read(src)
    if data is None:
        with open(saved + ABSENT, "w"):
            pass
        return
    _install(saved, data, os.path.dirname(saved), like=src)


def _saved(saved: str) -> Tuple[Optional[bytes], Optional[str]]:
    """What ``_save`` kept: (bytes, the copy's path) or (None, None) for "absent"."""
    data = _read(saved)
    if data is not None:
        return data, saved
    if os.path.exists(saved + ABSENT):
        return None, None
    raise FtpError("no backup at %s (nor %s): nothing was put back" % (saved, saved + ABSENT))


def _write_marker(marker: str, digest: Optional[str]) -> None:
    """The marker holds ``digest`` ("HEX\\n", as sha256sum wrote it) or is removed."""
    if digest is None:
        _remove(marker)
        return
    folder = os.path.dirname(marker) or "."
    os.makedirs(folder, exist_ok=True)
    _install(marker, (digest + "\n").encode(), folder)


def _os_error(what: str, e: OSError) -> FtpError:
    return FtpError("%s: %s" % (what, e.strerror or e))


# --- ProFTPd: the candidate configuration --------------------------------------------

# `Include PATH` or `Include "PATH"` (any case), as ProFTPd's parser splits it
_SPACE = "[ \t\v\f\r]"
_INCLUDE = re.compile("^%s*include%s+\"?([^\"]*[^\"\\s])\"?%s*$" % (_SPACE, _SPACE, _SPACE), re.I)
_INCLUDE_OPTIONS = re.compile("^includeoptions%s" % _SPACE, re.I)
_GLOB = re.compile(r"[][*?]")
# A path ProFTPd would take for a glob, that a quoted Include can't carry, or that
# breaks the line: it can't be named in a single-file Include.
_UNNAMEABLE = re.compile(r"[][*?\"\\\n]")


def _fnmatch_period(name: str, pattern: str) -> bool:
    """fnmatch(pattern, name, FNM_PERIOD), as ProFTPd matches Include globs: a leading
    "." is matched only by a literal one. (Python's fnmatch takes "\\" literally and
    "[^" as no negation; a conf.d pattern like *.conf has neither.)"""
    if name.startswith(".") and not pattern.startswith("."):
        return False
    return fnmatch.fnmatchcase(name, pattern)


def _temp_file(name: str) -> bool:
    """ProFTPd's is_tmp_file() under IncludeOptions IgnoreTempFiles: *~ and *.sw?
    (FNM_PERIOD: a dot-file is none of them)."""
    return _fnmatch_period(name, "*~") or _fnmatch_period(name, "*.sw?")


def included(name: str, pattern: Optional[str], ignore_temp: bool) -> bool:
    """Does an Include of ``pattern`` in a folder read ``name`` from it (``None``: an
    Include of the folder itself, every name; ``ignore_temp``: IncludeOptions
    IgnoreTempFiles)? The control side's replay (``ftpconf/replay.py``) asks it too."""
    if ignore_temp and _temp_file(name):
        return False
    return pattern is None or _fnmatch_period(name, pattern)


def _include_pattern(target: str, path: str) -> Tuple[bool, Optional[str]]:
    """Does an Include of ``target`` read the fragment's folder? (False, _): no; (True,
    None): the whole folder; (True, PATTERN): the names matching PATTERN. A symlinked
    folder is left alone (ProFTPd refuses it without AllowSymlinks: not ours to try)."""
    folder, name = os.path.split(path)
    if target == path:
        return True, name
    if target in (folder, folder + "/"):
        return os.path.isdir(folder) and not os.path.islink(folder), None
    rest = target[len(folder) + 1:] if target.startswith(folder + "/") else ""
    if rest and "/" not in rest and _GLOB.search(rest) and not os.path.islink(folder):
        return True, rest
    return False, None


def _expanded(path: str, candidate: str, pattern: Optional[str], ignore_temp: bool) -> List[str]:
    """The single-file Include lines ProFTPd's Include of ``pattern`` amounts to, in its
    order (strcmp of the paths: byte order of the names), with ``candidate`` in the
    fragment's place. A subfolder or a broken link is skipped (ProFTPd: EISDIR/ENOENT)."""
    folder, name = os.path.split(path)
    try:
        names = set(os.listdir(folder))
    except OSError:
        names = set()
    names.add(name)
    lines = []
    for n in sorted(names, key=os.fsencode):
        if not included(n, pattern, ignore_temp):
            continue
        if n == name:
            f = candidate
        elif os.path.isfile(os.path.join(folder, n)):
            f = os.path.join(folder, n)
        else:
            continue
        if _UNNAMEABLE.search(f):
            raise FtpError("cannot name %s in an Include, so the new fragment can't be tried apart "
                           "from the live file; nothing was changed on this host" % f)
        lines.append('Include "%s"\n' % f)
    return lines


def _candidate_main(main: str, path: str, candidate: str) -> List[str]:
    """The candidate configuration: ``main``'s lines, each Include that reads the fragment
    (conf.d itself, a glob in conf.d matching its name, or the file) replaced by Includes
    of the files it reads, one by one in ProFTPd's order, ``candidate`` in the fragment's
    place. ProFTPd reads a folder or glob Include as exactly that sequence of single-file
    Includes under the same IncludeOptions (parser.c parse_config_path2()), so `proftpd
    -t -c` on it parses what a restart parses once the fragment holds the candidate's
    text. Other lines stay as they are (ProFTPd takes no relative Include)."""
    try:
        with open(main, encoding="utf-8", errors="surrogateescape", newline="\n") as f:
            source = f.read().split("\n")  # only "\n" ends a line (not splitlines' \f, \x1c...)
    except OSError as e:
        raise _os_error("cannot read %s; nothing was changed on this host" % main, e) from None
    if source[-1] == "":
        source.pop()
    out: List[str] = []
    ignore_temp = found = False
    for line in source:
        words = line.lstrip(" \t\v\f\r")
        if _INCLUDE_OPTIONS.match(words):
            # replaces the options in force for every later Include (ProFTPd: strcmp)
            ignore_temp = "IgnoreTempFiles" in words.split()
        match = _INCLUDE.match(line)
        reads, pattern = _include_pattern(match.group(1), path) if match else (False, None)
        if reads and included(os.path.basename(path), pattern, ignore_temp):
            out.extend(_expanded(path, candidate, pattern, ignore_temp))
            found = True
        else:
            out.append(line + "\n")
    if not found:
        raise FtpError("no Include in %s reads %s, so the new fragment can't be tried apart from the "
                       "live file; nothing was changed on this host" % (main, path))
    return out


def _main_of(path: str) -> str:
    """ProFTPd's main file: proftpd.conf beside conf.d (Debian, froxlor)."""
    return os.path.join(os.path.dirname(os.path.dirname(path)), "proftpd.conf")


def proftpd_check(path: str, content: str, work: str) -> None:
    """Would ProFTPd accept ``content`` at ``path``? ``proftpd -t -c`` on the candidate
    configuration (``_candidate_main``) written in ``work`` (a root-only folder the caller
    owns and removes); ``path`` is never written, ProFTPd not restarted. FtpError with
    ProFTPd's message (naming the live files, not the candidates), or when no Include of
    proftpd.conf reads ``path`` (conf.d included from another file: it can't be tried
    apart from the live file). ``content`` "": an empty fragment."""
    main = _main_of(path)
    if shutil.which("proftpd") is None:
        raise FtpError("proftpd is not installed (not found on PATH); nothing was changed on this host")
    try:
        tried = tempfile.mkdtemp(prefix="proftpd-check.", dir=work)
    except OSError as e:
        raise _os_error("cannot make a folder in %s" % work, e) from None
    try:
        os.mkdir(os.path.join(tried, "candidate"))
        candidate = os.path.join(tried, "candidate", os.path.basename(path))
        with open(candidate, "wb") as f:
            f.write(content.encode())
        lines = _candidate_main(main, path, candidate)
        candidate_main = os.path.join(tried, "proftpd.conf")
        with open(candidate_main, "w", encoding="utf-8", errors="surrogateescape") as f:
            f.writelines(lines)
        ok, out = _proftpd_test(["-c", candidate_main])
    except OSError as e:
        raise _os_error("cannot write the candidate configuration in %s" % tried, e) from None
    finally:
        shutil.rmtree(tried, ignore_errors=True)
    if not ok:
        # ProFTPd names the candidate's files: name the ones a restart would read
        said = [line.replace(candidate, path).replace(candidate_main, main) for line in _proftpd_says(out)]
        raise FtpError("\n".join(["proftpd -t rejects the new passive-port fragment; nothing was "
                                  "changed on this host:", *said]))


# --- ProFTPd: apply, restore -------------------------------------------------------------


def _proftpd_running(host: Host) -> bool:
    """Does ProFTPd run (systemd's unit, else the pidfile's process)? Asked once, before
    anything changes: after a failed restart it has stopped, and the previous fragment
    must still be restarted on."""
    if _systemd(host):
        return _is_active("proftpd")
    return _pid_running(host.at("/run/proftpd.pid"))


def _restart_proftpd(host: Host) -> Tuple[bool, str]:
    """Restart ProFTPd and check it runs again: systemd, else its init script, else
    SIGTERM and start it again. Not a SIGHUP reload (mod_ban: see the module's
    docstring). (came back, what it said)."""
    if _systemd(host):
        rc, out = _run(["systemctl", "restart", "proftpd"], RESTART_TIMEOUT)
        return rc == 0 and _is_active("proftpd"), out.strip()
    pidfile = host.at("/run/proftpd.pid")
    script = host.at("/etc/init.d/proftpd")
    if os.access(script, os.X_OK):
        rc, out = _run([script, "restart"], RESTART_TIMEOUT)
    else:
        rc, out = _stop_start_proftpd(pidfile)
    return rc == 0 and _settled(lambda: _pid_running(pidfile), PROFTPD_SETTLE), out.strip()


def _stop_start_proftpd(pidfile: str) -> Tuple[int, str]:
    """No init script: SIGTERM the pidfile's process, wait for it, start ``proftpd``."""
    pid = _pid(pidfile)
    try:
        if pid is not None:
            os.kill(pid, signal.SIGTERM)
    except OSError as e:
        return 1, "cannot stop proftpd (pid %s): %s" % (pid, e.strerror)
    deadline = time.monotonic() + TERM_WAIT
    while _pid_running(pidfile) and time.monotonic() < deadline:
        time.sleep(POLL)
    return _run(["proftpd"], RESTART_TIMEOUT)


def _put_back_fragment(path: str, previous: Optional[bytes], like: Optional[str]) -> Optional[str]:
    """Put ``previous`` back at ``path``; None, or what went wrong."""
    try:
        _install(path, previous, os.path.dirname(os.path.dirname(path)), like=like)
    except OSError as e:
        return "the previous fragment could not be put back at %s: %s" % (path, e.strerror or e)
    return None


def _fragment_back(path: str, marker: str, previous: Optional[bytes], like: Optional[str],
                   host: Host, said: List[str], summary: str) -> FtpError:
    """After a failed restart: the previous fragment back, ProFTPd restarted on it (the
    marker removed if it does not come back: what runs is unknown, the next run
    restarts it). The error to raise."""
    lines = [summary, *said]
    problem = _put_back_fragment(path, previous, like)
    if problem is not None:
        lines.append(problem)
    if problem is not None or not _restart_proftpd(host)[0]:
        _remove(marker)  # what ProFTPd runs with is unknown now: the next run restarts it
        lines.append("ProFTPd did not come back on the previous fragment either")
    return FtpError("\n".join(lines))


def proftpd_apply(path: str, content: Optional[str], marker: str, backup: str, host: Host = Host()) -> str:
    """Make ``path`` exactly ``content`` (None: remove it), test the whole configuration
    with ``proftpd -t``, restart a running ProFTPd and check it runs; then the marker
    holds ``content``'s sha256 (removed for None). The previous fragment is first saved
    in the folder ``backup`` (for ``proftpd_restore``). On failure the previous fragment
    is back, ProFTPd restarted on it, and FtpError. Returns what it did (one line)."""
    try:
        os.makedirs(backup, mode=0o700, exist_ok=True)
        _save(path, os.path.join(backup, "proftpd-fragment"))
    except OSError as e:
        raise _os_error("cannot save the previous fragment in %s; nothing was changed" % backup, e) from None
    previous, like = _saved(os.path.join(backup, "proftpd-fragment"))
    running = _proftpd_running(host)
    try:
        # beside conf.d, not in it: ProFTPd includes every file there, temporary ones too
        _install(path, None if content is None else content.encode(), os.path.dirname(os.path.dirname(path)))
    except OSError as e:
        raise _os_error("cannot write %s; nothing was changed" % path, e) from None
    ok, out = _proftpd_test([])
    if not ok:
        problem = _put_back_fragment(path, previous, like)
        lines = ["proftpd -t rejected the configuration, previous fragment restored:", *_proftpd_says(out)]
        if problem is not None:
            lines[0] = "proftpd -t rejected the configuration:"
            lines.append(problem)
        raise FtpError("\n".join(lines))
    said = PROFTPD_NOT_RUNNING  # a stopped ProFTPd reads the file when it starts
    if running:
        ok, out = _restart_proftpd(host)
        if not ok:
            raise _fragment_back(path, marker, previous, like, host, out.splitlines(),
                                 "ProFTPd did not restart with the new fragment, previous fragment restored")
        said = "proftpd restarted"
    _marker_or_error(marker, None if content is None else proftpd_digest(content), said)
    return said


def proftpd_restore(path: str, marker: str, backup: str, host: Host = Host()) -> str:
    """Put the fragment ``proftpd_apply`` saved in ``backup`` back at ``path`` (or remove
    it: there was none), restart a running ProFTPd; the marker then holds its digest
    (removed when there is no fragment, or when ProFTPd did not come back). For a
    revert (commit-confirm) or a transaction rolled back after the apply succeeded.
    FtpError when it fails. Returns what it did (one line)."""
    previous, like = _saved(os.path.join(backup, "proftpd-fragment"))
    running = _proftpd_running(host)
    problem = _put_back_fragment(path, previous, like)
    if problem is not None:
        raise FtpError(problem)
    said = PROFTPD_NOT_RUNNING
    if running:
        ok, out = _restart_proftpd(host)
        if not ok:
            _remove(marker)  # what ProFTPd runs with is unknown now: the next run restarts it
            raise FtpError("\n".join(["previous fragment put back at %s, but ProFTPd did not come back "
                                      "on it" % path, *out.splitlines()]))
        said = "proftpd restarted"
    _marker_or_error(marker, None if previous is None else _sha256(previous), said)
    return "previous fragment put back; %s" % said


# --- pure-ftpd -----------------------------------------------------------------------------


def pureftpd_service(host: Host) -> Optional[str]:
    """The service of the installed flavour (froxlor installs pure-ftpd-mysql), or None."""
    for name in PUREFTPD_SERVICES:
        units = [host.at(d + name + ".service") for d in ("/lib/systemd/system/", "/etc/systemd/system/")]
        if any(os.path.exists(u) for u in units) or os.access(host.at("/etc/init.d/" + name), os.X_OK):
            return name
    return None


def _pureftpd_running(service: str, host: Host) -> bool:
    if _systemd(host):
        return _is_active(service)
    return _pid_running(host.at("/run/pure-ftpd/pure-ftpd.pid"))


def _restart_pureftpd(service: str, host: Host) -> Tuple[bool, str]:
    """Restart pure-ftpd (it has no reload) and check it runs again. (ok, its output)."""
    if _systemd(host):
        rc, out = _run(["systemctl", "restart", service], RESTART_TIMEOUT)
    else:
        rc, out = _run([host.at("/etc/init.d/" + service), "restart"], RESTART_TIMEOUT)
    ok = rc == 0 and _settled(lambda: _pureftpd_running(service, host), PUREFTPD_SETTLE)
    return ok, out.strip()


def _put_pureftpd(files: Dict[str, Optional[bytes]], likes: Dict[str, Optional[str]], host: Host) -> None:
    """Make conf/NAME hold each value (None: no such file). Each goes in by one rename
    from beside conf/: the wrapper reads every file in conf/ as an option, so no
    temporary file there; it reads them only when pure-ftpd (re)starts."""
    conf = host.at("/etc/pure-ftpd/conf")
    os.makedirs(conf, exist_ok=True)
    for name, data in files.items():
        _install(os.path.join(conf, name), data, os.path.dirname(conf), like=likes.get(name))


def _put_back_pureftpd(files: Dict[str, Optional[bytes]], likes: Dict[str, Optional[str]],
                       host: Host) -> Optional[str]:
    """``_put_pureftpd`` of the saved files; None, or what went wrong."""
    try:
        _put_pureftpd(files, likes, host)
    except OSError as e:
        return "pure-ftpd's previous files could not be put back: %s" % (e.strerror or e)
    return None


def _first_line(data: Optional[bytes]) -> Optional[str]:
    """A wrapper file's value as the state read reports it (first line, stripped)."""
    if data is None:
        return None
    lines = data.decode(errors="replace").split("\n")
    return lines[0].strip()


def _saved_pureftpd(backup: str) -> Tuple[Dict[str, Optional[bytes]], Dict[str, Optional[str]]]:
    files: Dict[str, Optional[bytes]] = {}
    likes: Dict[str, Optional[str]] = {}
    for name in PUREFTPD_FILES:
        files[name], likes[name] = _saved(os.path.join(backup, "pureftpd-" + name))
    return files, likes


def _running_pureftpd(host: Host) -> Optional[str]:
    """The service of the installed pure-ftpd when it runs (None: not installed or stopped:
    it reads its files when it starts)."""
    service = pureftpd_service(host)
    return service if service is not None and _pureftpd_running(service, host) else None


def pureftpd_apply(range_text: str, force_ip: Optional[str], marker: str, backup: str,
                   host: Host = Host()) -> str:
    """Make pure-ftpd offer ``range_text`` ("LOW HIGH") and ``force_ip`` (None: no
    ForcePassiveIP file). A running pure-ftpd is restarted and must come back; if it
    does not, the previous files (saved in ``backup`` first, for ``pureftpd_restore``)
    are put back and it is restarted on them (the marker removed if that fails too),
    FtpError. On success the marker holds ``pureftpd_digest``. Returns one line."""
    try:
        os.makedirs(backup, mode=0o700, exist_ok=True)
        conf = host.at("/etc/pure-ftpd/conf")
        for name in PUREFTPD_FILES:
            _save(os.path.join(conf, name), os.path.join(backup, "pureftpd-" + name))
    except OSError as e:
        raise _os_error("cannot save pure-ftpd's files in %s; nothing was changed" % backup, e) from None
    previous, likes = _saved_pureftpd(backup)
    service = _running_pureftpd(host)
    try:
        _put_pureftpd({"PassivePortRange": (range_text + "\n").encode(),
                       "ForcePassiveIP": None if force_ip is None else (force_ip + "\n").encode()},
                      {}, host)
    except OSError as e:
        problem = _put_back_pureftpd(previous, likes, host)
        raise FtpError("cannot write pure-ftpd's files: %s; %s" % (
            e.strerror or e, problem or "previous files restored")) from None
    if service is None:
        said = PUREFTPD_NOT_RUNNING
    else:
        ok, out = _restart_pureftpd(service, host)
        if not ok:
            raise _pureftpd_back(service, marker, previous, likes, host, out)
        said = "pure-ftpd restarted (%s)" % service
    _marker_or_error(marker, pureftpd_digest(range_text, force_ip), said)
    return said


def _pureftpd_back(service: str, marker: str, previous: Dict[str, Optional[bytes]],
                   likes: Dict[str, Optional[str]], host: Host, out: str) -> FtpError:
    """After a failed restart: the previous files back, pure-ftpd restarted on them (the
    marker removed if it does not come back: what runs is unknown, the next run
    restarts it). The error to raise."""
    lines = ["pure-ftpd did not come back with the new passive range (%s), previous files restored"
             % service, *out.splitlines()]
    problem = _put_back_pureftpd(previous, likes, host)
    if problem is not None:
        lines.append(problem)
    if problem is not None or not _restart_pureftpd(service, host)[0]:
        _remove(marker)
        lines.append("pure-ftpd did not come back on the previous files either")
    return FtpError("\n".join(lines))


def _marker_or_error(marker: str, digest: Optional[str], said: str) -> None:
    """Write the marker after a successful restart; FtpError (saying what was done) if not."""
    try:
        _write_marker(marker, digest)
    except OSError as e:
        raise _os_error("%s; but the marker %s could not be written" % (said, marker), e) from None


def pureftpd_restore(marker: str, backup: str, host: Host = Host()) -> str:
    """Put the files ``pureftpd_apply`` saved in ``backup`` back, restart a running
    pure-ftpd; the marker then holds their digest (removed when there is no
    PassivePortRange file, or when pure-ftpd did not come back). FtpError when it
    fails. Returns one line."""
    previous, likes = _saved_pureftpd(backup)
    service = _running_pureftpd(host)
    problem = _put_back_pureftpd(previous, likes, host)
    if problem is not None:
        raise FtpError(problem)
    said = PUREFTPD_NOT_RUNNING
    if service is not None:
        ok, out = _restart_pureftpd(service, host)
        if not ok:
            _remove(marker)  # what pure-ftpd runs with is unknown now: the next run restarts it
            raise FtpError("\n".join(["pure-ftpd's previous files put back, but it did not come back "
                                      "on them (%s)" % service, *out.splitlines()]))
        said = "pure-ftpd restarted (%s)" % service
    range_text = _first_line(previous["PassivePortRange"])
    force_ip = _first_line(previous["ForcePassiveIP"]) or None  # the state read: "" is none
    digest = None if range_text is None else pureftpd_digest(range_text, force_ip)
    _marker_or_error(marker, digest, said)
    return "pure-ftpd's previous files put back; %s" % said
