"""The audit's comparison: one host's plan against what it really has. Pure, no I/O.

Every difference becomes a ``Finding`` with a severity that decides the exit status:

- ``error``  (exit 2): the host could not be audited (unreachable, bad data), the
  inventory itself is wrong, or an ftp host's FTP daemon is down (nothing listens on
  its port: customers have no FTP, and no deploy starts it);
- ``drift``  (exit 1): the deploy would change something on this host, or the host does
  not do what its data says (a deny an earlier allow matches first, a passive range
  ProFTPd and UFW disagree on, an FTP daemon still running on files it never
  loaded, UFW filtering while ufw.conf says ``ENABLED=no``);
- ``notice`` (exit 0): worth knowing, but the firewall is what the data says —
  listening-but-blocked sockets, admitted ports where nothing listens, and hand-made
  rules while ``firewall_purge_unmanaged`` is off (the deploy keeps them), fail2ban's
  bans (counted per jail: another tenant's rules, which no run touches).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from ..facts import HostState, UfwState
from ..ftpconf.dump import FtpConfig
from ..model.catalog import FRAGMENT_PATH
from ..model.groups import GroupAddresses
from ..model.plan import HostPlan
from ..model.ufwrules import ANY, UfwRule, admits, describe_spec, plan_rules, port_matches
from ..operations.ftpplan import (
    PUREFTPD_CONF_DIR,
    daemon_for,
    fragment_digest,
    fragment_for,
    fragment_loaded,
    pureftpd_files,
    pureftpd_loaded,
)
from ..operations.tenants import TENANT_KINDS, conflicts
from ..remote.ufwmodel import ADMITTING, BLOCKING, RulePlan, ban_jail
from .fact import AuditState, Listening

if TYPE_CHECKING:
    from .probe import HostProbe

# The froxlor ports of the text report's grid (plus the host's ssh_port when not 22).
GRID: tuple[tuple[int, str], ...] = (
    (22, "tcp"), (21, "tcp"), (80, "tcp"), (443, "tcp"), (443, "udp"), (25, "tcp"), (465, "tcp"),
    (587, "tcp"), (143, "tcp"), (993, "tcp"), (110, "tcp"), (995, "tcp"), (53, "tcp"),
    (53, "udp"), (3306, "tcp"))
# "Somebody on the internet": documentation addresses (RFC 5737, RFC 3849).
OUTSIDE = {4: "198.51.100.7", 6: "2001:db8::7"}

SEVERITY_EXIT = {"error": 2, "drift": 1, "notice": 0}
VERDICTS = ("ok", "drift", "unreachable", "error")
KINDS = ("usage_error", "inventory_error", "limit_unmatched", "output_error", "internal_error",
         "data_error", "unreachable", "ufw_missing",
         "missing_rule", "retag_rule", "action_rule", "shadowed_rule", "stray_rule",
         "unmanaged_rule", "setting", "passive_disagree", "passive_mismatch", "fragment_drift",
         "listening_blocked", "idle_admitted", "ftp_not_loaded", "force_passive_ip", "ftp_down",
         "ufw_not_enabled", "bans", *TENANT_KINDS,
         # audit --probe (probe.py): the view from the control node
         "probe_ftp_failed", "probe_passive_outside", "probe_data_failed", "probe_port_closed",
         "probe_unreachable", "probe_incomplete")
# UfwSummary.state: chains loaded (it filters) and ENABLED=yes; loaded while ufw.conf
# says ENABLED=no (filters now, not after a reboot); not loaded; not installed.
UFW_STATES = ("active", "running_disabled", "inactive", "missing")


@dataclass(frozen=True)
class Finding:
    """One thing the audit found. ``port`` is set when it concerns exactly one port;
    ``ports`` holds a rule's ports in ufw's notation ("110,995", "49152:65534")."""

    kind: str
    severity: str  # error | drift | notice
    host: str | None
    detail: str  # one line for people, without the host name
    port: int | None = None
    ports: str | None = None
    proto: str | None = None
    role: str | None = None
    processes: tuple[str, ...] = ()
    jails: tuple[tuple[str, int], ...] = ()  # kind "bans": (jail, bans), most first


@dataclass(frozen=True)
class PortState:
    """Whether the firewall admits ``port``/``proto`` from anywhere, and who listens."""

    port: int
    proto: str
    admitted: str  # open | restricted (some sources/interfaces only) | blocked
    listening: bool
    processes: tuple[str, ...] = ()


@dataclass(frozen=True)
class UfwSummary:
    state: str  # one of UFW_STATES
    incoming: str
    outgoing: str
    logging: str
    ipv6: bool
    running: bool = False  # ufw's chains are loaded: it filters now
    conf_enabled: bool = False  # ENABLED=yes in ufw.conf: it filters after a reboot


@dataclass(frozen=True)
class Passive:
    """The FTP passive range (``low:high``, ``None``: none) as the data wants it, as
    ProFTPd uses it, and as the ftp rules in UFW open it.

    On an ftp host ``proftpd`` is the range the FTP daemon really uses (the name stays
    for the JSON contract): ProFTPd's first ``PassivePorts`` (proftpd.conf, its
    Includes, conf.d/ in its order), or pure-ftpd's ``PassivePortRange``;
    ``proftpd_origin`` where that comes from (file:line, or the pure-ftpd file),
    ``fragment`` the range in this deploy's fragment. On other hosts ``proftpd`` is the
    fragment's range (a leftover fragment the deploy removes)."""

    wanted: str | None
    proftpd: str | None
    ufw: str | None
    proftpd_origin: str | None = None
    fragment: str | None = None

    @property
    def match(self) -> bool:
        return self.wanted == self.proftpd == self.ufw


