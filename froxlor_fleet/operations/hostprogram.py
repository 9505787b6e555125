"""The host program, control side: placed once per version, then one transaction a host.

``remote/fleethost.py`` and the modules it imports are placed on a host in
``catalog.PROGRAM_DIR/<version>/`` (root-only; the version is a hash of their texts:
``model/program.py``).
The state fact reports each placed file's sha256 and whether anyone but root could
write it, so a host gets the program again only when that differs: a no-op run stays
at one remote command. A change is then one command, the transaction (the request on
stdin: an argument may hold at most 128 KiB; on a host without this version, the
program's files before it, placed by ``remote/place.py`` in the same command), and,
when the host armed it, the confirmation over a new SSH connection (``confirm.py``).

pyinfra shows a command's output only when the command ends, so what the operator must
see while it happens is said here, before the command: a passive-range switch, and a
wait for the host lock. The transaction is first sent with lock wait 0: when another run
holds the lock the program changes nothing and says ``transaction.BUSY``; then the
wait is said and the request sent again with the real wait (a free lock: one command).
"""

from __future__ import annotations

import json
import time
from functools import cache
from typing import TYPE_CHECKING, Any

from pyinfra import logger
from pyinfra.api import FunctionCommand, QuoteString, StringCommand

from ..ftpconf.daemon import DAEMON_TITLES
from ..model.catalog import LOCK_PATH, LOCK_WAIT
from ..model.program import folder, sums, texts
from ..remote import program as program_text
from ..remote.transaction import ARMED, BUSY
from . import confirm
from .passive_switch import daemon_range

if TYPE_CHECKING:
    from pyinfra.api.host import Host
    from pyinfra.api.state import State

    from ..facts import HostState

# Run python3 with the arguments given (the program's path, or ``-c`` and place.py's
# text) under the interpreter ufw itself uses, from its #! line (the first python3 on
# PATH may be another Python without ufw's modules), isolated (-I: no PYTHON* variables,
# no user site, no script folder on the path: what runs is what was placed) and without
# site (-S: the program adds ufw's folder itself). Shell builtins only: every process a
# host starts is its cost.
RUNNER = ('for ufw in /usr/sbin/ufw /sbin/ufw /usr/bin/ufw; do [ -f "$ufw" ] && break; done; '
          '{ read -r py; } 2>/dev/null < "$ufw"; py=${py#"#!"}; py=${py# }; py=${py%% *}; '
          'case $py in /*python*) ;; *) py=/usr/bin/python3 ;; esac; '
          'exec "$py" -I -S "$@"')

# Only when ufw is missing, before the program is placed: apt installs ufw (which brings
# its python3, the one the program runs under).
INSTALL_UFW = "DEBIAN_FRONTEND=noninteractive apt-get install -y -q ufw >/dev/null"


def placed(current: HostState) -> bool:
    """Is this version's program on the host, intact and writable by root only?"""
    return current.program == sums() and not current.program_unsafe


def run_command(*args: str) -> StringCommand:
    """``fleethost.py ARGS`` on the host, under ufw's python3."""
    return StringCommand("sh", "-c", QuoteString(RUNNER), "froxlor-fleet",
                         QuoteString(f"{folder()}/fleethost.py"), *args)


def place_and_apply_command() -> StringCommand:
    """``place.py``: this version's files placed (stdin: ``program_stdin``), then
    ``fleethost.py apply`` with the request that follows them on stdin."""
    lines = [QuoteString(f"{digest}  {name}") for name, digest in sorted(sums().items())]
    return StringCommand("sh", "-c", QuoteString(RUNNER), "froxlor-fleet", "-c",
                         QuoteString(program_text("place.py")), QuoteString(folder()), *lines)


@cache
def program_stdin() -> str:
    """The files ``place.py`` places: one line of JSON, the request follows."""
    return json.dumps(texts(), sort_keys=True) + "\n"


def commands(current: HostState, request: dict[str, Any]) -> list[StringCommand | FunctionCommand]:
    """What changes a host: ufw if it is missing, then the transaction (which places this
    version's program first when the host does not have it: one command)."""
    out: list[StringCommand | FunctionCommand] = []
    install = request.get("ufw") is not None and not current.ufw.installed
    if install:
        out.append(StringCommand("sh", "-c", QuoteString(INSTALL_UFW)))
    out.append(FunctionCommand(_transaction, (json.dumps(request),),
                               {"switching": switch_line(current, request.get("ftp")),
                                "place": install or not placed(current)}))
    return out


