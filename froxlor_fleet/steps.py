"""Remote steps shared by the operations: how a change runs on a host, and when to report.

Every change runs as a *guarded step* (``guarded_step``): detached from the SSH session
and under a host-wide lock. Reports (diffs, kept rules) print once per run: during
change detection, or during execution when detection was skipped (``-y``).
"""

from __future__ import annotations

from pyinfra import logger, state
from pyinfra.api import FunctionCommand, Host, QuoteString, State, StringCommand
from pyinfra.api.state import StateStage

from .catalog import LOCK_PATH
from .remote import program

# remote/step.sh: runs a command detached from the SSH session, under the host lock.
STEP_SCRIPT = program("step.sh")
assert LOCK_PATH in STEP_SCRIPT  # the host-side program names the same lock


def guarded_step(*argv: object, keep_lock: bool = False, stdin: str | None = None) -> StringCommand:
    """``argv`` as a guarded step (``remote/step.sh``): detached from the SSH session,
    under the host-side lock shared by all froxlor-fleet steps. ``keep_lock``: a process
    the step leaves behind may go on holding the lock (the commit-confirmed timer).
    ``stdin``: the step's input (a request: an argument may hold at most 128 KiB)."""
    flags = ["--keep-lock"] if keep_lock else []
    if stdin is None:
        return StringCommand("sh", "-c", QuoteString(STEP_SCRIPT), "froxlor-fleet", *flags, *argv)
    return StringCommand("sh", "-c", QuoteString(STEP_SCRIPT), "froxlor-fleet", *flags,
                         "--stdin", *argv, _stdin=stdin)


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
