"""Fleet data validation and role resolution.

``resolve_host`` turns one host's inventory data into a ``HostPlan`` (the desired
state) or a list of one-line errors naming host, key and value. ``check_inventory``
does that for every host and raises ``FleetDataError`` listing all problems, so a
run stops before it touches (or even connects to) any host.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from pyinfra.api.exceptions import PyinfraError

from .catalog import (
    DEFAULTS,
    LOG_LEVELS,
    MARKER,
    POLICIES,
    PROTOCOLS,
    ROLE_ALIASES,
    ROLE_SERVICES,
    UNION_KEYS,
    VALID_ROLES,
)

MAX_PORT_WEIGHT = 15  # ufw: at most 15 ports per rule, a range counts 2
MAX_COMMENT = 120
EXTRA_RULE_KEYS = {"port", "proto", "sources", "comment"}
HOSTNAME_RE = re.compile(r"^(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?$")


class FleetDataError(PyinfraError):
    """Bad group/host data; the message holds one line per problem."""

    def __init__(self, errors: list[str]):
        self.errors = errors
        super().__init__(
            f"fleet data is invalid, no host was touched ({len(errors)} problem(s)):\n  "
            + "\n  ".join(errors)
        )


@dataclass(frozen=True)
class RuleSpec:
    """One UFW rule the deploy wants: ``allow`` ``ports``/``proto`` from ``source``.

    ``ports`` are ufw-normalised strings ("80", "49152:65534"), sorted the way ufw
    sorts them; ``source`` is a normalised address/network or ``None`` (anywhere).
    """

    ports: tuple[str, ...]
    proto: str
    source: str | None
    label: str  # role name or "extra"
    note: str = ""  # operator's comment on an extra rule

    @property
    def comment(self) -> str:
        return f"{MARKER}{self.label}" + (f" {self.note}" if self.note else "")

    @property
    def dport(self) -> str:
        return ",".join(self.ports)

    def ufw_args(self) -> list[str]:
        """The ``ufw`` CLI arguments that add this rule (without the program name)."""
        return ["allow", "proto", self.proto, "from", self.source or "any",
                "to", "any", "port", self.dport, "comment", self.comment]


@dataclass(frozen=True)
class HostPlan:
    """Everything one host should look like after the deploy."""

    host: str
    roles: tuple[str, ...]
    rules: tuple[RuleSpec, ...]
    incoming: str = "deny"
    outgoing: str = "allow"
    logging: str = "low"
    enabled: bool = True
    purge_unmanaged: bool = False
    ssh_port: int = 22
    passive_ports: tuple[int, int] | None = None  # set when the host runs ftp
    masquerade_address: str | None = None


# --- reading data ---------------------------------------------------------------------

Layer = tuple[str, Mapping[str, Any]]  # (where it came from, data)


def inventory_layers(inventory: Any, host: Any) -> list[Layer]:
    """A host's data sources, highest precedence first (pyinfra's own order)."""
    layers: list[Layer] = [("--data", inventory.get_override_data() or {}),
                           ("host data", inventory.get_host_data(host.name) or {})]
    for group in reversed(list(host.groups)):
        layers.append((f"group {group}", inventory.get_group_data(group) or {}))
    layers.append(("group all", inventory.get_data() or {}))
    return layers


def _scalar(layers: list[Layer], key: str) -> tuple[Any, str]:
    for where, data in layers:
        if key in data:
            return data[key], where
    return DEFAULTS[key], "default"


def _collected(layers: list[Layer], key: str) -> list[tuple[Any, str]]:
    """Every layer's value for a list key (they are combined, not replaced)."""
    return [(data[key], where) for where, data in layers if key in data]


# --- small validators (return a normalised value or raise ValueError(reason)) ----------

def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def port_number(value: Any) -> int:
    if isinstance(value, str) and value.isdigit():
        value = int(value)
    if not _is_int(value) or not 1 <= value <= 65535:
        raise ValueError("a port must be a whole number from 1 to 65535")
    return value


def port_item(value: Any) -> str:
    """A port (80, "80") or range ("49152:65534") in ufw's notation."""
    if isinstance(value, str) and ":" in value:
        low, _, high = value.partition(":")
        lo, hi = port_number(low), port_number(high)
        if lo >= hi:
            raise ValueError("a port range must be low:high with low < high")
        return f"{lo}:{hi}"
    return str(port_number(value))


def ufw_port_sort(ports: Iterable[str]) -> tuple[str, ...]:
    """Sort like ufw's ``human_sort`` does, so our tuples match the rule files."""
    unique = sorted(set(ports), key=lambda p: [int(x) for x in p.split(":")])
    return tuple(unique)


def port_weight(ports: Iterable[str]) -> int:
    return sum(2 if ":" in p else 1 for p in ports)


