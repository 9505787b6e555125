"""The froxlor-fleet host program, ON THE MANAGED HOST: one transaction per host.

Placed once per version in a root-only folder (``catalog.PROGRAM_DIR``/<version>/, with
``ufwmodel.py``, ``ufw_apply.py``, ``ftpapply.py`` and ``commit.py`` beside it) and run
under ufw's own python3 (stdlib only, Python 3.7+ syntax)::

    fleethost.py apply              the request (JSON) on stdin
    fleethost.py confirm TOKEN      over a NEW SSH connection: keep the armed change
    fleethost.py status             pending reverts, one a line
    fleethost.py boot LOCK WAIT     optional boot hook (see commit.py)

``apply`` runs detached from the SSH session (a dropped connection can't cut a
half-made change short), relays its output, and takes the host lock (``lock.path``,
waiting ``lock.wait`` seconds: the control side's limits, not declared here). Under
the lock, in this order (any failure before 4 leaves the host as it was):

1. the new ProFTPd fragment is tried with ``proftpd -t`` on a copy of the configuration;
2. UFW is planned from the host's own files, the lockout guard checks the plan, and a
   change that could affect who reaches the host is *armed* (commit-confirm) from this
   plan: a revert timer undoes exactly this transaction unless confirmed in time;
3. UFW gets the plan with the FTP daemon's old passive range still open (``ftp.keep``);
4. the FTP daemon switches (write, test, restart, loaded marker); if it can't, it is
   back on its old files and UFW's change is undone;
5. UFW closes the old range; the result is verified.

The last line of a successful armed run is ``froxlor-fleet:armed TOKEN DEADLINE``.
The transaction itself is ``transaction.py``; this file is the command line and the
detached relay, and imports only what each command needs (each host process pays for
every module it loads).

The host-side modules import each other one way, relative to their package
(``from . import commit``): in the installed package that is ``froxlor_fleet.remote``;
on the host, where this file runs as a file (``python3 -I``: no package, no script
folder on the path), its folder is made the package ``HOST_PACKAGE`` first.

What a host process loads is its cost (the hosts' CPU bounds a rollout): ``confirm``
and ``status`` load ``commit.py`` and the few stdlib modules it needs, not ufw; no host
module imports ``typing`` (its names are for mypy only: ``TYPE_CHECKING``) and only the
modules a change needs use ``dataclasses`` (tests/test_fleethost_imports.py).
"""

from __future__ import annotations

import os
import sys
from types import ModuleType

# typing.TYPE_CHECKING without importing typing (~10 ms a process on a host); mypy
# takes any TYPE_CHECKING as true.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable, Dict, List, Optional, Tuple

EXIT_USAGE = 64
HOST_PACKAGE = "froxlor_fleet_host"  # this file's folder on the host, as a package


# --- detached ---------------------------------------------------------------------------

def _forward(source: int, target: int) -> None:
    """Copy ``source`` to ``target`` until EOF; once ``target`` is gone (the SSH session
    dropped), keep draining so the step never blocks on its own output."""
    alive = True
    while True:
        data = os.read(source, 65536)
        if not data:
            return
        if alive:
            try:
                os.write(target, data)
            except OSError:
                alive = False


def detached(body: Callable[[], int]) -> int:
    """Run ``body`` detached and relay its output and exit status. The step is forked
    twice (the middle process exits at once): it is nobody's child but init's and has a
    session of its own, so a dropped SSH session, or a kill of everything the session
    started, can't stop it. Its exit status comes back through a pipe of its own."""
    import signal
    import threading

    read_end, write_end = os.pipe()
    status_r, status_w = os.pipe()
    sys.stdout.flush()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the step's side; its effects are tested
        rc = 70
        try:
            os.close(read_end)
            os.close(status_r)
            os.setsid()
            if os.fork():
                os._exit(0)  # the middle process: the step is now an orphan
            signal.signal(signal.SIGHUP, signal.SIG_IGN)
            signal.signal(signal.SIGPIPE, signal.SIG_IGN)
            signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
            inner_r, inner_w = os.pipe()
            forward = threading.Thread(target=_forward, args=(inner_r, write_end), daemon=True)
            forward.start()
            null = os.open(os.devnull, os.O_RDONLY)
            os.dup2(null, 0)
            os.dup2(inner_w, 1)
            os.dup2(inner_w, 2)
            os.close(inner_w)
            rc = body()
            sys.stdout.flush()
            sys.stderr.flush()
            os.close(1)
            os.close(2)
            forward.join(5)
        finally:
            try:
                os.write(status_w, b"%d" % rc)
            except OSError:
                pass
            os._exit(rc)
    os.close(write_end)
    os.close(status_w)
    os.waitpid(pid, 0)  # the middle process, gone at once
    _forward(read_end, sys.stdout.fileno())
    status = os.read(status_r, 16)
    return int(status) if status.strip().isdigit() else 70


# --- the command line -----------------------------------------------------------------------

def _package() -> str:
    """The package of the host-side modules (see the module docstring)."""
    if __package__:
        return __package__
    if HOST_PACKAGE not in sys.modules:
        package = ModuleType(HOST_PACKAGE)
        package.__path__ = [os.path.dirname(os.path.abspath(__file__))]
        sys.modules[HOST_PACKAGE] = package
    return HOST_PACKAGE


def _sibling(name: str) -> ModuleType:
    """``commit`` or ``transaction`` beside this file, which import theirs relatively."""
    import importlib

    return importlib.import_module("." + name, _package())


def _commit() -> ModuleType:
    return _sibling("commit")


def _transaction() -> ModuleType:
    return _sibling("transaction")


def apply(raw: bytes) -> int:
    """The request is read whole before the step detaches (a dropped session can't cut
    it short); the step parses it, with the modules only it needs."""
    def body() -> int:
        import json

        txn = _transaction()
        try:
            request = json.loads(raw.decode("utf-8"))
        except ValueError as e:
            print("froxlor-fleet: unreadable request: %s" % e, flush=True)
            return EXIT_USAGE
        return int(txn.step(request, txn.Context.from_env()))

    return detached(body)


def main(argv: List[str], stdin: Optional[bytes] = None) -> int:
    """``stdin``: the request when ``place.py`` already read this process's stdin."""
    os.umask(0o077)
    sub, args = (argv[0], argv[1:]) if argv else ("", [])
    root = os.environ.get("FROXLOR_FLEET_ROOT", "/")
    if sub == "apply" and not args:
        return apply(sys.stdin.buffer.read() if stdin is None else stdin)
    if sub in ("confirm", "status") and len(args) == (1 if sub == "confirm" else 0):
        commit = _commit()
        paths = commit.Paths(root=root.rstrip("/") or "/")
        if sub == "status":
            print("\n".join(commit.status(paths)))
            return 0
        rc, line = commit.confirm(paths, args[0])
        print(line if rc == 0 else "froxlor-fleet: %s" % line)
        return int(rc)
    if sub == "boot" and len(args) == 2:
        txn = _transaction()
        ctx = txn.Context.from_env()
        txn.ufw_apply.import_ufw()  # before the countdown: a revert must not fail on an import

        def revert(record: Dict[str, Any]) -> Tuple[bool, str]:
            ok, line = txn.undo(record, ctx)
            return bool(ok), str(line)

        return int(txn.commit.boot(ctx.paths, args[0], revert, lambda line: print(line),
                                   float(args[1])))
    print("usage: fleethost.py apply | confirm TOKEN | status | boot LOCK WAIT", file=sys.stderr)
    return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
