"""Commit-confirmed changes, control side (the host side is ``remote/commit.py``).

A change that could affect who reaches the host is *armed* by the host program in its
transaction, from its own plan: a revert timer, detached from SSH and from this
machine, undoes exactly that transaction unless confirmed. The control side then
proves it can still get in: it opens a **new** SSH connection (a new TCP connection
through the new firewall, with the host's own connection settings and ``_sudo``) and
runs ``fleethost.py confirm TOKEN`` (``confirm_now``). If that fails, nothing is
confirmed: the host undoes the change when the timer fires, and this host fails with
one line.
"""

from __future__ import annotations

import inspect
import re
import secrets
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from paramiko.ssh_exception import NoValidConnectionsError
from pyinfra import logger
from pyinfra.api import StringCommand
from pyinfra.connectors.ssh import SSHConnector
from pyinfra.connectors.util import make_unix_command, make_unix_command_for_host

if TYPE_CHECKING:
    from paramiko import SSHClient
    from pyinfra.api.host import Host
    from pyinfra.api.state import State

EXIT_TOO_LATE = 2  # commit.confirm: the revert has started or happened
TOKEN_RE = re.compile(r"[A-Za-z0-9-]{8,64}")

# Global arguments that decide how a command runs on the host: the confirmation runs
# as root the same way the deploy's commands do (sudo, su, doas, dzdo, shell, env).
_RUN_AS_PREFIXES = ("_sudo", "_use_sudo", "_preserve_sudo", "_su", "_use_su", "_preserve_su",
                    "_doas", "_dzdo")
RUN_AS_KEYS = tuple(
    key for key in inspect.signature(make_unix_command).parameters
    if (key.startswith(_RUN_AS_PREFIXES) and "askpass" not in key)
    or key in ("_shell_executable", "_env")
)


def new_token() -> str:
    """A fresh token: the time in hex (sorts by age) and 64 random bits."""
    return f"{int(time.time()):x}-{secrets.token_hex(8)}"


def check_token(token: object) -> str:
    if not isinstance(token, str) or not TOKEN_RE.fullmatch(token):
        raise ValueError(f"invalid confirmation token {token!r} (8-64 of A-Z a-z 0-9 -)")
    return token


def _one_line(text: object) -> str:
    return " ".join(str(text).split()) or "no message"


def run_arguments(state: State, host: Host) -> dict[str, Any]:
    """How the host's commands run (``_sudo``, ``_sudo_user``, ``_su_user``, ``_env``...):
    the executing operation's global arguments (operation kwargs, deploy kwargs, host
    data, config), else the host's data and config."""
    op_hash = host.nested_executing_op_hash or host.executing_op_hash
    arguments: Any = None
    if op_hash:
        try:
            arguments = state.get_op_data_for_host(host, op_hash).global_arguments
        except (KeyError, AttributeError):
            arguments = None
    if arguments is None:
        from pyinfra.api.arguments import pop_global_arguments

        arguments, _ = pop_global_arguments(state, host, {})
    return {key: arguments[key] for key in RUN_AS_KEYS if key in arguments}


@dataclass
class FreshResult:
    connected: bool
    exit_status: int | None  # None: the command did not complete
    output: str  # the command's output, or why it did not run

    @property
    def ok(self) -> bool:
        return self.connected and self.exit_status == 0

    @property
    def reason(self) -> str:
        if not self.connected or self.exit_status is None:
            return _one_line(self.output)
        last = [line for line in self.output.splitlines() if line.strip()]
        return _one_line(f"exit status {self.exit_status}" + (f": {last[-1]}" if last else ""))


def _connect_reason(error: BaseException) -> str:
    """One line; paramiko's "Unable to connect to port N" says why (refused, unreachable)."""
    reason = _one_line(error.args[0] if error.args else error)
    cause = error.__cause__ or error.__context__
    if isinstance(cause, NoValidConnectionsError):
        why = sorted({_one_line(getattr(e, "strerror", None) or e) for e in cause.errors.values()})
        reason += f": {', '.join(why)}"
    return reason


def _bound_connect(connector: SSHConnector, per_try: float) -> None:
    """This connector instance's connect, bounded in time: TCP connect (never longer
    than the host's own connect timeout), banner and auth each within ``per_try``.
    Explicit ``ssh_paramiko_connect_kwargs`` of the host still win."""
    base = connector.make_paramiko_kwargs

    def bounded() -> dict[str, Any]:
        kwargs = base()
        own = kwargs.get("timeout")
        kwargs["timeout"] = min(float(own), per_try) if own else per_try
        kwargs.setdefault("banner_timeout", per_try)
        kwargs.setdefault("auth_timeout", per_try)
        return kwargs

    connector.make_paramiko_kwargs = bounded  # type: ignore[method-assign]


