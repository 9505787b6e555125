"""UFW rules as ufw stores them, and the plan that turns current rules into desired ones.

ufw keeps one ``### tuple ###`` line per rule in ``/etc/ufw/user.rules`` (IPv4) and
``user6.rules`` (IPv6). A ``UfwRule`` is one such line, normalised; ``plan_rules``
compares them with the ``RuleSpec``s of a ``HostPlan``.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

from .catalog import MARKER
from .validation import RuleSpec, port_span

ANY = {4: "0.0.0.0/0", 6: "::/0"}


@dataclass(frozen=True)
class UfwRule:
    """One ``### tuple ###`` line: ``action proto dport dst sport src [dapp sapp] iface``."""

    family: int
    action: str  # allow, deny, reject, limit, possibly "_log"/"_log-all", "route:" prefix
    proto: str
    dport: str
    dst: str
    sport: str
    src: str
    iface: str = "in"  # "in", "out", "in_eth0", "in_eth0!out_eth1"
    dapp: str = "-"
    sapp: str = "-"
    comment: str = ""

    @property
    def key(self) -> tuple:
        """What ufw compares to decide "same rule" (all but action, log type and comment)."""
        forward = self.action.startswith("route:")
        return (self.family, forward, self.proto, self.dport, self.dst, self.sport,
                self.src, self.iface, self.dapp, self.sapp)

    @property
    def verdict(self) -> str:
        return self.action.split(":")[-1].split("_")[0]

    @property
    def managed(self) -> bool:
        return self.comment.startswith(MARKER)

    @property
    def label(self) -> str:
        if not self.managed:
            return "unmanaged"
        return self.comment[len(MARKER):].split(" ", 1)[0] or "unmanaged"

    def tuple_text(self) -> str:
        """The tuple as ufw writes it (used to find the rule again on the host)."""
        fields = [self.action, self.proto, self.dport, self.dst, self.sport, self.src]
        if self.dapp != "-" or self.sapp != "-":
            fields += [self.dapp, self.sapp]
        fields.append(self.iface)
        text = " ".join(fields)
        if self.comment:
            text += " comment=" + self.comment.encode("utf-8").hex()
        return text

    def describe(self) -> str:
        """Human form, close to ``ufw show added``: ``allow 80,443/tcp from 10.0.0.0/8``."""
        port = self.dport if self.dapp == "-" else self.dapp.replace("%20", " ")
        text = f"{self.action} {port}" + (f"/{self.proto}" if self.proto != "any" else "")
        if self.src != ANY[self.family]:
            text += f" from {self.src}"
        if self.dst != ANY[self.family]:
            text += f" to {self.dst}"
        if self.sport != "any":
            text += f" sport {self.sport}"
        if self.iface not in ("in",):
            text += f" [{self.iface}]"
        return text


def parse_tuple_line(line: str, family: int) -> UfwRule | None:
    """Parse ``### tuple ### allow tcp 22 0.0.0.0/0 any 0.0.0.0/0 in comment=6869``."""
    if not line.startswith("### tuple ###"):
        return None
    body = line[len("### tuple ###"):].strip()
    comment = ""
    if " comment=" in body:
        body, hexed = body.split(" comment=", 1)
        try:
            comment = bytes.fromhex(hexed.strip()).decode("utf-8", "replace")
        except ValueError:
            comment = hexed.strip()
    parts = body.split()
    if len(parts) == 7:
        action, proto, dport, dst, sport, src, iface = parts
        dapp = sapp = "-"
    elif len(parts) == 9:
        action, proto, dport, dst, sport, src, dapp, sapp, iface = parts
    else:
        return None  # ufw itself skips malformed tuples
    return UfwRule(family, action, proto, dport, dst, sport, src, iface, dapp, sapp, comment)


def expand(spec: RuleSpec, ipv6: bool) -> list[UfwRule]:
    """The tuples ufw writes for ``ufw <spec.ufw_args()>``: v4 and/or v6."""
    families = [4, 6] if ipv6 else [4]
    if spec.source is not None:
        families = [ipaddress.ip_network(spec.source, strict=False).version]
    return [
        UfwRule(fam, "allow", spec.proto, spec.dport, ANY[fam], "any",
                spec.source or ANY[fam], "in", comment=spec.comment)
        for fam in families
    ]


def describe_spec(spec: RuleSpec, ipv6: bool = True) -> str:
    """A wanted rule as ufw would show it once added: ``allow 80,443/tcp``."""
    return expand(spec, ipv6)[0].describe()


@dataclass
class RulePlan:
    """What to change: ``add`` via the ufw CLI path, ``delete`` by tuple."""

    add: list[RuleSpec] = field(default_factory=list)
    retag: list[tuple[RuleSpec, UfwRule]] = field(default_factory=list)  # comment updated in place
    delete: list[UfwRule] = field(default_factory=list)
    kept: list[UfwRule] = field(default_factory=list)  # unmanaged, left alone
    final: list[UfwRule] = field(default_factory=list)  # resulting rules, in ufw's order

    @property
    def changes(self) -> bool:
        return bool(self.add or self.delete)


def plan_rules(current: list[UfwRule], wanted: tuple[RuleSpec, ...], ipv6: bool,
               purge_unmanaged: bool) -> RulePlan:
    plan = RulePlan()
    by_key = {r.key: r for r in current}
    wanted_keys: dict[tuple, UfwRule] = {}
    for spec in wanted:
        missing = False
        for rule in expand(spec, ipv6):
            wanted_keys[rule.key] = rule
            have = by_key.get(rule.key)
            if have is None or have.action != rule.action or have.comment != rule.comment:
                missing = True
                if have is not None:
                    plan.retag.append((spec, have))
        if missing:
            plan.add.append(spec)
    added_keys = set()
    for rule in current:
        if rule.key in wanted_keys:
            plan.final.append(wanted_keys[rule.key])  # updated in place by ufw
            added_keys.add(rule.key)
        elif rule.managed or purge_unmanaged:
            plan.delete.append(rule)
        else:
            plan.kept.append(rule)
            plan.final.append(rule)
    plan.final += [r for k, r in wanted_keys.items() if k not in added_keys]
    return plan


# --- lockout guard -----------------------------------------------------------------------

def port_matches(dport: str, port: int) -> bool:
    if dport == "any":
        return True
    for item in dport.split(","):
        low, high = port_span(item)
        if low <= port <= high:
            return True
    return False


def _address_in(address: str, network: str) -> bool:
    try:
        return ipaddress.ip_address(address) in ipaddress.ip_network(network, strict=False)
    except ValueError:
        return False


def admits(rules: list[UfwRule], incoming_policy: str, client: str, server: str,
           port: int, proto: str = "tcp") -> bool:
    """Would ufw with ``rules`` and ``incoming_policy`` accept a new ``proto`` connection
    from ``client`` to ``server:port``? First matching rule wins, as in ufw's chains.
    Rules we can't evaluate (interface or source-port rules) count as not matching."""
    client = client.removeprefix("::ffff:")
    server = server.removeprefix("::ffff:")
    family = ipaddress.ip_address(client).version
    for rule in rules:
        if rule.family != family or rule.iface != "in" or rule.action.startswith("route:"):
            continue
        if rule.proto not in ("any", proto) or rule.sport != "any":
            continue
        if not port_matches(rule.dport, port):
            continue
        if not (_address_in(client, rule.src) and _address_in(server, rule.dst)):
            continue
        return rule.verdict in ("allow", "limit")
    return incoming_policy == "allow"
