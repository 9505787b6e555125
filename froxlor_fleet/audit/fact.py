"""The audit's one remote read: the deploy's state fact plus the host's listening sockets.

``FleetAuditState`` is a fact of its own (``FactBase[AuditState]``): its command is the
deploy fact's command (``FleetHostState``) followed by ``ss``, so a host is still read
with one command, and the deploy fact keeps its own return type.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterator
from dataclasses import dataclass, field

from pyinfra.api import FactBase, StringCommand

from ..facts import SECTION, FleetHostState, HostState, UfwState, parse_state
from ..model.catalog import FRAGMENT_PATH

LISTENING_SECTION = f"{SECTION}listening"
# -H no header, -l listening, -t/-u TCP/UDP, -n numeric, -p processes (names need root).
LISTENING_COMMAND = f"echo '{LISTENING_SECTION}'; ss -H -ltnup 2>/dev/null || true"

Listening = dict[tuple[int, str], list[str]]  # (port, "tcp"/"udp") -> process names


@dataclass
class AuditState:
    """What the audit reads from one host."""

    state: HostState
    listening: Listening = field(default_factory=dict)
    complete: bool = False  # the whole command ran (pyinfra gives default() on failure)


class FleetAuditState(FactBase[AuditState]):
    """
    The deploy's ``FleetHostState`` plus the host's publicly bound sockets, one command.

    .. code:: python

        AuditState(state=HostState(...), listening={(22, "tcp"): ["sshd"], ...})
    """

    def command(self, fragment_path: str = FRAGMENT_PATH) -> StringCommand:
        deploy_read = FleetHostState().command(fragment_path)
        return StringCommand(deploy_read, ";", LISTENING_COMMAND)

    @staticmethod
    def default() -> AuditState:
        return AuditState(state=HostState(ufw=UfwState()))

    def process(self, output: list[str]) -> AuditState:
        return AuditState(state=parse_state(output), listening=parse_listening(output),
                          complete=LISTENING_SECTION in output)


def _public(address: str) -> bool:
    address = address.strip("[]").split("%")[0]
    if address in ("*", "0.0.0.0", "::"):
        return True
    try:
        return not ipaddress.ip_address(address).is_loopback
    except ValueError:
        return True  # an interface name or the like: reachable from outside


def public_sockets(lines: list[str]) -> Iterator[tuple[tuple[int, str], str, list[str]]]:
    """Publicly bound sockets from ``ss -H -ltnup`` (the section after
    ``LISTENING_SECTION``, up to the next one): ((port, proto), bound address, process
    names). Loopback-only sockets are left out: no firewall rule concerns them."""
    try:
        start = lines.index(LISTENING_SECTION) + 1
    except ValueError:
        return
    for line in lines[start:]:
        if line.startswith(SECTION):
            return
        parts = line.split()
        if len(parts) < 5 or parts[0] not in ("tcp", "udp"):
            continue
        address, _, port = parts[4].rpartition(":")
        if port.isdigit() and _public(address):
            yield (int(port), parts[0]), address, re.findall(r'\(\("([^"]+)"', line)


def parse_listening(lines: list[str]) -> Listening:
    """Publicly bound sockets: (port, proto) -> process names."""
    found: Listening = {}
    for key, _, processes in public_sockets(lines):
        names = found.setdefault(key, [])
        names += [n for n in processes if n not in names]
    return found
