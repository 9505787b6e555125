"""The desired state of one host: ``HostPlan`` and its ``RuleSpec``s, plus port helpers.

This is the model the planner (``ufwrules``), the operations and the audit work with.
``validation.resolve`` is the only producer: it turns fleet data into a ``HostPlan``
(or one-line errors), so every value in here is already checked and normalised the
way ufw stores it. Defaults come from ``catalog.DEFAULTS`` only.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import cast

from .catalog import DEFAULTS, MARKER

# ufw (src/common.py, UFWRule.set_port): at most 14 ',' and ':' in one port list, i.e.
# 15 ports per rule where a range counts 2 (iptables' multiport limit).
MAX_PORT_WEIGHT = 15


@dataclass(frozen=True)
class RuleSpec:
    """One UFW rule the deploy wants: ``action`` ``ports``/``proto`` from ``source``.

    ``ports`` are ufw-normalised strings ("80", "49152:65534"), sorted the way ufw
    sorts them; ``source`` is an address/network exactly as ufw stores it, or ``None``
    (anywhere), or (before ``groups.resolve_groups``) ``"@group"``, an inventory group;
    ``action`` is one of ``catalog.RULE_ACTIONS``.
    """

    ports: tuple[str, ...]
    proto: str
    source: str | None
    label: str  # role name or "extra"
    note: str = ""  # operator's comment on an extra rule
    action: str = "allow"

    @property
    def comment(self) -> str:
        """The ufw comment: the marker, the label, "rate-limit" on a ``limit`` rule,
        and the operator's note if any.

        "rate-limit" tells a limit this deploy made from data from a hand-made
        ``ufw limit`` it adopted for an ``allow`` (that one keeps the plain comment):
        when the data goes back to ``allow``, only the former goes back too."""
        words = [f"{MARKER}{self.label}"] + (["rate-limit"] if self.action == "limit" else [])
        return " ".join(words + ([self.note] if self.note else []))

    @property
    def dport(self) -> str:
        return ",".join(self.ports)


@dataclass(frozen=True)
class GroupSource:
    """A source naming an inventory group (``"@web_servers"``, a ``RuleSpec.source``
    until ``groups.resolve_groups`` puts the members' addresses in its place): which data
    key named it, and where (``"group db_servers"``, ``"host data"``: for error lines)."""

    key: str
    group: str  # without the "@"
    where: str


# A host whose data has no ``froxlor_roles`` (in no group, not in its own data) is not a
# froxlor host to this tool: an inventory shared with other deploys holds others too. The
# deploy and the audit leave it as it is. ``froxlor_roles = []`` in its data means a
# managed host with SSH only.
NOT_MANAGED = "no froxlor_roles in its data: not managed by froxlor-fleet, left as it is"


@dataclass(frozen=True)
class HostPlan:
    """Everything one host should look like after the deploy.

    Field defaults are the data defaults of ``catalog.DEFAULTS`` (the one place they
    are written); ``validation.resolve`` always sets every field.
    """

    host: str
    roles: tuple[str, ...]
    rules: tuple[RuleSpec, ...]
    incoming: str = cast(str, DEFAULTS["firewall_default_incoming"])
    outgoing: str = cast(str, DEFAULTS["firewall_default_outgoing"])
    logging: str = cast(str, DEFAULTS["firewall_logging"])
    enabled: bool = cast(bool, DEFAULTS["firewall_enabled"])
    purge_unmanaged: bool = cast(bool, DEFAULTS["firewall_purge_unmanaged"])
    ssh_port: int = cast(int, DEFAULTS["ssh_port"])
    lockout_guard: bool = cast(bool, DEFAULTS["firewall_lockout_guard"])
    confirm_timeout: int = cast(int, DEFAULTS["firewall_confirm_timeout"])
    # Already in ``rules`` (the ssh rule's action, the web role's 443/udp); kept for readers.
    ssh_rate_limit: bool = cast(bool, DEFAULTS["ssh_rate_limit"])
    web_http3: bool = cast(bool, DEFAULTS["web_http3"])
    # Not data defaults: None means "this host runs no ftp role" / "no masquerading".
    passive_ports: tuple[int, int] | None = None
    masquerade_address: str | None = cast("str | None", DEFAULTS["ftp_masquerade_address"])
    ftp_daemon: str = cast(str, DEFAULTS["ftp_daemon"])  # auto, proftpd or pureftpd
    # Sources naming an inventory group, in data order: their rules' source is "@group"
    # until the group is resolved (``groups.resolve_groups``), which empties this.
    source_groups: tuple[GroupSource, ...] = ()
    managed: bool = True  # False: no froxlor_roles in the host's data (NOT_MANAGED)


# --- ports in ufw's notation ("80", "49152:65534") ------------------------------------

def ufw_port_sort(ports: Iterable[str]) -> tuple[str, ...]:
    """Unique, and sorted like ufw's ``human_sort`` (src/util.py) sorts a rule's ports
    when it normalises the rule, so our tuples match the rule files byte for byte."""
    return tuple(sorted(set(ports), key=lambda p: [int(x) for x in p.split(":")]))


def port_weight(ports: Iterable[str]) -> int:
    """What a port list costs against ``MAX_PORT_WEIGHT``: a range counts 2."""
    return sum(2 if ":" in p else 1 for p in ports)
