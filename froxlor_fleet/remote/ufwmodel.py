"""UFW rules as ufw stores them, the plan from current to wanted rules, and the lockout
guard's model. Shared by both sides: the control side plans and previews with it, and
the host program (``ufw_apply.py`` and ``transaction.py`` import it) plans again under
the host lock, so a run that waited for another never applies a stale plan.

Stdlib only, Python 3.7+ syntax (the hosts' own python3: 3.9 on Debian 11).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field, replace

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (mypy: true)
if TYPE_CHECKING:
    from typing import Any, Dict, List, Optional, Tuple

    # ``UfwRule.key``: family, forward, proto, dport, dst, sport, src, iface, dapp, sapp
    RuleKey = Tuple[int, bool, str, str, str, str, str, str, str, str]

MARKER = "froxlor-fleet:"
ANY = {4: "0.0.0.0/0", 6: "::/0"}
# Verdicts that still admit a new connection (limit: ufw's ``-m recent`` rules refuse a
# source's 6th new connection within 30 s, and admit the 5 before it).
ADMITTING = ("allow", "limit")
# Verdicts that stop a connection. ufw appends a new rule and the first match wins, so
# a wanted one is added with ``ufw prepend`` (src/parser.py: position -1), before the
# allows it is meant to cut into.
BLOCKING = ("deny", "reject")


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
    def key(self) -> RuleKey:
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
        action = self.action.replace("_", " ")
        text = f"{action} {port}" + (f"/{self.proto}" if self.proto != "any" else "")
        if self.src != ANY[self.family]:
            text += f" from {self.src}"
        if self.dst != ANY[self.family]:
            text += f" to {self.dst}"
        if self.sport != "any":
            text += f" sport {self.sport}"
        if self.iface not in ("in",):
            text += f" [{self.iface}]"
        return text


# fail2ban's ufw action (config/action.d/ufw.conf, fail2ban 1.0 on): ``ufw prepend
# <blocktype> from <ip> to any comment "by Fail2Ban after <failures> attempts against
# <jail>"``. Older releases add ``deny from <ip>`` without a comment, which nothing tells
# apart from an admin's own: those count as hand-made rules.
FAIL2BAN_COMMENT = "by Fail2Ban"


def ban_jail(rule: UfwRule) -> Optional[str]:
    """The fail2ban jail that made ``rule`` (a ban: another tenant's rule, never ours to
    delete), or None. fail2ban's comment names the jail last."""
    if not rule.comment.startswith(FAIL2BAN_COMMENT):
        return None
    words = rule.comment.split()
    return words[-1] if len(words) > 2 and words[-2] == "against" else "fail2ban"


def parse_tuple_line(line: str, family: int) -> Optional[UfwRule]:
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


def parse_rules(lines4: List[str], lines6: List[str]) -> List[UfwRule]:
    """Every rule of user.rules then user6.rules, in file order."""
    rules = []
    for family, lines in ((4, lines4), (6, lines6)):
        for line in lines:
            rule = parse_tuple_line(line, family)
            if rule:
                rules.append(rule)
    return rules


@dataclass(frozen=True)
class Want:
    """A rule the deploy wants, as it travels to the host: ``dport`` in ufw's notation
    ("22", "80,443", "49152:65534"), ``source`` normalised or ``None`` (anywhere),
    ``action`` as ufw stores it ("allow", "deny", "reject", "limit"; "allow_log"... for
    an adopted hand-made rule).

    ``prepend`` is the plan's choice, not part of what is wanted (``to_wire`` leaves it
    out): ``plan_rules`` sets it on a deny/reject it adds as a new rule."""

    dport: str
    proto: str
    source: Optional[str]
    comment: str
    action: str = "allow"
    prepend: bool = False

    @property
    def label(self) -> str:
        """The role (or "extra") this deploy's marker names."""
        return self.comment[len(MARKER):].split(" ", 1)[0] if self.comment.startswith(MARKER) else ""

    @property
    def verdict(self) -> str:
        return self.action.split("_")[0]

    def ufw_args(self) -> List[str]:
        """The ``ufw`` CLI arguments that add it:
        ``[prepend] allow [log] proto tcp from ... to any port ... comment ...``."""
        verdict, _, log = self.action.partition("_")
        return ((["prepend"] if self.prepend else []) + [verdict] + ([log] if log else [])
                + ["proto", self.proto, "from", self.source or "any", "to", "any",
                   "port", self.dport, "comment", self.comment])

    def to_wire(self) -> Dict[str, Any]:
        return {"dport": self.dport, "proto": self.proto, "source": self.source,
                "comment": self.comment, "action": self.action}