@dataclass
class HostAudit:
    host: str
    roles: tuple[str, ...] = ()
    purge_unmanaged: bool = False
    ssh_port: int = 22
    ufw: UfwSummary | None = None  # None: not read (unreachable, bad data)
    passive: Passive | None = None
    ports: list[PortState] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    probe: HostProbe | None = None  # audit --probe: what the control node saw (probe.py)
    # What each inventory group its data names as a source became (groups.resolve_groups)
    source_groups: tuple[GroupAddresses, ...] = ()

    @property
    def verdict(self) -> str:
        kinds = {f.kind for f in self.findings}
        if "unreachable" in kinds:
            return "unreachable"
        severities = {f.severity for f in self.findings}
        if "error" in severities:
            return "error"
        return "drift" if "drift" in severities else "ok"

    def count(self, *kinds: str) -> int:
        return sum(f.kind in kinds for f in self.findings)

    def port(self, port: int, proto: str) -> PortState | None:
        return next((p for p in self.ports if (p.port, p.proto) == (port, proto)), None)


@dataclass
class FleetAudit:
    """One audit run: what was asked, every targeted host, and run-wide problems."""

    inventory: str | None  # None: the command line named none
    limit: tuple[str, ...] = ()
    hosts: list[HostAudit] = field(default_factory=list)
    errors: list[Finding] = field(default_factory=list)  # inventory / --limit problems
    not_managed: list[str] = field(default_factory=list)  # targets without froxlor_roles

    @property
    def exit_status(self) -> int:
        return exit_status(self.hosts, self.errors)

    @property
    def findings(self) -> list[Finding]:
        return self.errors + [f for a in self.hosts for f in a.findings]

    def count(self, verdict: str) -> int:
        return sum(a.verdict == verdict for a in self.hosts)


# --- hosts that could not be read -------------------------------------------------------

def unreachable(host: str, plan: HostPlan, error: str) -> HostAudit:
    finding = Finding("unreachable", "error", host, f"unreachable: {error}")
    return HostAudit(host, plan.roles, plan.purge_unmanaged, plan.ssh_port, findings=[finding])


def bad_data(host: str, problems: Iterable[str]) -> HostAudit:
    return HostAudit(host, findings=[Finding("data_error", "error", host, line)
                                     for line in problems])


def fleet_error(kind: str, detail: str) -> Finding:
    """A problem of the whole run (inventory, --limit), not of one host."""
    return Finding(kind, "error", None, detail)


