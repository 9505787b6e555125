"""A passive-range change customers never notice: UFW and the FTP daemon agree at every step.

When a host's ``ftp_passive_ports`` change from OLD (what ProFTPd uses now) to NEW
(pure-ftpd alike: its files instead of the fragment):

1. *FTP server ready for the ftp role*: the NEW fragment passes ``proftpd -t`` (tried on a
   copy of the configuration, the live fragment untouched, no restart): a fragment
   ProFTPd refuses stops the host before its firewall changes.
2. *UFW*: NEW is opened; OLD stays open (``Switch.keep``), ProFTPd still offers it.
3. *fragment*: ProFTPd switches to NEW (write, ``proftpd -t``, restart, running again?);
   then, in the same remote step, UFW closes OLD (``Switch.if_switched``). If the
   switch fails, the fragment is put back, ProFTPd restarted on OLD and UFW closes NEW
   (``Switch.if_not``): both sides end on OLD.

Any failure before 3 leaves ProFTPd on OLD with OLD still open in UFW.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import partial
from typing import Any

from pyinfra.api import QuoteString, StringCommand

from .firewall import RUN_WITH_UFW_PYTHON, remote_script, session_of, ufw_request
from .hoststate import HostState
from .plan import HostPlan, RuleSpec
from .remote import program
from .steps import guarded_step

# remote/switch_step.sh: runs the daemon's step, then moves UFW by its outcome.
SWITCH_STEP = program("switch_step.sh")


@dataclass(frozen=True)
class Switch:
    """The UFW side of one passive-range change (see the module docstring)."""

    old: tuple[int, int] | None  # the range ProFTPd uses now (None: none set)
    new: tuple[int, int]
    keep: tuple[RuleSpec, ...]  # OLD's rule, kept open through the UFW operation
    if_switched: dict[str, Any]  # ufw_apply request: the plan (OLD closed)
    if_not: dict[str, Any]  # ufw_apply request: the plan with OLD instead of NEW


def range_rule(ports: tuple[int, int]) -> RuleSpec:
    """The rule the ftp role opens for a passive range (as ``validation`` makes it)."""
    return RuleSpec((f"{ports[0]}:{ports[1]}",), "tcp", None, "ftp")


def _open_now(current: HostState, ports: tuple[int, int]) -> bool:
    """Does UFW hold this deploy's rule for ``ports`` (so ProFTPd's range works now)?"""
    dport = f"{ports[0]}:{ports[1]}"
    return any(r.managed and r.action == "allow" and r.proto == "tcp" and r.dport == dport
               for r in current.ufw.rules)


def daemon_range(current: HostState, daemon: str) -> tuple[int, int] | None:
    """The passive range ``daemon`` uses now (ProFTPd: the effective one)."""
    if daemon == "pureftpd":
        return current.ftp.pureftpd.passive_port_range
    setting = current.ftp.proftpd.passive_ports
    return setting.ports if setting is not None else None


def plan_switch(plan: HostPlan, current: HostState, config_changes: bool,
                daemon: str = "proftpd") -> Switch | None:
    """The switch for this host, or ``None``: no ftp role, the daemon's config stays, or
    the range it uses is already the one wanted (e.g. only MasqueradeAddress moves)."""
    if plan.passive_ports is None or not config_changes:
        return None
    old = daemon_range(current, daemon)
    new = (plan.passive_ports[0], plan.passive_ports[1])
    if old == new:
        return None
    new_rule = range_rule(new)
    keep = (range_rule(old),) if old is not None and _open_now(current, old) else ()
    # The guard as in the UFW operation (fail-closed: a session not found counts as over
    # SSH). Not commit-confirmed: the switch opens/closes only the passive range, after
    # the UFW operation made (and confirmed) everything else.
    request = partial(ufw_request, incoming=plan.incoming, outgoing=plan.outgoing,
                      logging=plan.logging, enabled=plan.enabled,
                      purge_unmanaged=plan.purge_unmanaged, session=session_of(current),
                      guard=plan.lockout_guard, over_ssh=True, ssh_port=plan.ssh_port,
                      confirm=False, armed=False)
    if_not = [r for r in plan.rules if r != new_rule] + list(keep)
    return Switch(old=old, new=new, keep=keep,
                  if_switched=request(plan.rules), if_not=request(if_not))


def ftp_step(switch: Switch | None, script: str, *args: Any) -> StringCommand:
    """The FTP daemon's host-side ``script`` with ``args`` as one guarded step: alone, or,
    for a range change, inside ``remote/switch_step.sh``, which then closes the old
    range in UFW, or the new one if the daemon's step failed. The two UFW requests travel
    on stdin (an argument may hold at most 128 KiB)."""
    if switch is None:
        return guarded_step("sh", "-c", QuoteString(script), "froxlor-fleet", *args)
    requests = json.dumps({"if_switched": switch.if_switched, "if_not": switch.if_not})
    return guarded_step("sh", "-c", QuoteString(SWITCH_STEP), "froxlor-fleet",
                        QuoteString(RUN_WITH_UFW_PYTHON), QuoteString(remote_script()),
                        QuoteString(script), *args, stdin=requests)
