"""Sources naming an inventory group (``"@web_servers"``), resolved to addresses.

One resolver for the deploy (``deploys.py``) and the audit (``audit/collect.py``). A
group stands for the addresses of its hosts: the address pyinfra connects to when it is
an IP address (``ssh_hostname``, else the host's name), plus the host's own global
addresses from its state read (``HostState.addresses``) when that host is part of this
run. A host outside the run (``--limit``, or it failed) that pyinfra reaches by name adds
nothing, and is named in what the run shows: the rules for its addresses would go.
Each address becomes a source exactly as ufw stores it (``validation.address``: a plain
address, ufw drops /32 and /128), so a second run finds it converged.

Before connecting, ``validation.source`` has checked that each group exists and has
hosts; here, a group none of whose hosts has an address is that host's error (one line:
the deploy fails that host, the audit reports it).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from .catalog import ROLE_SERVICES
from .plan import GroupSource, HostPlan, RuleSpec
from .validation import GROUP_PREFIX, address, error_line, group_of, slot_conflicts

__all__ = ["GroupAddresses", "Member", "Resolution", "connect_name", "group_members",
           "member_addresses", "resolve_groups"]


@dataclass(frozen=True)
class Member:
    """One host of a group, as this run knows it: ``connect`` is what pyinfra connects
    to; ``addresses`` the host's own (its state read), ``None`` when it was not read
    (not in this run)."""

    host: str
    connect: str
    addresses: tuple[str, ...] | None = None


@dataclass(frozen=True)
class GroupAddresses:
    """What one group stands for on one host: its addresses (as ufw stores them, IPv4
    first), members that added none (``unknown``, each with why), and the IPv6
    addresses left out because that host's ufw has IPv6 off."""

    group: str
    addresses: tuple[str, ...]
    unknown: tuple[tuple[str, str], ...] = ()  # (host, why it adds no address)
    ipv6_left_out: tuple[str, ...] = ()

    def describe(self) -> str:
        """``@web_servers = 10.0.0.5, fd00::5 (no address known for web3: ...)``."""
        text = f"{GROUP_PREFIX}{self.group} = {', '.join(self.addresses) or 'nothing'}"
        notes = []
        if self.ipv6_left_out:
            notes.append(f"IPV6=no here: {', '.join(self.ipv6_left_out)} left out")
        if self.unknown:
            notes.append("no address known: " + "; ".join(_why(self.unknown)))
        return text + (f" ({'; '.join(notes)})" if notes else "")


@dataclass(frozen=True)
class Resolution:
    """A plan with every group source replaced by its addresses (``plan``), what each
    group became (``groups``), and the host's errors (a group without any address, a
    group address that another rule acts on otherwise)."""

    plan: HostPlan
    groups: tuple[GroupAddresses, ...] = ()
    errors: tuple[str, ...] = ()


# Why a member adds no address (the audit's JSON says these words).
NOT_IN_RUN = "not_in_run"  # not read in this run, and pyinfra connects to it by name
NO_ADDRESS = "no_address"  # read, but no global address (and pyinfra connects to it by name)


def connect_name(host: Any) -> str:
    """What pyinfra's SSH connector connects to: ``ssh_hostname``, else the host's name."""
    return str(host.data.get("ssh_hostname") or host.name)


def _usable(text: str) -> str | None:
    """``text`` as ufw stores it, if another host could connect from it; else None."""
    try:
        ip = ipaddress.ip_address(text)
        stored = address(text)
    except ValueError:  # a name, a scoped or an IPv4-mapped address
        return None
    if ip.is_loopback or ip.is_link_local or ip.is_unspecified or ip.is_multicast:
        return None
    return stored


def member_addresses(member: Member) -> tuple[str, ...]:
    """The member's usable addresses: where pyinfra connects to (if an IP address), then
    its own from its state read (if read)."""
    found = [_usable(member.connect), *(_usable(a) for a in member.addresses or ())]
    return tuple(dict.fromkeys(a for a in found if a))


def _sorted(addresses: Iterable[str]) -> tuple[str, ...]:
    def key(text: str) -> tuple[int, int]:
        ip = ipaddress.ip_address(text)
        return ip.version, int(ip)
    return tuple(sorted(set(addresses), key=key))


def _group(name: str, members: Sequence[Member], ipv6: bool) -> GroupAddresses:
    found: list[str] = []
    unknown: list[tuple[str, str]] = []
    for member in members:
        own = member_addresses(member)
        found += own
        if not own:
            unknown.append((member.host, NOT_IN_RUN if member.addresses is None else NO_ADDRESS))
    addresses = _sorted(found)
    left_out = () if ipv6 else tuple(a for a in addresses if ":" in a)
    return GroupAddresses(name, tuple(a for a in addresses if a not in left_out),
                          tuple(unknown), left_out)