def family_of(address: str) -> int:
    return ipaddress.ip_network(address, strict=False).version


def expand(want: Want, ipv6: bool) -> List[UfwRule]:
    """The tuples ufw writes for ``ufw <want.ufw_args()>``: v4 and/or v6."""
    families = [4, 6] if ipv6 else [4]
    if want.source is not None:
        families = [family_of(want.source)]
    return [UfwRule(fam, want.action, want.proto, want.dport, ANY[fam], "any",
                    want.source or ANY[fam], "in", comment=want.comment)
            for fam in families]


def _keeps_hand_action(have: UfwRule, wanted: UfwRule) -> bool:
    """Keep the action of a rule already in a wanted slot instead of replacing it:

    - a logging variant of the wanted verdict (``deny_log`` for ``deny``, ``limit_log``
      for ``limit``): the same verdict, and someone wanted the log lines;
    - a hand-made ``limit`` or logging ``allow`` where we want ``allow``: it still admits
      what the rule is for, and is never silently loosened. Once adopted it carries the
      wanted rule's comment, and is kept on later runs. A ``limit`` this deploy made
      from data carries another comment ("... rate-limit"), so when the data goes back
      to ``allow``, so does the rule.
    """
    if have.action == wanted.action or have.action.startswith("route:"):
        return False
    if have.verdict == wanted.action:
        return True
    return (wanted.action == "allow" and have.verdict in ADMITTING
            and (not have.managed or have.comment == wanted.comment))


@dataclass
class RulePlan:
    """What to change: ``add`` via the ufw CLI path, ``delete`` by tuple."""

    add: List[Want] = field(default_factory=list)
    retag: List[Tuple[Want, UfwRule]] = field(default_factory=list)  # updated in place
    delete: List[UfwRule] = field(default_factory=list)
    kept: List[UfwRule] = field(default_factory=list)  # unmanaged, left alone
    bans: List[UfwRule] = field(default_factory=list)  # fail2ban's (``ban_jail``), left alone
    inert: List[UfwRule] = field(default_factory=list)  # v6 rules while IPV6=no
    final: List[UfwRule] = field(default_factory=list)  # resulting rules, in ufw's order
    # (wanted deny/reject, an earlier rule that admits some of what it should stop)
    shadowed: List[Tuple[UfwRule, UfwRule]] = field(default_factory=list)

    @property
    def changes(self) -> bool:
        return bool(self.add or self.delete)

    def shadowing(self, want: Want, ipv6: bool) -> Optional[UfwRule]:
        """The earlier admitting rule that matches first some of what ``want`` (a deny or
        reject) should stop, or None."""
        keys = {r.key for r in expand(want, ipv6)}
        return next((by for rule, by in self.shadowed if rule.key in keys), None)


def plan_rules(current: List[UfwRule], wanted: List[Want], ipv6: bool,
               purge_unmanaged: bool) -> RulePlan:
    """From ``current`` (the rule files, in order) to ``wanted``.

    ufw keeps one rule per slot (``UfwRule.key``): adding a wanted rule whose slot holds
    another action or comment updates that rule in place (src/backend_iptables.py,
    set_rule). A new allow or limit is appended; a new deny or reject is prepended, so it
    comes before the allows. ``ufw prepend`` skips a rule whose slot exists in any form
    ("Skipping inserting existing rule"), so a deny/reject that must update an existing
    rule is added without it and stays where that rule is. ``final`` replays all of this
    per family, in the order ufw will hold the rules; the lockout guard reads it.
    """
    plan = RulePlan()
    # With IPV6=no ufw neither loads nor edits user6.rules: its rules are inert, and a
    # plan that deleted them would repeat on every run.
    live = [r for r in current if ipv6 or r.family == 4]
    plan.inert = [r for r in current if not ipv6 and r.family == 6]
    by_key = {r.key: r for r in live}
    wanted_keys: Dict[RuleKey, UfwRule] = {}
    appended: List[Want] = []
    prepended: List[Want] = []
    for want in wanted:
        missing = updated = False
        retagged = []
        for rule in expand(want, ipv6):
            have = by_key.get(rule.key)
            if have is not None and _keeps_hand_action(have, rule):
                want = replace(want, action=have.action)
                rule = replace(rule, action=have.action)
            wanted_keys[rule.key] = rule
            if have is None or have.action != rule.action or have.comment != rule.comment:
                missing = True
                if have is not None:
                    updated = True
                    retagged.append(have)
        if not missing:
            continue
        if want.verdict in BLOCKING and not updated:
            want = replace(want, prepend=True)
            prepended.append(want)
        else:
            appended.append(want)
        plan.retag += [(want, have) for have in retagged]
    # Each prepend goes to the top: the last one added ends up first, so add them in
    # reverse to keep the data's order.
    plan.add = appended + prepended[::-1]
    for rule in live:
        if rule.key in wanted_keys:
            continue
        if rule.managed:
            plan.delete.append(rule)
        elif ban_jail(rule) is not None:
            plan.bans.append(rule)  # another tenant's: even purge leaves it
        elif purge_unmanaged:
            plan.delete.append(rule)
        else:
            plan.kept.append(rule)
    plan.final = _replay(live, plan.add, plan.delete, ipv6)
    plan.shadowed = _shadowed(plan.final, wanted_keys)
    return plan