def exit_status(audits: Iterable[HostAudit], fleet: Iterable[Finding] = ()) -> int:
    """0 the fleet matches its data, 1 drift, 2 errors (the highest wins)."""
    findings = [f for a in audits for f in a.findings] + list(fleet)
    return max((SEVERITY_EXIT[f.severity] for f in findings), default=0)


# --- the comparison ---------------------------------------------------------------------

def audit_host(plan: HostPlan, seen: AuditState) -> HostAudit:
    """Compare one host's state with its plan."""
    ufw = seen.state.ufw
    audit = HostAudit(plan.host, plan.roles, plan.purge_unmanaged, plan.ssh_port,
                      UfwSummary(ufw_state(ufw), ufw.incoming, ufw.outgoing, ufw.logging,
                                 ufw.ipv6, ufw.running, ufw.conf_enabled))
    # The deploy's own split of the rules: with IPV6=no the v6 rules are inert (ufw
    # neither loads nor edits them), fail2ban's bans are another tenant's.
    rules = plan_rules(ufw.rules, plan.rules, ufw.ipv6, purge_unmanaged=False)
    inert = {id(r) for r in rules.inert}
    live = replace(ufw, rules=[r for r in ufw.rules if id(r) not in inert])
    if ufw.installed:
        audit.findings += _rule_findings(plan, ufw)
        audit.findings += _setting_findings(plan, ufw)
    else:
        audit.findings.append(Finding("ufw_missing", "drift", plan.host, "ufw is not installed"))
    # The FTP daemon the deploy manages here (None: no ftp role, or it can't tell).
    daemon = daemon_for(plan, seen.state).daemon
    audit.passive, passive_findings = _passive(plan, seen.state, live, daemon)
    audit.findings += passive_findings
    audit.findings += _daemon_findings(plan, seen.state, daemon)
    server = seen.state.ssh_server or "0.0.0.0"
    audit.ports = _ports(plan, live, rules, server, seen.listening)
    down = _ftp_down(plan, seen, daemon)
    audit.findings += down
    audit.findings += _port_findings(plan, audit.ports, {(f.port, f.proto) for f in down})
    audit.findings += _ban_findings(plan, rules)
    audit.findings += [Finding(c.name, c.severity, plan.host, c.text)
                       for c in conflicts(seen.state)]
    return audit


def ufw_state(ufw: UfwState) -> str:
    """One of ``UFW_STATES``: whether UFW filters now (its chains are loaded), and
    whether ufw.conf has it filter after a reboot."""
    if not ufw.installed:
        return "missing"
    if ufw.running:
        return "active" if ufw.conf_enabled else "running_disabled"
    return "inactive"


def _rule_port(dport: str) -> int | None:
    return int(dport) if dport.isdigit() else None


def _rule_finding(kind: str, severity: str, host: str, detail: str, dport: str, proto: str,
                  role: str | None) -> Finding:
    return Finding(kind, severity, host, detail, port=_rule_port(dport), ports=dport,
                   proto=None if proto == "any" else proto, role=role)


