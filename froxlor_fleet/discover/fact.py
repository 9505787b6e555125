"""What ``discover`` reads from a host: the audit's one command, unchanged.

``FleetDiscoverState`` is the audit's ``FleetAuditState`` (the deploy's state fact plus
``ss``): the same command, so a host is still read once and the same way the audit and
the deploy read it. What it adds is on the control side only: from the very same ``ss``
lines it also keeps *where* each public socket is bound (``0.0.0.0``, ``[::]``, ``*``,
one address), which the proposal shows as evidence and which says the address families
a listener serves.

froxlor's own settings (``panel_settings`` in MariaDB: web server, FTP daemon, DNS
server, mail daemons, MySQL access hosts) are NOT read yet. ``DiscoverState.froxlor`` is
the seam: ``None`` means "not read"; a later part of issue 18 adds the read to this
fact's command (read-only, never through a froxlor command) and fills it in, and the
proposal's "froxlor says" column takes it from there.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..audit.fact import AuditState, FleetAuditState, public_sockets

# (port, "tcp"/"udp") -> the public addresses it is bound to, as ss shows them
Bound = dict[tuple[int, str], list[str]]


@dataclass
class DiscoverState(AuditState):
    """``AuditState`` plus where each public socket is bound, and froxlor's settings
    (``None``: not read; see the module docstring)."""

    bound: Bound = field(default_factory=dict)
    froxlor: dict[str, str] | None = None


class FleetDiscoverState(FleetAuditState):
    """The audit's one command (``FleetAuditState``); processed into a ``DiscoverState``."""

    def process(self, output: list[str]) -> DiscoverState:
        read = super().process(output)
        return DiscoverState(read.state, read.listening, read.complete, parse_bound(output))


def parse_bound(lines: list[str]) -> Bound:
    """From the same ``ss -H -ltnup`` lines as ``audit.fact.parse_listening`` (and the
    same notion of public): (port, proto) -> bound addresses, ``*`` for a dual-stack
    socket, ``[::]`` for an IPv6-only one."""
    found: Bound = {}
    for key, address, _ in public_sockets(lines):
        where = found.setdefault(key, [])
        if address not in where:
            where.append(address)
    return found


def families(addresses: list[str]) -> tuple[int, ...]:
    """The address families sockets bound to ``addresses`` accept: ``*`` both (a v6
    socket without IPV6_V6ONLY takes v4 too), ``[...]`` or a ``:`` IPv6, else IPv4."""
    found: set[int] = set()
    for address in addresses:
        bare = address.strip("[]").split("%")[0]
        if bare == "*":
            found.update((4, 6))
        elif ":" in bare:
            found.add(6)
        else:
            found.add(4)
    return tuple(sorted(found)) or (4, 6)
