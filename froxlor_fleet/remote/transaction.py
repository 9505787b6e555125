"""The host program's transaction, ON THE MANAGED HOST (see ``fleethost.py``, which
runs ``step`` detached from the SSH session): under the host lock, try the new FTP
config, plan UFW from the host's own files, guard, arm commit-confirm from that plan,
apply with the old passive range still open, switch the FTP daemon, close the old
range, verify. ``undo`` takes back what the undo record says one transaction did.

FROXLOR_FLEET_ROOT (tests): a folder standing in for / (UFW's, the FTP daemons' and
our own files); ufw's iptables calls then go to ROOT/sbin.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import tempfile
import time

# Its siblings, in the package or on the host (fleethost.py makes its folder the package)
from . import commit, ftpapply, ufw_apply
from .ufwmodel import Want, needs_confirming

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (mypy: true)
if TYPE_CHECKING:
    from typing import Any, Callable, Dict, List, Optional, Tuple

    Say = Callable[[str], None]

ARMED = "froxlor-fleet:armed"  # the last line of an armed run: ARMED TOKEN DEADLINE
# The only line of a run told not to wait (lock.wait 0) that found the host lock held:
# it changed and armed nothing. The control side (operations/hostprogram._transaction) sends every
# request so first, says at once that it waits, then sends it again with the real wait:
# pyinfra shows a command's output only when the command ends.
BUSY = "froxlor-fleet:busy"
NETFILTER_ANSWERS = "netfilter-answers.json"  # ufw_apply._Store: in commit.Paths.state_dir
EXIT_LOCK = 75  # EX_TEMPFAIL: the lock was not free within lock.wait (0: the line BUSY)


class Context:
    """Where things are: / on a host; a folder in tests (FROXLOR_FLEET_ROOT)."""

    def __init__(self, root: str = "/") -> None:
        self.root = root.rstrip("/") or "/"
        self.paths = commit.Paths(root=self.root)
        self.ftp_host = ftpapply.Host(root="" if self.root == "/" else self.root)

    @classmethod
    def from_env(cls) -> Context:
        return cls(os.environ.get("FROXLOR_FLEET_ROOT", "/"))

    @property
    def testing(self) -> bool:
        return self.root != "/"

    def ufw(self) -> ufw_apply.Ufw:
        if not self.testing:
            return ufw_apply.Ufw()
        root = self.root

        def make_ui() -> Any:
            import ufw.common
            import ufw.frontend

            ufw.common.do_checks = False
            ufw.common.iptables_dir = os.path.join(root, "sbin")
            return ufw.frontend.UFWFrontend(False, rootdir=root, datadir=root)

        return ufw_apply.Ufw(make_ui, os.path.join(root, "ufw.lock"))


# --- undoing a transaction (the revert timer, a failed switch, the boot hook) ---------------

def undo(record: Dict[str, Any], ctx: Context) -> Tuple[bool, str]:
    """Undo what ``record`` says this transaction did: UFW first (SSH is what a revert
    is for), then the FTP daemon's files."""
    said: List[str] = []
    ok = True
    if record.get("ufw"):
        u = ctx.ufw()
        try:
            done, line = ufw_apply.revert(record["ufw"], u.make_ui, u.lockfile)
        except Exception as e:  # one line in the log, never a traceback
            done, line = False, "UFW: %s: %s" % (type(e).__name__, e)
        ok = ok and done
        said.append(line)
    ftp = record.get("ftp")
    if ftp and ftp.get("switched"):
        try:
            said.append("FTP: " + restore_ftp(ftp, ctx))
        except ftpapply.FtpError as e:
            ok = False
            said.append("FTP: %s" % e)
    return ok, "; ".join(said) or "nothing to undo"


def restore_ftp(ftp: Dict[str, Any], ctx: Context) -> str:
    if ftp["daemon"] == "pureftpd":
        return ftpapply.pureftpd_restore(ftp["marker"], ftp["backup"], ctx.ftp_host)
    return ftpapply.proftpd_restore(ftp["path"], ftp["marker"], ftp["backup"], ctx.ftp_host)


# --- the transaction ----------------------------------------------------------------------

def apply_ftp(ftp: Dict[str, Any], backup: str, ctx: Context) -> str:
    if ftp["daemon"] == "none":  # ProFTPd is gone: its leftover fragment only goes
        if os.path.lexists(ftp["path"]):
            os.remove(ftp["path"])
        return "removed %s (ProFTPd is not installed)" % ftp["path"]
    if ftp["daemon"] == "pureftpd":
        return ftpapply.pureftpd_apply(ftp["range"], ftp.get("force_ip"), ftp["marker"], backup,
                                       ctx.ftp_host)
    return ftpapply.proftpd_apply(ftp["path"], ftp.get("content"), ftp["marker"], backup,
                                  ctx.ftp_host)