def _why(unknown: Iterable[tuple[str, str]]) -> list[str]:
    """Why members add no address, one phrase per reason: ``web3 is not in this run and
    pyinfra reaches it by name``, ``web4 and web5 have no global address``."""
    reasons: dict[str, list[str]] = {}
    for host, why in unknown:
        reasons.setdefault(why, []).append(host)
    phrases = []
    for why, hosts in reasons.items():
        one = len(hosts) == 1
        who = hosts[0] if one else f"{', '.join(hosts[:-1])} and {hosts[-1]}"
        phrases.append(f"{who} " + ((
            "is not in this run and pyinfra reaches it by name" if one else
            "are not in this run and pyinfra reaches them by name") if why == NOT_IN_RUN
            else "has no global address" if one else "have no global address"))
    return phrases


def _empty_reason(group: GroupAddresses) -> str:
    parts = _why(group.unknown)
    if group.ipv6_left_out:
        parts.append(f"its IPv6 addresses are left out here (IPV6=no): "
                     f"{', '.join(group.ipv6_left_out)}")
    return f"no address of group {group.group} is known: " + "; ".join(parts)


def _sources_key(spec: RuleSpec) -> str:
    """The data key a rule's sources come from."""
    if spec.label == "extra":
        return "firewall_extra_rules"
    return next((svc.sources_key for svc in ROLE_SERVICES.get(spec.label, ())
                 if svc.proto == spec.proto and svc.sources_key), "")


def resolve_groups(plan: HostPlan, members: Mapping[str, Sequence[Member]],
                   ipv6: bool = True) -> Resolution:
    """``plan`` with each rule whose source names a group replaced by one rule per
    address of that group (``members``: each named group's hosts, ``group_members``).
    ``ipv6``: False when the host's ufw has IPv6 off (``IPV6=no``): a group's IPv6
    addresses are left out there (ufw would ignore their rules)."""
    if not plan.source_groups:
        return Resolution(plan)
    groups = {name: _group(name, members.get(name, ()), ipv6)
              for name in dict.fromkeys(ref.group for ref in plan.source_groups)}
    errors = [error_line(plan.host, ref.key, f"{GROUP_PREFIX}{ref.group}",
                         _empty_reason(groups[ref.group]), ref.where)
              for ref in plan.source_groups if not groups[ref.group].addresses]
    rules: list[tuple[RuleSpec, str | None]] = []  # each with the group it came from
    for spec in plan.rules:
        name = group_of(spec.source)
        if name is None:
            rules.append((spec, None))
        else:
            rules += [(replace(spec, source=a), name) for a in groups[name].addresses]
    errors += _conflicts(plan, rules)
    slots: dict[tuple[tuple[str, ...], str, str | None], RuleSpec] = {}
    for spec, _ in rules:  # ufw keeps one rule per slot: the first wins, as in the data check
        slots.setdefault((spec.ports, spec.proto, spec.source), spec)
    resolved = replace(plan, rules=tuple(slots.values()), source_groups=())
    return Resolution(resolved, tuple(groups.values()), tuple(errors))


def _conflicts(plan: HostPlan, rules: list[tuple[RuleSpec, str | None]]) -> list[str]:
    """``validation.slot_conflicts`` once the groups are addresses: a group's address
    that another rule acts on otherwise. (Between sources as written, the data check
    refused them already.)"""
    roles = [(spec, group) for spec, group in rules if spec.label != "extra"]
    extras = [(spec, group) for spec, group in rules if spec.label == "extra"]
    by_slot = {(s.ports, s.proto, s.source): (s, g) for s, g in reversed(roles)}
    found = []
    for index, why in slot_conflicts([s for s, _ in roles], [s for s, _ in extras]):
        spec, group = extras[index]
        blamed = spec
        if group is None:  # the other side came from a group: a role's, or an entry's
            slot = (spec.ports, spec.proto, spec.source)
            blamed, group = by_slot.get(slot) or next(
                ((s, g) for s, g in extras if (s.ports, s.proto, s.source) == slot and g),
                (spec, None))
            if group is None:
                continue  # between sources as written: the data check's
        key = _sources_key(blamed)
        ref = next((r for r in plan.source_groups if (r.key, r.group) == (key, group)),
                   GroupSource(key, group, ""))
        found.append(error_line(plan.host, ref.key, f"{GROUP_PREFIX}{group}", why, ref.where))
    return found


def group_members(inventory: Any, plan: HostPlan,
                  read: Callable[[Any], Sequence[str] | None]) -> dict[str, list[Member]]:
    """The hosts of each group ``plan`` names, as ``Member``s: ``read(host)`` gives a
    host's own addresses from its state read, or ``None`` when it is not part of this
    run (then it is not read: never connect to a host outside the run)."""
    members: dict[str, list[Member]] = {}
    for name in dict.fromkeys(ref.group for ref in plan.source_groups):
        hosts = inventory.groups.get(name, ())
        members[name] = [Member(h.name, connect_name(h), _tuple(read(h))) for h in hosts]
    return members


def _tuple(addresses: Sequence[str] | None) -> tuple[str, ...] | None:
    return None if addresses is None else tuple(addresses)