def _rule_findings(plan: HostPlan, ufw: UfwState) -> list[Finding]:
    rules = plan_rules(ufw.rules, plan.rules, ufw.ipv6, purge_unmanaged=False)
    found: list[Finding] = []
    for want in rules.add:
        text = f"{describe_spec(want, ufw.ipv6)} ({want.label})"
        # A rule in the wanted slot (ports, proto, source) that ufw will update in place.
        held = _unique(have for wanted, have in rules.retag if wanted is want)
        other = [have for have in held if have.action != want.action]
        if other:
            found.append(_rule_finding("action_rule", "drift", plan.host,
                                       f"{other[0].describe()} should be "
                                       f"{want.action.replace('_', ' ')} ({want.label})",
                                       want.dport, want.proto, want.label))
        elif held:
            found.append(_rule_finding("retag_rule", "drift", plan.host,
                                       f"rule {text} exists without this deploy's marker",
                                       want.dport, want.proto, want.label))
        else:
            found.append(_rule_finding("missing_rule", "drift", plan.host,
                                       f"missing rule {text}", want.dport, want.proto,
                                       want.label))
    for rule in _unique(rules.delete):
        found.append(_rule_finding("stray_rule", "drift", plan.host,
                                   f"stray managed rule {rule.describe()} ({rule.label})",
                                   rule.dport, rule.proto, rule.label))
    severity = "drift" if plan.purge_unmanaged else "notice"
    for rule in _unique(rules.kept):
        note = f"  # {rule.comment}" if rule.comment else ""
        found.append(_rule_finding("unmanaged_rule", severity, plan.host,
                                   f"unmanaged rule {rule.describe()}{note}",
                                   rule.dport, rule.proto, None))
    # A wanted deny/reject an earlier allow still matches first once the deploy ran (with
    # purge on it deletes hand-made allows first): ufw's first match wins, so the deny
    # stops less than the data says, and no run moves it (ufw updates a rule in place).
    after = rules if not plan.purge_unmanaged else plan_rules(
        ufw.rules, plan.rules, ufw.ipv6, purge_unmanaged=True)
    shadowed: dict[str, tuple[UfwRule, UfwRule]] = {}
    for rule, by in after.shadowed:
        shadowed.setdefault(rule.describe() + rule.comment, (rule, by))
    for key in sorted(shadowed):
        rule, by = shadowed[key]
        found.append(_rule_finding(
            "shadowed_rule", "drift", plan.host,
            f"{rule.describe()} ({rule.label}) is shadowed: {by.describe()} ({by.label}) "
            f"matches first; delete the {rule.verdict} by hand and deploy again to put it first",
            rule.dport, rule.proto, rule.label))
    return found


def _unique(rules: Iterable[UfwRule]) -> list[UfwRule]:
    # ufw keeps a v4 and a v6 twin of most rules; people read them as one.
    seen: dict[str, UfwRule] = {}
    for rule in rules:
        seen.setdefault(rule.describe() + rule.comment, rule)
    return [seen[k] for k in sorted(seen)]


def _setting_findings(plan: HostPlan, ufw: UfwState) -> list[Finding]:
    found = [Finding("setting", "drift", plan.host, f"{what} {have} (want {want})")
             for what, have, want in (("incoming", ufw.incoming, plan.incoming),
                                      ("outgoing", ufw.outgoing, plan.outgoing),
                                      ("logging", ufw.logging, plan.logging))
             if have != want]
    # ufw.rules_and_policies: "enable" when wanted and not active (ENABLED=yes and
    # running), "disable" when unwanted and either holds.
    if plan.enabled and ufw.running and not ufw.conf_enabled:
        found.append(Finding("ufw_not_enabled", "drift", plan.host,
                             "ufw filters (its chains are loaded) but ufw.conf says ENABLED=no: "
                             "after a reboot nothing is filtered (want active)"))
    elif plan.enabled and not ufw.active:
        found.append(Finding("setting", "drift", plan.host, "ufw inactive (want active)"))
    elif not plan.enabled and (ufw.conf_enabled or ufw.running):
        have = {"active": "active", "running_disabled": "running with ENABLED=no",
                "inactive": "inactive but ENABLED=yes"}[ufw_state(ufw)]
        found.append(Finding("setting", "drift", plan.host, f"ufw {have} (want inactive)"))
    return found


def _passive_of_fragment(text: str | None) -> str | None:
    match = re.search(r"^\s*PassivePorts\s+(\d+)\s+(\d+)", text or "", re.M)
    return f"{match.group(1)}:{match.group(2)}" if match else None