def _two_ports(text: object) -> tuple[int, int] | None:
    """``"LOW HIGH"`` (as ``ftpplan.render_fragment`` and ``ftpplan.pureftpd_files``
    write a range; pure-ftpd also reads ``LOW:HIGH``) as ``(LOW, HIGH)``."""
    words = str(text).replace(":", " ").split()
    return (int(words[0]), int(words[1])) if len(words) == 2 and all(w.isdigit() for w in words) else None


def _wanted_range(ftp: dict[str, Any]) -> tuple[int, int] | None:
    """The passive range the FTP part gives its daemon (``None``: the fragment goes)."""
    if ftp["daemon"] == "pureftpd":
        return _two_ports(ftp.get("range"))
    for line in (ftp.get("content") or "").splitlines():
        directive, _, value = line.strip().partition(" ")
        if directive == "PassivePorts":
            return _two_ports(value)
    return None


def switch_line(current: HostState, ftp: dict[str, Any] | None) -> str | None:
    """What to say right before a transaction that moves an FTP daemon's passive range
    ("switching ProFTPd's passive range 50000:50100 -> 50200:50300 (restart)"), or
    ``None``: no FTP part, or the range the daemon uses stays."""
    if not ftp or ftp["daemon"] not in DAEMON_TITLES:
        return None
    new, old = _wanted_range(ftp), daemon_range(current, ftp["daemon"])
    if new is None or new == old:
        return None
    name = DAEMON_TITLES[ftp["daemon"]]
    was = f"{old[0]}:{old[1]}" if old else "(none set)"
    # ftpapply restarts a running daemon only; a stopped one reads its files at start
    how = "restart" if ftp["daemon"] in current.ftp.running else "not running: no restart"
    return f"switching {name}'s passive range {was} -> {new[0]}:{new[1]} ({how})"


def _apply(state: State, host: Host, request_text: str, arguments: dict[str, Any],
           place: bool = False) -> tuple[bool, list[str]]:
    """``fleethost.py apply``, the request on stdin (``place``: after placing the
    program, in the same command): (ok, output lines)."""
    command, stdin = run_command("apply"), request_text
    if place:
        command, stdin = place_and_apply_command(), program_stdin() + request_text
    ok, output = host.run_shell_command(command, _stdin=stdin,
                                        print_output=state.print_output, **arguments)
    return ok, [line.line for line in output.combined_lines] if output else []


def _without_wait(request: dict[str, Any]) -> str:
    return json.dumps({**request, "lock": {**request["lock"], "wait": 0}})


def _transaction(state: State, host: Host, request_text: str, switching: str | None = None,
                 place: bool = False) -> bool:
    """Run the transaction; when the host armed it, confirm over a new SSH connection.
    A failure fails this host with the program's own lines. ``switching``: said first
    (``switch_line``)."""
    request = json.loads(request_text)
    if switching:
        host.log(switching, logger.info)
    arguments = confirm.run_arguments(state, host)
    ok, lines = _apply(state, host, _without_wait(request), arguments, place)
    if not ok and BUSY in lines:  # (placed by then)  # nothing changed: say so now, then wait on the host
        host.log("another run holds the lock on this host; waiting up to "
                 f"{request['lock']['wait']} s", logger.info)
        ok, lines = _apply(state, host, request_text, arguments)
    if not ok:
        # from the program's first own line on (a daemon's message follows it)
        first = next((i for i, line in enumerate(lines) if line.startswith("froxlor-fleet:")), None)
        reasons = lines[first:] if first is not None else lines[-3:]
        for line in reasons or ["the host program failed without a message"]:
            host.log_styled(line.removeprefix("froxlor-fleet: "), fg="red", log_func=logger.error)
        return False
    for line in lines:
        if line.startswith("froxlor-fleet: ") and not state.print_output:
            host.log(line.removeprefix("froxlor-fleet: "), logger.info)
    armed = [line.split() for line in lines if line.startswith(ARMED + " ")]
    if not armed:
        return True
    token = armed[-1][1]
    if token != request["confirm"]["token"]:
        host.log_styled(f"the host armed an unknown token {token!r}", fg="red", log_func=logger.error)
        return False
    return confirm.confirm_now(state, host, run_command("confirm", confirm.check_token(token)),
                               time.time() + int(request["confirm"]["timeout"]))


def request(*, ufw: dict[str, Any] | None, ftp: dict[str, Any] | None,
            confirm_timeout: int) -> dict[str, Any]:
    """The transaction's request: the UFW part, the FTP part, the host lock's path and
    wait, and (``confirm_timeout`` > 0: over SSH) a token to arm a revert with."""
    document: dict[str, Any] = {"ufw": ufw, "ftp": ftp,
                                "lock": {"path": LOCK_PATH, "wait": LOCK_WAIT}}
    if confirm_timeout > 0:
        document["confirm"] = {"timeout": confirm_timeout, "token": confirm.new_token()}
    return document