def _ssh_run(state: State, host: Host, client: SSHClient, command: StringCommand,
             arguments: dict[str, Any], timeout: float) -> FreshResult:
    ends = time.monotonic() + timeout
    unix = make_unix_command_for_host(state, host, command, **dict(arguments))
    transport = client.get_transport()
    if transport is None or not transport.is_active():
        return FreshResult(True, None, "the new SSH connection closed before the command ran")
    channel = transport.open_session(timeout=timeout)
    try:
        channel.set_combine_stderr(True)
        channel.settimeout(timeout)
        channel.exec_command(unix.get_raw_value())
        channel.shutdown_write()
        chunks = []
        while True:
            if time.monotonic() > ends:
                raise TimeoutError()
            data = channel.recv(65536)
            if not data:
                break
            chunks.append(data)
        if not channel.status_event.wait(max(0.1, ends - time.monotonic())):
            raise TimeoutError()
        return FreshResult(True, channel.exit_status, b"".join(chunks).decode("utf-8", "replace"))
    except TimeoutError:
        return FreshResult(True, None, f"the command did not finish within {timeout:.0f} s")
    finally:
        channel.close()


def fresh_run(state: State, host: Host, command: str | StringCommand, timeout: float) -> FreshResult:
    """Run ``command`` over a NEW connection to ``host`` (see ``fresh_connection_check``)."""
    if isinstance(command, str):
        command = StringCommand(command)
    timeout = max(1.0, float(timeout))
    ends = time.monotonic() + timeout
    arguments = run_arguments(state, host)
    connector_cls = type(host.connector) if hasattr(host, "connector") else host.connector_cls
    if not issubclass(connector_cls, SSHConnector):
        # Not over SSH (@local, @docker...): no firewall between us, and a second
        # instance of such a connector may do more than connect. Use the host's own.
        ok, output = host.run_shell_command(command, _timeout=int(timeout) + 1, **arguments)
        text = "\n".join(line.line for line in output.combined_lines) if output else ""
        return FreshResult(True, 0 if ok else 1, text)

    connector = connector_cls(state, host)  # a new instance: host.connector is untouched
    retries = int(connector.data.get("ssh_connect_retries") or 0)
    _bound_connect(connector, max(1.0, timeout / (retries + 1)))
    try:
        try:
            connector.connect()
        except Exception as e:  # ConnectError, key loading, anything: one line
            return FreshResult(False, None, _connect_reason(e))
        if connector.client is None:
            return FreshResult(False, None, "no SSH client after connecting")
        try:
            return _ssh_run(state, host, connector.client, command, arguments,
                            max(1.0, ends - time.monotonic()))
        except Exception as e:
            return FreshResult(True, None, f"running the command failed: {type(e).__name__}: {e}")
    finally:
        # Close only this connection. (connector.disconnect() would clear a cache that
        # the host's own connection shares.)
        if connector.client is not None:
            try:
                connector.client.close()
            except Exception:
                pass


def fresh_connection_check(state: State, host: Host, command: str | StringCommand,
                           timeout: float) -> tuple[bool, str]:
    """Open a NEW SSH connection to ``host`` (a new TCP connection, a new connector
    instance with the host's own settings: ssh_hostname, ssh_port, ssh_user, ssh_key,
    known hosts, ssh config, connect timeout, retries), run ``command`` as the deploy's
    commands run (``_sudo``, ``_sudo_user``... from the operation, host data or config),
    close it. Returns ``(True, output)`` when the command exits 0, else ``(False,
    one-line reason)``. The host's existing pyinfra connection is not touched.
    ``timeout`` bounds the whole check (connect and command)."""
    result = fresh_run(state, host, command, timeout)
    if result.ok:
        return True, result.output.strip()
    return False, result.reason


def confirm_now(state: State, host: Host, command: StringCommand, deadline_epoch: float) -> bool:
    """Confirm the host's armed change by running ``command`` (``fleethost.py confirm
    TOKEN``) over a NEW SSH connection; on failure, fail this host with one line (the
    host then restores its previous firewall at ``deadline_epoch``, in local time)."""
    at = time.strftime("%H:%M:%S", time.localtime(deadline_epoch))
    # Said before it runs: the confirmation can take up to the whole timeout.
    host.log_styled("commit-confirm: confirming the UFW change over a new SSH connection; "
                    f"unconfirmed, the host restores its previous one at {at}",
                    log_func=logger.info)
    started = time.monotonic()
    left = deadline_epoch - time.time()
    result = fresh_run(state, host, command, max(5.0, left - 1.0))
    if result.ok and "confirmed" in result.output.split():
        host.log_styled("commit-confirm: confirmed over a new SSH connection in "
                        f"{time.monotonic() - started:.1f} s", fg="green", log_func=logger.info)
        return True
    if not result.connected:
        message = ("could not open a new SSH connection after the change; the host restores "
                   f"its previous firewall at {at} ({result.reason})")
    elif result.exit_status == EXIT_TOO_LATE:
        message = ("a new SSH connection worked but the confirmation came too late; the host "
                   f"restored its previous firewall ({result.reason})")
    else:
        message = ("could not confirm the change over a new SSH connection; the host restores "
                   f"its previous firewall at {at} ({result.reason})")
    host.log_styled(message, fg="red", log_func=logger.error)
    return False  # a failed command: pyinfra fails this host, the others go on