def _effective(ftp: FtpConfig, ufw: str | None,
               wanted: str | None) -> tuple[str | None, str | None, str | None]:
    """The main server's passive range as ProFTPd really uses it (``ftpconf.replay``
    of the host's configuration as the state fact dumped it: the first
    ``PassivePorts`` wins), its file:line, and a finding's detail when it is not the
    range UFW admits (``None``: they agree). ``<VirtualHost>``s of their own are the
    deploy's business (it refuses such a host), not counted here."""
    config = ftp.proftpd
    admitted = f"UFW admits {ufw}" if ufw else "UFW admits no passive range"
    if not config.found:
        return None, None, (f"{config.conf_path} not found: cannot tell which passive range "
                            f"ProFTPd uses; {admitted}") if ufw else None
    winner = config.passive_ports
    if winner is None:
        detail = ("ProFTPd sets no PassivePorts (passive transfers may use any port); "
                  f"{admitted}")
        return None, None, detail if ufw else None
    ports = winner.ports
    effective = f"{ports[0]}:{ports[1]}" if ports else None
    if ports is None:
        return None, winner.origin, (f"{winner.origin} sets PassivePorts {winner.value!r}, "
                                     f"not two port numbers; {admitted}")
    if effective == ufw:
        return effective, winner.origin, None
    detail = f"{winner.origin} sets PassivePorts {winner.value}; {admitted}"
    if winner.file != FRAGMENT_PATH and effective != wanted:
        detail += " (ProFTPd uses it, not this deploy's fragment; remove it there)"
    return effective, winner.origin, detail


def _effective_pureftpd(ftp: FtpConfig, ufw: str | None) -> tuple[str | None, str | None, str | None]:
    """pure-ftpd's passive range (its wrapper's ``conf/PassivePortRange``), where it
    comes from, and a finding's detail when UFW admits another (``None``: they agree)."""
    origin = "/etc/pure-ftpd/conf/PassivePortRange"
    admitted = f"UFW admits {ufw}" if ufw else "UFW admits no passive range"
    ports = ftp.pureftpd.passive_port_range
    if ports is None:
        return None, None, (f"pure-ftpd has no {origin} (passive transfers may use any port); "
                            f"{admitted}") if ufw else None
    effective = f"{ports[0]}:{ports[1]}"
    if effective == ufw:
        return effective, origin, None
    return effective, origin, f"{origin} says {ports[0]} {ports[1]}; {admitted}"


def _passive(plan: HostPlan, state: HostState, live: UfwState,
             daemon: str | None) -> tuple[Passive | None, list[Finding]]:
    """``live``: UFW's rules without the inert ones (v6 while IPV6=no); ``daemon``: the
    one the deploy manages (``ftpplan.daemon_for``)."""
    ranges = sorted({r.dport for r in live.rules if r.label == "ftp" and ":" in r.dport})
    ufw = ",".join(ranges) or None
    wanted = f"{plan.passive_ports[0]}:{plan.passive_ports[1]}" if plan.passive_ports else None
    fragment = _passive_of_fragment(state.fragment)
    pure = daemon == "pureftpd"
    if not plan.passive_ports:  # no ftp role: only a leftover fragment or ftp rule counts
        passive = Passive(wanted, fragment, ufw, fragment=fragment)
        disagree = None
    elif pure:
        effective, origin, disagree = _effective_pureftpd(state.ftp, ufw)
        passive = Passive(wanted, effective, ufw, origin, fragment)
    else:
        effective, origin, disagree = _effective(state.ftp, ufw, wanted)
        passive = Passive(wanted, effective, ufw, origin, fragment)
    shown = None if passive.wanted is passive.proftpd is passive.ufw is None else passive
    role = "ftp" if plan.passive_ports else None
    if disagree:
        # Customers' passive transfers stall: the daemon offers ports UFW does not admit.
        return shown, [Finding("passive_disagree", "drift", plan.host, disagree,
                               ports=wanted, proto="tcp", role=role)]
    if not passive.match:
        detail = (f"passive ports: proftpd {passive.proftpd or 'none'}, "
                  f"ufw {passive.ufw or 'none'}, want {wanted or 'none'}")
        return shown, [Finding("passive_mismatch", "drift", plan.host, detail,
                               ports=wanted, proto="tcp", role=role)]
    if not pure and fragment_digest(fragment_for(plan)) != state.fragment_sha256:
        return shown, [Finding("fragment_drift", "drift", plan.host,
                               "ProFTPd fragment differs from what the data renders",
                               ports=wanted, proto="tcp", role=role)]
    if pure and plan.passive_ports:
        want = pureftpd_files(plan.passive_ports, plan.masquerade_address)
        have = state.ftp.pureftpd.passive_port_range_raw
        if have != want["PassivePortRange"]:  # the same range, written otherwise
            return shown, [Finding("fragment_drift", "drift", plan.host,
                                   f"/etc/pure-ftpd/conf/PassivePortRange reads {have!r}, the "
                                   f"deploy writes {want['PassivePortRange']!r}",
                                   ports=wanted, proto="tcp", role=role)]
    return shown, []