def _replay(live: List[UfwRule], add: List[Want], delete: List[UfwRule],
            ipv6: bool) -> List[UfwRule]:
    """The rules after ``ufw`` adds ``add`` in order and then deletes ``delete``, as
    src/frontend.py and src/backend_iptables.py set_rule do it, per family."""
    order = {4: [r for r in live if r.family == 4], 6: [r for r in live if r.family == 6]}
    for want in add:
        for rule in expand(want, ipv6):
            rules = order[rule.family]
            at = next((i for i, r in enumerate(rules) if r.key == rule.key), None)
            if at is not None:
                if not want.prepend:  # a prepend skips a slot that exists
                    rules[at] = rule
            elif want.prepend:
                rules.insert(0, rule)
            else:
                rules.append(rule)
    gone = {r.key for r in delete}
    return [r for fam in (4, 6) for r in order[fam] if r.key not in gone]


def _shadowed(final: List[UfwRule], wanted: Dict[RuleKey, UfwRule]) -> List[Tuple[UfwRule, UfwRule]]:
    found = []
    for i, rule in enumerate(final):
        if rule.key not in wanted or rule.verdict not in BLOCKING:
            continue
        earlier = next((r for r in final[:i] if r.verdict in ADMITTING and _overlap(r, rule)), None)
        if earlier is not None:
            found.append((rule, earlier))
    return found


def _overlap(a: UfwRule, b: UfwRule) -> bool:
    """Could a new incoming connection match both ``a`` and ``b``? (Unsure: yes.)"""
    if a.family != b.family or a.action.startswith("route:") or b.action.startswith("route:"):
        return False
    if not (a.iface.startswith("in") and b.iface.startswith("in")):
        return False
    a_if, b_if = a.iface.partition("_")[2], b.iface.partition("_")[2]
    if a_if and b_if and a_if != b_if:
        return False
    if "any" not in (a.proto, b.proto) and a.proto != b.proto:
        return False
    return (_ports_overlap(a.dport, b.dport) and _ports_overlap(a.sport, b.sport)
            and _nets_overlap(a.src, b.src) and _nets_overlap(a.dst, b.dst))


def _ports_overlap(a: str, b: str) -> bool:
    if "any" in (a, b):
        return True
    try:
        spans = [[port_span(p) for p in ports.split(",")] for ports in (a, b)]
    except ValueError:
        return True  # an application rule's port list: can't tell
    return any(lo1 <= hi2 and lo2 <= hi1 for lo1, hi1 in spans[0] for lo2, hi2 in spans[1])


def _nets_overlap(a: str, b: str) -> bool:
    try:
        na, nb = ipaddress.ip_network(a, strict=False), ipaddress.ip_network(b, strict=False)
    except ValueError:
        return True
    return na.version == nb.version and na.overlaps(nb)


# --- lockout guard -----------------------------------------------------------------------

def port_span(port: str) -> Tuple[int, int]:
    low, _, high = port.partition(":")
    return int(low), int(high or low)


def port_matches(dport: str, port: int) -> bool:
    if dport == "any":
        return True
    for item in dport.split(","):
        low, high = port_span(item)
        if low <= port <= high:
            return True
    return False


def _address_in(address: str, network: str) -> Optional[bool]:
    """None when ``network`` is a form ufw keeps verbatim but Python can't read (e.g. a
    hand-made ``10.0.0.0/255.0.255.0``): the guard then treats the rule as "might match"."""
    try:
        return ipaddress.ip_address(address) in ipaddress.ip_network(network, strict=False)
    except ValueError:
        return None


