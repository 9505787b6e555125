"""What the operations share: when to report, failing one host, and which operation
carries the host's transaction.

Reports (diffs, kept rules) print once per run: during change detection, or during
execution when detection was skipped (``-y``). A host's change is one transaction of
the host program (``hostprogram.py``): the UFW operation carries the FTP daemon's
change when it runs one (``carry``), and the FTP operation then only reports it.
"""

from __future__ import annotations

from pyinfra import logger, state
from pyinfra.api import FunctionCommand, Host, State
from pyinfra.api.state import StateStage


def _stage_key(host: Host) -> StateStage | None:
    return host.state.current_stage if host.state.should_check_for_changes() else None


def carry(host: Host, ftp: bool) -> None:
    """The UFW operation runs the transaction now; ``ftp``: with the FTP daemon's change."""
    setattr(host, "_froxlor_fleet_carried", (_stage_key(host), ftp))  # noqa: B010


def carried(host: Host) -> bool:
    """Did this run phase's UFW transaction carry the FTP daemon's change?"""
    value = getattr(host, "_froxlor_fleet_carried", None)
    return bool(value and value[0] == _stage_key(host) and value[1])


def _report_carried(state: State, host: Host, what: str) -> bool:
    host.log(f"{what}: changed in the host's transaction (UFW operation above)", logger.debug)
    return True


def reported(what: str) -> FunctionCommand:
    """The FTP operation's command when the UFW operation's transaction carried its change:
    no remote command; the operation shows as changed."""
    return FunctionCommand(_report_carried, (what,), {})


def reporting_stage() -> bool:
    """True once per run: at change detection, or at execution when it was skipped."""
    return state.current_stage == StateStage.Prepare or not state.should_check_for_changes()


def show_changes() -> bool:
    """Whether to print a diff now (``--diff``, once per run)."""
    return bool(state.config.DIFF) and reporting_stage()


def _fail_host(state: State, host: Host, message: str) -> bool:
    host.log_styled(message, fg="red", log_func=logger.error)
    return False  # a failed command: pyinfra fails this host, the others go on


def refuse(message: str) -> FunctionCommand:
    """A command that fails this host with one clear line. Yield it instead of raising
    ``OperationError``: pyinfra lets an exception from an operation abort the whole run
    (every host), while a failed command fails only its host. Under ``--dry`` nothing
    executes, so the line is also printed when changes are detected (before any host
    changes: the operator sees it before confirming)."""
    if state.current_stage == StateStage.Prepare:
        from pyinfra import host

        host.log_styled(f"will fail: {message}", fg="red", log_func=logger.warning)
    return FunctionCommand(_fail_host, (message,), {})