def _daemon_findings(plan: HostPlan, state: HostState, daemon: str | None) -> list[Finding]:
    """What the FTP daemon runs with against what the deploy writes: its files as
    wanted but not loaded by the running daemon (the deploy restarts it), and
    pure-ftpd's ForcePassiveIP against ``ftp_masquerade_address``."""
    if plan.passive_ports is None or daemon is None:
        return []
    wanted = f"{plan.passive_ports[0]}:{plan.passive_ports[1]}"
    found: list[Finding] = []

    def finding(kind: str, detail: str) -> Finding:
        return Finding(kind, "drift", plan.host, detail, ports=wanted, proto="tcp", role="ftp")

    if daemon == "proftpd":
        content = fragment_for(plan)
        # ftp.passive_ports_fragment restarts ProFTPd when the file is as wanted but
        # not loaded (a changed file is fragment_drift or a passive finding already).
        if fragment_digest(content) == state.fragment_sha256 and not fragment_loaded(state, content):
            found.append(finding("ftp_not_loaded", f"ProFTPd runs, but not on {FRAGMENT_PATH} "
                                 "as it is on disk (its loaded marker differs): the deploy "
                                 "would restart it"))
        return found
    want = pureftpd_files(plan.passive_ports, plan.masquerade_address)
    current = state.ftp.pureftpd
    have = {"PassivePortRange": current.passive_port_range_raw,
            "ForcePassiveIP": current.force_passive_ip}
    if have["ForcePassiveIP"] != want["ForcePassiveIP"]:
        shown = have["ForcePassiveIP"] or "not set"
        found.append(finding("force_passive_ip",
                             f"pure-ftpd's ForcePassiveIP is {shown}; ftp_masquerade_address "
                             f"wants {want['ForcePassiveIP'] or 'none'}"))
    # ftp.passive_port_range restarts pure-ftpd when its files are as wanted but
    # not loaded.
    if have == want and not pureftpd_loaded(state, want):
        found.append(finding("ftp_not_loaded", "pure-ftpd runs, but not on "
                             f"{PUREFTPD_CONF_DIR} as it is on disk (its loaded marker "
                             "differs): the deploy would restart it"))
    return found


def _ftp_down(plan: HostPlan, seen: AuditState, daemon: str | None) -> list[Finding]:
    """An ftp host where nothing listens on the ftp role's port: an outage no deploy
    mends (it never starts an FTP daemon that is down). Not told when ``ss`` listed no
    public socket at all (no ``ss`` on the host: it can't tell) and the daemon's pid
    file says it runs."""
    if "ftp" not in plan.roles:
        return []
    state = seen.state
    running = daemon is not None and daemon in state.ftp.running
    if not seen.listening and running:
        return []
    ports = sorted({int(p) for spec in plan.rules if spec.label == "ftp" and spec.proto == "tcp"
                    for p in spec.ports if p.isdigit()})
    found = []
    for port in ports:
        if (port, "tcp") in seen.listening:
            continue
        what = (f"{daemon} runs but does not listen there" if running
                else f"{daemon} is not running" if daemon else "no FTP daemon to serve it")
        found.append(Finding("ftp_down", "error", plan.host,
                             f"FTP down: nothing listens on {port}/tcp ({what})",
                             port=port, ports=str(port), proto="tcp", role="ftp"))
    return found