class Transaction:
    """One host's change (see the module docstring). ``say`` prints a line."""

    def __init__(self, request: Dict[str, Any], ctx: Context, say: Say, lock_fd: Optional[int],
                 tmp: str) -> None:
        self.request = request
        self.ctx = ctx
        self.say = say
        self.lock_fd = lock_fd
        self.tmp = tmp
        self.ufw_request: Optional[Dict[str, Any]] = request.get("ufw")
        self.ftp: Optional[Dict[str, Any]] = request.get("ftp")
        self.keep = [Want(**w) for w in (self.ftp or {}).get("keep", [])]
        self.record: Dict[str, Any] = {}
        self.armed: Optional[commit.Armed] = None
        self.ufw = ctx.ufw()  # a fresh frontend for each step under ufw's lock

    def revert(self, record: Dict[str, Any]) -> Tuple[bool, str]:
        return undo(record, self.ctx)

    def run(self) -> int:
        # Other runs' pending reverts, before any change, armed or not (commit.arm relies
        # on it): the only place they are settled.
        commit.settle_pending(self.ctx.paths, self.say, self.revert)
        if self.ftp and self.ftp["daemon"] == "proftpd":
            work = tempfile.mkdtemp(dir=self.tmp)
            ftpapply.proftpd_check(self.ftp["path"], self.ftp.get("content") or "", work)
        if self.ufw_request is not None:
            self.ufw_first()
        try:
            if self.ftp:
                self.switch_ftp()
        except BaseException as e:
            self.fail(e)
            raise
        if self.ufw_request is not None and self.keep:
            self.ufw_close_old_range()
        if self.armed is not None:
            commit.update_undo(self.armed, self.record)
            deadline = self.armed.started()
            self.say("%s %s %d" % (ARMED, self.armed.token, deadline))
        return 0

    def ufw_first(self) -> None:
        """Plan, guard, arm, apply: the old passive range still open."""
        assert self.ufw_request is not None
        request = self.ufw_request
        with self.ufw as u:
            state = u.state()
            plan = u.plan(request, state, self.keep)
            ufw_apply.guard(request, state, plan)
            self._report_fresh_plan(request, plan)
            reach = needs_confirming(plan, enable=request["enabled"] and not ufw_apply.active(state),
                                     incoming_changes=request["incoming"] != state["incoming"])
            confirm = self.request.get("confirm") or {}
            # Until the change is read back, what the plan would do (a revert skips what
            # did not happen).
            self.record["ufw"] = ufw_apply.predicted_undo(state, plan, request)
            if reach and confirm.get("timeout"):
                self.armed = commit.arm(self.ctx.paths, int(confirm["timeout"]), confirm["token"],
                                        dict(self.record), self.lock_fd, self.say, self.revert)
            try:
                out, after = u.change(request, state, plan, self.keep)
            except BaseException as e:
                self.fail(e)
                raise
            self.record["ufw"] = ufw_apply.undo_record(state, after)
        for line in out:
            if line and line.strip():
                self.say("ufw: " + line.strip())

    def _report_fresh_plan(self, request: Dict[str, Any], plan: Any) -> None:
        expect = request.get("expect")
        fresh = {"add": [" ".join(w.ufw_args()) for w in plan.add],
                 "delete": [r.tuple_text() for r in plan.delete]}
        if expect is not None and expect != fresh:
            self.say("froxlor-fleet: the host changed while this run waited for the lock; "
                     "applied a fresh plan (%d to add, %d to delete)" % (len(plan.add), len(plan.delete)))

    def switch_ftp(self) -> None:
        assert self.ftp is not None
        backup = os.path.join(self.armed.dir if self.armed else self.tmp, "ftp-backup")
        os.mkdir(backup, 0o700)
        self.record["ftp"] = {"daemon": self.ftp["daemon"], "path": self.ftp.get("path"),
                              "marker": self.ftp["marker"], "backup": backup, "switched": False}
        if self.armed is not None:
            commit.update_undo(self.armed, self.record)
        line = apply_ftp(self.ftp, backup, self.ctx)
        self.record["ftp"]["switched"] = self.ftp["daemon"] != "none"
        self.say("ftp: " + line)

    def ufw_close_old_range(self) -> None:
        assert self.ufw_request is not None
        request = self.ufw_request
        try:
            with self.ufw as u:
                state = u.state()
                plan = u.plan(request, state)
                ufw_apply.guard(request, state, plan)
                out, after = u.change(request, state, plan)
                self.record["ufw"] = ufw_apply.undo_record(state, after, self.record.get("ufw"))
        except ufw_apply.StepError as e:
            raise ufw_apply.StepError("the FTP daemon uses the new passive range, but UFW could "
                                      "not close the previous one: %s" % e) from e
        for line in out:
            if line and line.strip():
                self.say("ufw: " + line.strip())
        self.say("ufw: closed the previous passive range")

    def fail(self, error: BaseException) -> None:
        """A step failed after UFW changed: undo this transaction's UFW change (the FTP
        daemon's step puts its own files back itself)."""
        why = str(error) or type(error).__name__
        if self.armed is not None:
            commit.update_undo(self.armed, self.record)
            self.armed.failed(why)
            self.armed = None
            self.say("froxlor-fleet: UFW is back on the previous passive range and rules: "
                     "this run's UFW change is undone")
        elif self.record.get("ufw"):
            ok, line = undo({"ufw": self.record["ufw"]}, self.ctx)
            if ok:
                self.say("froxlor-fleet: UFW is back on the previous passive range and rules: "
                         "this run's UFW change is undone")
            else:
                self.say("froxlor-fleet: undoing this run's UFW change failed too: %s" % line)