def unmapped(address: str) -> str:
    """``::ffff:a.b.c.d`` (a v4 client on a dual-stack socket) as the v4 address it is."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address
    mapped = getattr(ip, "ipv4_mapped", None)
    return str(mapped) if mapped else str(ip)


@dataclass(frozen=True)
class Session:
    """The SSH connection the deploy uses, as the host sees it."""

    client: str
    server: str
    port: int
    iface: Optional[str] = None  # interface holding ``server``; None: unknown

    def to_wire(self) -> Dict[str, Any]:
        return {"client": self.client, "server": self.server, "port": self.port,
                "iface": self.iface}


def _may_match(rule: UfwRule, session: Session, family: int, proto: str) -> Optional[bool]:
    """Does ``rule`` match a new connection of ``session``? True, False, or None when it
    depends on what we can't know (a source port: each new connection picks another)."""
    if rule.family != family or rule.action.startswith("route:"):
        return False
    direction, _, iface = rule.iface.partition("_")
    if direction != "in":
        return False  # "out" rules never see incoming packets
    if rule.proto not in ("any", proto) or not port_matches(rule.dport, session.port):
        return False
    client, server = unmapped(session.client), unmapped(session.server)
    addressed = [_address_in(client, rule.src), _address_in(server, rule.dst)]
    if False in addressed:
        return False
    unsure = None in addressed
    if iface:
        if session.iface is None:
            unsure = True
        elif iface != session.iface:
            return False
    if rule.sport != "any":
        unsure = True
    return None if unsure else True


def admits(rules: List[UfwRule], incoming_policy: str, session: Session, ipv6: bool,
           proto: str = "tcp") -> bool:
    """Would ufw with ``rules`` and ``incoming_policy`` accept a *new* connection like
    ``session``? First matching rule wins, as in ufw's chains. Fails closed: a deny,
    reject that might match counts as matching; an allow that might not, as not."""
    family = ipaddress.ip_address(unmapped(session.client)).version
    if family == 6 and not ipv6:
        return False  # IPV6=no: ufw-init sets the v6 INPUT policy to DROP
    for rule in rules:
        match = _may_match(rule, session, family, proto)
        if match is False:
            continue
        if rule.verdict in ADMITTING:
            if match:
                return True
            continue  # an allow we can't be sure of does not count
        return False  # deny/reject that matches, or might
    return incoming_policy == "allow"


# --- the decisions both sides make on a plan ----------------------------------------------
# The control side decides on the state it read; the host decides again on the plan it
# makes under its lock. Both call these, so the two can never disagree on the rule.

GUARD_NO_SESSION = "no-session"  # over SSH, the session could not be found
GUARD_NOT_ADMITTED = "not-admitted"  # the result would not admit the session


def touches_port(plan: RulePlan, port: int) -> bool:
    """Does the plan add or delete a rule that covers ``port``?"""
    ports = [w.dport for w in plan.add] + [r.dport for r in plan.delete]
    return any(port_matches(dport, port) for dport in ports)


def lockout_risk(plan: RulePlan, *, enabled: bool, active: bool, incoming_now: str,
                 incoming: str, session: Optional[Session], ipv6: bool, ssh_port: int,
                 over_ssh: bool) -> Optional[str]:
    """Why applying ``plan`` (and the policy/state with it) may lock the operator out:
    ``GUARD_NO_SESSION``, ``GUARD_NOT_ADMITTED``, or None when it is safe. Fails closed:
    over SSH with a session that could not be found (sudo, su, a jump host...), anything
    that could cut SSH is a risk: enabling UFW, a new incoming policy, rules on its port."""
    if not enabled:
        return None  # a disabled firewall locks nobody out
    if session is None:
        if not over_ssh:
            return None  # not over SSH (e.g. @local, @docker): nothing to lock out
        risky = not active or incoming != incoming_now or touches_port(plan, ssh_port)
        return GUARD_NO_SESSION if risky else None
    return None if admits(plan.final, incoming, session, ipv6) else GUARD_NOT_ADMITTED


def needs_confirming(plan: RulePlan, *, enable: bool, incoming_changes: bool) -> bool:
    """Could this change affect who reaches the host (and so be commit-confirmed)? Any
    rule change, enabling UFW, or a new incoming policy."""
    return plan.changes or enable or incoming_changes