def port_span(port: str) -> tuple[int, int]:
    low, _, high = port.partition(":")
    return int(low), int(high or low)


def address(value: Any) -> str:
    """An IPv4/IPv6 address or network, normalised the way ufw stores it."""
    if not isinstance(value, str) or not value.strip():
        raise ValueError("must be an IP address or CIDR network as a string")
    try:
        net = ipaddress.ip_network(value.strip(), strict=False)
    except ValueError:
        raise ValueError("is not a valid IP address or CIDR network") from None
    if net.prefixlen == net.max_prefixlen:
        return str(net.network_address)
    return str(net)


def sources(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, (list, tuple)):
        raise ValueError("must be a list of IP addresses or CIDR networks")
    return tuple(dict.fromkeys(address(v) for v in value))


def comment_text(value: Any) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise ValueError("comment must be a string")
    if len(value) > MAX_COMMENT or any(ord(c) < 32 or ord(c) == 127 for c in value):
        raise ValueError(f"comment must be one line of at most {MAX_COMMENT} printable characters")
    return value.strip()


# --- resolution ----------------------------------------------------------------------

class _Errors:
    def __init__(self, host: str):
        self.host, self.lines = host, []

    def add(self, key: str, value: Any, reason: str, where: str = "") -> None:
        origin = f" ({where})" if where and where not in ("default", "host data") else ""
        self.lines.append(f"host {self.host}{origin}: {key} = {value!r}: {reason}")


def _roles(layers: list[Layer], err: _Errors) -> list[str]:
    roles: set[str] = {"ssh"}  # always present: the deploy itself needs it
    for value, where in _collected(layers, "froxlor_roles"):
        if isinstance(value, str) or not isinstance(value, (list, tuple, set)):
            err.add("froxlor_roles", value, "must be a list of role names", where)
            continue
        for role in value:
            if role in ROLE_ALIASES:
                roles.update(ROLE_ALIASES[role])
            elif role in ROLE_SERVICES:
                roles.add(role)
            else:
                err.add("froxlor_roles", role,
                        f"unknown role (valid: {', '.join(VALID_ROLES)})", where)
    return sorted(roles)


def _get(layers: list[Layer], key: str, check, err: _Errors, default: Any = None) -> Any:
    value, where = _scalar(layers, key)
    try:
        return check(value)
    except ValueError as e:
        err.add(key, value, str(e), where)
        return default


def _choice(options: tuple[str, ...]):
    def check(value: Any) -> str:
        if value not in options:
            raise ValueError(f"must be one of {', '.join(options)}")
        return value
    return check