# --- under the host lock ---------------------------------------------------------------

class LockBusy(Exception):
    """The host lock is held and the request said not to wait for it."""


def _try_lock(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except OSError:
        return False


def take_lock(path: str, wait: float, say: Say) -> int:
    """The host lock's fd, waiting up to ``wait`` s. Raises ``LockBusy`` when it is held
    and ``wait`` is 0, ``TimeoutError`` when it stayed held."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    if _try_lock(fd):
        return fd
    if wait <= 0:
        os.close(fd)
        raise LockBusy(path)
    # The control side said "waiting" when it began (this output shows only at the
    # end): say how long it took.
    started = time.monotonic()
    while time.monotonic() < started + wait:
        time.sleep(0.2)
        if _try_lock(fd):
            say("froxlor-fleet: waited %.1f s for another run's lock on this host"
                % (time.monotonic() - started))
            return fd
    os.close(fd)
    raise TimeoutError("gave up after %d s waiting for %s" % (wait, path))


def remove_leftovers(base: str, mine: str) -> None:
    """Temp folders of steps that were killed (SIGKILL: no cleanup ran): no step holds
    their lock, and they are older than a minute."""
    for name in os.listdir(base):
        path = os.path.join(base, name)
        if (not name.startswith("froxlor-fleet.") or path == mine or os.path.islink(path)
                or not os.path.isdir(path) or time.time() - os.path.getmtime(path) < 60):
            continue
        try:
            fd = os.open(path, os.O_RDONLY)
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            shutil.rmtree(path, ignore_errors=True)
        except OSError:
            pass
        finally:
            os.close(fd)


def step(request: Dict[str, Any], ctx: Context) -> int:
    """The detached step's body: lock, temp folder, the transaction, one-line errors."""
    say: Say = lambda line: print(line, flush=True)  # noqa: E731
    lock = request.get("lock") or {}
    lock_path = os.path.join(ctx.root, str(lock["path"]).lstrip("/")) if ctx.testing else lock["path"]
    base = os.path.dirname(lock_path)
    tmp = tempfile.mkdtemp(prefix="froxlor-fleet.", dir=base)
    tmp_fd = os.open(tmp, os.O_RDONLY)
    fcntl.flock(tmp_fd, fcntl.LOCK_EX)  # this step's: the folder is in use
    lock_fd = None
    try:
        remove_leftovers(base, tmp)
        try:
            lock_fd = take_lock(lock_path, float(lock["wait"]), say)
        except LockBusy:
            say(BUSY)
            return EXIT_LOCK
        except TimeoutError as e:
            say("froxlor-fleet: %s" % e)
            return EXIT_LOCK
        # ufw's netfilter tests, once per boot (written under the lock just taken)
        common = ufw_apply.import_ufw(os.path.join(ctx.paths.state_dir, NETFILTER_ANSWERS))
        try:
            return Transaction(request, ctx, say, lock_fd, tmp).run()
        except ufw_apply.StepError as e:
            say("froxlor-fleet: %s" % e)
            return ufw_apply.exit_status(e)
        except (ftpapply.FtpError, commit.CommitError) as e:
            say("froxlor-fleet: %s" % e)
            return 1
        except common.UFWError as e:
            say("froxlor-fleet: ufw: %s" % str(e.value).strip())
            return 1
    except ImportError:
        say("froxlor-fleet: ufw's Python modules are missing on this host")
        return 1
    except Exception as e:  # anything else: one line, never a traceback
        say("froxlor-fleet: unexpected error: %s: %s" % (type(e).__name__, e))
        return 1
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        os.close(tmp_fd)
        if lock_fd is not None:  # (an armed change's timer, a fork, holds its own)
            os.close(lock_fd)


