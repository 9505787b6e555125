"""Remote steps shared by the operations: how a change runs on a host, and when to report.

Every change runs as a *guarded step* (``guarded_step``): detached from the SSH session
and under a host-wide lock. Reports (diffs, kept rules) print once per run: during
change detection, or during execution when detection was skipped (``-y``).
"""

from __future__ import annotations

from pyinfra import logger, state
from pyinfra.api import FunctionCommand, QuoteString, StringCommand
from pyinfra.api.state import StateStage

from .catalog import LOCK_PATH

# Runs "$@" as one guarded step: detached from this SSH session (a dropped connection
# cannot cut a half-applied firewall short), under the host-wide lock (two runs never
# interleave; the second waits, and says so). This shell relays output and exit code.
# It waits without polling: the step inherits a lock on $d/running that is released
# only when the step has finished.
STEP_SCRIPT = (
    'd=$(mktemp -d /run/froxlor-fleet.XXXXXX) || exit 1; '
    'exec 7>"$d/running"; flock 7; '
    "setsid -f sh -c '"
    f"exec 9>>{LOCK_PATH}; "
    "if ! flock -n 9; then "
    'echo "froxlor-fleet: another run holds the lock on this host, waiting"; '
    f'flock -w 300 9 || {{ echo "froxlor-fleet: gave up after 300 s waiting for {LOCK_PATH}"; '
    'echo 75 > "$0/rc"; exit; }; fi; '
    '"$@" </dev/null 7>&- 9>&-; echo $? > "$0/rc"'
    """' "$d" "$@" > "$d/out" 2>&1 < /dev/null; """
    'exec 7>&-; flock "$d/running" true; '
    'cat "$d/out"; rc=$(cat "$d/rc" 2>/dev/null || echo 70); rm -rf "$d"; exit "$rc"'
)


def guarded_step(*argv: object) -> StringCommand:
    """``argv`` as a guarded step (see ``STEP_SCRIPT``): detached from the SSH session,
    under the host-side lock shared by all froxlor-fleet steps."""
    return StringCommand("sh", "-c", QuoteString(STEP_SCRIPT), "froxlor-fleet", *argv)


def reporting_stage() -> bool:
    """True once per run: at change detection, or at execution when it was skipped."""
    return state.current_stage == StateStage.Prepare or not state.should_check_for_changes()


def show_changes() -> bool:
    """Whether to print a diff now (``--diff``, once per run)."""
    return bool(state.config.DIFF) and reporting_stage()


def _fail_host(state, host, message: str) -> bool:
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