def _boolean(value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError("must be True or False")
    return value


def _passive_range(value: Any) -> tuple[int, int]:
    if not isinstance(value, (list, tuple)) or len(value) != 2 or not all(_is_int(v) for v in value):
        raise ValueError("must be a (low, high) pair of port numbers")
    low, high = value
    if not 1024 <= low <= 65535 or not 1024 <= high <= 65535:
        raise ValueError("passive ports must lie within 1024-65535")
    if low > high:
        raise ValueError("range is inverted (low > high)")
    return (low, high)


def _masquerade(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        try:
            return str(ipaddress.ip_address(value))
        except ValueError:
            if HOSTNAME_RE.match(value):
                return value
    raise ValueError("must be an IP address or a DNS name")


def _extra_rules(layers: list[Layer], err: _Errors) -> list[RuleSpec]:
    rules: list[RuleSpec] = []
    for value, where in _collected(layers, "firewall_extra_rules"):
        if not isinstance(value, (list, tuple)):
            err.add("firewall_extra_rules", value, "must be a list of rules", where)
            continue
        for item in value:
            key = "firewall_extra_rules"
            if not isinstance(item, Mapping) or "port" not in item:
                err.add(key, item, "each rule must be a dict with at least 'port'", where)
                continue
            unknown = set(item) - EXTRA_RULE_KEYS
            if unknown:
                err.add(key, item, f"unknown field(s) {', '.join(sorted(map(str, unknown)))} "
                        f"(valid: {', '.join(sorted(EXTRA_RULE_KEYS))})", where)
                continue
            try:
                raw = item["port"]
                items = raw if isinstance(raw, (list, tuple)) else [raw]
                if not items:
                    raise ValueError("port list is empty")
                ports = ufw_port_sort(port_item(p) for p in items)
                if port_weight(ports) > MAX_PORT_WEIGHT:
                    raise ValueError("ufw takes at most 15 ports per rule (a range counts 2)")
                proto = item.get("proto", "tcp")
                if proto not in PROTOCOLS:
                    raise ValueError(f"proto must be one of {', '.join(PROTOCOLS)}")
                note = comment_text(item.get("comment"))
                srcs = sources(item.get("sources"))
            except ValueError as e:
                err.add(key, dict(item), str(e), where)
                continue
            for src in srcs or (None,):
                rules.append(RuleSpec(ports, proto, src, "extra", note))
    return rules


def _role_rules(roles: list[str], ssh_port: int, srcs: dict[str, tuple[str, ...]],
                passive: tuple[int, int] | None) -> list[RuleSpec]:
    rules: list[RuleSpec] = []
    for role in roles:
        for svc in ROLE_SERVICES[role]:
            ports = tuple(p.format(ssh_port=ssh_port) for p in svc.ports)
            allowed = srcs.get(svc.sources_key, ()) if svc.sources_key else ()
            for src in allowed or (None,):
                rules.append(RuleSpec(ufw_port_sort(ports), svc.proto, src, role))
        if role == "ftp" and passive:
            rules.append(RuleSpec((f"{passive[0]}:{passive[1]}",), "tcp", None, "ftp"))
    return rules


def resolve(host: str, layers: list[Layer]) -> tuple[HostPlan | None, list[str]]:
    """Resolve one host's data to its plan; returns ``(plan, [])`` or ``(None, errors)``."""
    err = _Errors(host)
    roles = _roles(layers, err)
    ssh_port = _get(layers, "ssh_port", port_number, err, 22)
    srcs = {"ssh_allowed_sources": _get(layers, "ssh_allowed_sources", sources, err, ())}
    if "mysql" in roles:
        value, where = _scalar(layers, "mysql_allowed_sources")
        if not value:
            err.add("mysql_allowed_sources", value,
                    "required when 'mysql' is a role (3306 is never opened to the world)", where)
        srcs["mysql_allowed_sources"] = _get(layers, "mysql_allowed_sources", sources, err, ())
    passive = _get(layers, "ftp_passive_ports", _passive_range, err) if "ftp" in roles else None
    masq = _get(layers, "ftp_masquerade_address", _masquerade, err)
    plan_rules = _role_rules(roles, ssh_port, srcs, passive) + _extra_rules(layers, err)
    if passive:
        _check_passive_overlap(plan_rules, passive, err, _scalar(layers, "ftp_passive_ports")[1])
    plan = HostPlan(
        host=host,
        roles=tuple(roles),
        rules=_first_per_slot(plan_rules),
        incoming=_get(layers, "firewall_default_incoming", _choice(POLICIES), err, "deny"),
        outgoing=_get(layers, "firewall_default_outgoing", _choice(POLICIES), err, "allow"),
        logging=_get(layers, "firewall_logging", _choice(LOG_LEVELS), err, "low"),
        enabled=_get(layers, "firewall_enabled", _boolean, err, True),
        purge_unmanaged=_get(layers, "firewall_purge_unmanaged", _boolean, err, False),
        ssh_port=ssh_port,
        passive_ports=passive,
        masquerade_address=masq,
    )
    return (None, err.lines) if err.lines else (plan, [])


def _first_per_slot(rules: list[RuleSpec]) -> tuple[RuleSpec, ...]:
    # ufw keeps one rule per (ports, proto, source); two specs for the same slot
    # would rewrite each other's comment on every run, so the first one wins.
    slots: dict[tuple, RuleSpec] = {}
    for rule in rules:
        slots.setdefault((rule.ports, rule.proto, rule.source), rule)
    return tuple(slots.values())


def _check_passive_overlap(rules: list[RuleSpec], passive: tuple[int, int], err: _Errors,
                           where: str) -> None:
    low, high = passive
    for rule in rules:
        if rule.label == "ftp" and rule.ports == (f"{low}:{high}",):
            continue
        for port in rule.ports:
            a, b = port_span(port)
            if rule.proto == "tcp" and a <= high and b >= low:
                err.add("ftp_passive_ports", passive,
                        f"overlaps port {port}/tcp opened by '{rule.label}'", where)
                return


def resolve_host(inventory: Any, host: Any) -> HostPlan:
    """The plan for one pyinfra host, or ``FleetDataError`` naming every problem."""
    plan, errors = resolve(host.name, inventory_layers(inventory, host))
    if errors:
        raise FleetDataError(errors)
    assert plan is not None
    return plan


def check_inventory(inventory: Any) -> dict[str, HostPlan]:
    """Validate every host of ``inventory``; raise one ``FleetDataError`` for all problems."""
    plans: dict[str, HostPlan] = {}
    errors: list[str] = []
    for host in inventory:
        plan, problems = resolve(host.name, inventory_layers(inventory, host))
        errors.extend(problems)
        if plan:
            plans[host.name] = plan
    if errors:
        raise FleetDataError(errors)
    return plans
