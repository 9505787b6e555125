"""A passive-range change customers never notice: UFW and the FTP daemon agree at every step.

When a host's ``ftp_passive_ports`` change from OLD (what the daemon uses now) to NEW,
the host program's transaction (``remote/fleethost.py``) does, under the host lock:

1. the NEW ProFTPd fragment passes ``proftpd -t`` (tried on a copy of the
   configuration, the live fragment untouched): a fragment ProFTPd refuses stops the
   host before its firewall changes;
2. UFW opens NEW; OLD stays open (``Switch.keep``): the daemon still offers it;
3. the daemon switches to NEW (write, test, restart, loaded marker); if it can't, its
   files are put back, it is restarted on OLD, and UFW's change is undone;
4. UFW closes OLD.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..facts import HostState
from ..model.plan import HostPlan, RuleSpec
from ..model.ufwrules import want


@dataclass(frozen=True)
class Switch:
    """The UFW side of one passive-range change (see the module docstring)."""

    old: tuple[int, int] | None  # the range the daemon uses now (None: none set)
    new: tuple[int, int]
    keep: tuple[RuleSpec, ...]  # OLD's rule, kept open until the daemon has switched

    def keep_wire(self) -> list[dict[str, object]]:
        """``keep`` as the host program reads it (``Want`` fields)."""
        return [want(rule).to_wire() for rule in self.keep]


def with_keep(part: dict[str, object] | None, switch: Switch | None) -> dict[str, object] | None:
    """The host program's FTP part (``ftpplan.fragment_part``/``ftpplan.pureftpd_part``)
    with the old range UFW keeps open until the daemon has switched."""
    if part is None or switch is None:
        return part
    return {**part, "keep": switch.keep_wire()}


def range_rule(ports: tuple[int, int]) -> RuleSpec:
    """The rule the ftp role opens for a passive range (as ``validation`` makes it)."""
    return RuleSpec((f"{ports[0]}:{ports[1]}",), "tcp", None, "ftp")


def _open_now(current: HostState, ports: tuple[int, int]) -> bool:
    """Does UFW hold this deploy's rule for ``ports`` (so the daemon's range works now)?"""
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
    keep = (range_rule(old),) if old is not None and _open_now(current, old) else ()
    return Switch(old=old, new=new, keep=keep)