def _ban_findings(plan: HostPlan, rules: RulePlan) -> list[Finding]:
    """fail2ban's bans, counted per jail: a notice, never drift (no run touches them)."""
    counts = Counter(ban_jail(rule) or "fail2ban" for rule in rules.bans)
    if not counts:
        return []
    jails = tuple(sorted(counts.items(), key=lambda item: (-item[1], item[0])))
    detail = "fail2ban bans: " + ", ".join(f"{jail} {n}" for jail, n in jails)
    return [Finding("bans", "notice", plan.host, detail, jails=jails)]


def _concerns(rule: UfwRule, family: int, port: int, proto: str) -> bool:
    """Could ``rule`` decide a new incoming ``port``/``proto`` connection of ``family``?"""
    return (rule.family == family and not rule.action.startswith("route:")
            and rule.iface.startswith("in") and rule.proto in ("any", proto)
            and port_matches(rule.dport, port))


def _admission(ufw: UfwState, bans: set[int], server: str, port: int, proto: str) -> str:
    """``ufw``: its live rules only; ``bans``: ids of fail2ban's (they stop the banned
    addresses, which does not make a port admitted from some sources only)."""
    if not ufw.running:
        return "open"  # no chains loaded (whatever ufw.conf says): everything gets through
    family = 6 if ":" in server else 4
    client = OUTSIDE[family]
    if admits(ufw.rules, ufw.incoming, client, server, port, proto, ufw.ipv6):
        # Admitted from anywhere, unless a deny/reject for some sources (or interfaces)
        # comes before what admits the outside client: first match wins.
        for rule in ufw.rules:
            if id(rule) in bans or not _concerns(rule, family, port, proto):
                continue
            if rule.verdict in BLOCKING:
                return "restricted"
            if rule.verdict in ADMITTING and admits([rule], "deny", client, server, port,
                                                    proto, ufw.ipv6):
                break
        return "open"
    for rule in ufw.rules:
        if (rule.verdict in ("allow", "limit") and rule.proto in ("any", proto)
                and rule.iface.startswith("in") and port_matches(rule.dport, port)
                and (rule.src != ANY[rule.family] or rule.iface != "in")):
            return "restricted"
    return "blocked"


def _port_keys(plan: HostPlan, listening: Listening) -> list[tuple[int, str]]:
    keys = list(GRID) + [(plan.ssh_port, "tcp")]
    keys += [(int(p), spec.proto) for spec in plan.rules for p in spec.ports if p.isdigit()]
    keys += list(listening)
    return sorted(dict.fromkeys(keys))


def _ports(plan: HostPlan, ufw: UfwState, rules: RulePlan, server: str,
           listening: Listening) -> list[PortState]:
    bans = {id(r) for r in rules.bans}
    return [PortState(port, proto, _admission(ufw, bans, server, port, proto),
                      (port, proto) in listening, tuple(listening.get((port, proto), ())))
            for port, proto in _port_keys(plan, listening)]


def _port_findings(plan: HostPlan, ports: list[PortState],
                   down: set[tuple[int | None, str | None]]) -> list[Finding]:
    """``down``: ports an ``ftp_down`` finding names already (not also idle)."""
    found = [Finding("listening_blocked", "notice", plan.host,
                     f"listening but blocked: {p.port}/{p.proto} ({', '.join(p.processes) or '?'})",
                     port=p.port, proto=p.proto, processes=p.processes)
             for p in ports if p.listening and p.admitted == "blocked"]
    idle: dict[tuple[int, str], str] = {}
    for spec in plan.rules:
        if spec.action in BLOCKING:
            continue  # a deny/reject admits nothing
        for item in spec.ports:
            if ":" in item:
                continue  # a range (FTP passive) is used on demand
            key = (int(item), spec.proto)
            seen = next(p for p in ports if (p.port, p.proto) == key)
            if not seen.listening and seen.admitted != "blocked" and key not in down:
                idle.setdefault(key, spec.label)
    found += [Finding("idle_admitted", "notice", plan.host,
                      f"admitted, nothing listens: {port}/{proto} ({role})",
                      port=port, proto=proto, role=role)
              for (port, proto), role in sorted(idle.items())]
    return found

