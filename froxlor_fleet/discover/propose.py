"""From what one host runs and what its UFW admits to proposed data for it. Pure, no I/O.

The proposal is built to change as little as possible that anyone uses today:

- ``froxlor_roles``: a role whose ports (``catalog.ROLE_SERVICES``, the table the deploy
  opens them from) a process listens on publicly *and* UFW admits from anywhere. A role
  port that listens but UFW blocks, or admits from some sources only, or that UFW
  admits while nothing listens, is a conflict instead (proposing the role would open it
  to the world, or keep open what nobody serves).
- ``ssh_allowed_sources`` / ``mysql_allowed_sources``: the sources of UFW's admitting
  rules on those ports, when UFW does not admit them from anywhere. MySQL is proposed
  only with sources: 3306 open to anywhere, or listening without any, is a conflict.
- ``ftp_passive_ports`` / ``ftp_masquerade_address`` (and ``ftp_daemon`` where both
  daemons are installed): the FTP daemon's effective range and masquerade address, as
  the audit reads them (ProFTPd's first ``PassivePorts``, pure-ftpd's files).
- ``firewall_extra_rules``: hand-made rules (and this deploy's own extra rules) that no
  proposed role covers and that are worth keeping: an allow on a port a process listens
  on, every deny/reject. Rules the data cannot say (an interface, an application, a
  destination, no port) stay hand-made: the deploy keeps them while
  ``firewall_purge_unmanaged`` is off.
- Then the deploy's own plan (``validation.resolve``, ``ufwrules.plan_rules``) is made
  with the proposal on the state just read: a listening port it would close to a client
  UFW admits today (UFW inactive, not installed, incoming ``allow``) is kept open by one
  more extra rule, and said as a conflict, so the first rollout closes nothing in use.

froxlor's own settings (``fact.FroxlorSettings``, read from its database) are the third
view, never the deciding one (``froxlor.py``): the *froxlor says* column of the evidence,
conflicts where they disagree with what listens (froxlor says nginx, apache2 listens),
and two candidates where the host and UFW say nothing better:

- ``mysql_allowed_sources`` from ``system.mysql_access_host`` (its addresses and
  networks; names and loopback left out, with a note) when 3306 listens publicly and is
  open to anywhere today: the mysql role with those sources, while what admits 3306
  from anywhere today stays until you remove it. Where UFW blocks 3306, the conflict
  names froxlor's sources and nothing is opened.
- ``dns_transfer_sources`` from ``system.axfrservers``, with the dns role, when this
  version of the deploy has that key (``catalog.DEFAULTS``).

Every value is checked with the deploy's own validation (``validation.resolve``, whose
values are the ones written) before it is proposed; what it refuses is a conflict.
Evidence for every key is kept side by side: *froxlor says* / *the host runs* / *UFW
admits*.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Any

from ..audit.compare import OUTSIDE
from ..facts import HostState
from ..ftpconf.daemon import DAEMON_TITLES, choose_daemon
from ..ftpconf.dump import DAEMONS
from ..model.catalog import DEFAULTS, MARKER, ROLE_SERVICES
from ..model.plan import HostPlan
from ..model.ufwrules import ANY, UfwRule, admits, plan_rules, port_matches
from ..model.validation import address, comment_text, resolve
from ..remote.ufwmodel import ADMITTING, BLOCKING, ban_jail
from . import froxlor as froxlor_view
from .fact import DiscoverState, FroxlorSettings, families
from .froxlor import NOT_READ

TRANSFER_KEY = "dns_transfer_sources"  # in catalog.DEFAULTS from a later version on
PURE_RANGE_FILE = "/etc/pure-ftpd/conf/PassivePortRange"
# Linux's default ip_local_port_range: an unconnected UDP socket there is a client's own
# (a resolver's, an NTP client's), not a service anyone reaches: never proposed.
EPHEMERAL = (32768, 60999)
KEEP_OPEN_NOTE = "open before discover: review"
# The layer name the proposal is validated under (validation names no layer for it).
LAYER = "host data"

__all__ = ["Evidence", "HostProposal", "NOT_READ", "propose", "validate_data"]


@dataclass(frozen=True)
class Evidence:
    """Why a value is proposed (or not): one topic (a role, a port, a key), three views."""

    topic: str
    runs: str
    ufw: str
    froxlor: str | None = None  # None: not filled in (propose fills in every line)

    def columns(self) -> str:
        return (f"{self.topic}: froxlor says {self.froxlor or NOT_READ} | the host runs "
                f"{self.runs} | UFW admits {self.ufw}")


@dataclass
class HostProposal:
    """Proposed data for one host (only keys of this deploy, every value validated),
    with its evidence per key, the conflicts to review and notes."""

    host: str
    data: dict[str, Any] = field(default_factory=dict)
    evidence: dict[str, list[Evidence]] = field(default_factory=dict)
    conflicts: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def add_evidence(self, key: str, evidence: Evidence) -> None:
        self.evidence.setdefault(key, []).append(evidence)


def validate_data(host: str, data: dict[str, Any]) -> tuple[HostPlan | None, list[str]]:
    """The deploy's own validation of ``data`` as a host's only data."""
    return resolve(host, [(LAYER, data)])


def _ordered(data: dict[str, Any]) -> dict[str, Any]:
    return {key: data[key] for key in DEFAULTS if key in data}


def _ports_text(items: Iterable[tuple[int, str]]) -> str:
    """``80,443/tcp``, ``53/tcp, 53/udp``: ports grouped by protocol."""
    by_proto: dict[str, list[str]] = {}
    for port, proto in items:
        if str(port) not in by_proto.setdefault(proto, []):
            by_proto[proto].append(str(port))
    return ", ".join(f"{','.join(ports)}/{proto}" for proto, ports in by_proto.items())


def _network(text: str) -> str | None:
    """An address inside ``text`` (an address or network as ufw stores it), or None."""
    try:
        return str(ipaddress.ip_network(text, strict=False).network_address)
    except ValueError:
        return None


class _Host:
    """One host's state, with the questions the proposal asks of it."""

    def __init__(self, seen: DiscoverState) -> None:
        self.state: HostState = seen.state
        ufw = seen.state.ufw
        self.installed = ufw.installed
        self.filtering = ufw.installed and ufw.running  # ufw's chains are loaded
        self.ipv6 = ufw.ipv6
        self.incoming = ufw.incoming
        # what decides today: the rules ufw loads (v6 ones only with IPV6=yes)
        self.rules = [r for r in ufw.rules if ufw.ipv6 or r.family == 4]
        self.listening = {key: names for key, names in seen.listening.items()
                          if not (key[1] == "udp" and EPHEMERAL[0] <= key[0] <= EPHEMERAL[1])}
        self.ephemeral = sorted(set(seen.listening) - set(self.listening))
        self.bound = seen.bound
        self.froxlor: FroxlorSettings | None = seen.froxlor
        self.outside = {family: _outside(family, self.rules) for family in (4, 6)}
        self.said: set[tuple[int, str]] = set()  # ports a conflict already says stay open

    # --- what listens ------------------------------------------------------------------

    def families(self, port: int, proto: str) -> tuple[int, ...]:
        return families(self.bound.get((port, proto), []))

    def runs(self, port: int, proto: str) -> str:
        names = self.listening.get((port, proto))
        if names is None:
            return f"nothing on {port}/{proto}"
        where = ", ".join(self.bound.get((port, proto), [])) or "?"
        return f"{port}/{proto} {','.join(names) or '?'} on {where}"

    # --- what UFW admits ---------------------------------------------------------------

    def server(self, family: int) -> str:
        server = self.state.ssh_server
        if server and (":" in server) == (family == 6):
            return server
        return "0.0.0.0" if family == 4 else "::"

    def before(self, client: str, port: int, proto: str, family: int) -> bool:
        """Does a new connection from ``client`` get in today?"""
        if not self.filtering:
            return True
        return admits(self.rules, self.incoming, client, self.server(family), port, proto,
                      self.ipv6)

    def open_anywhere(self, port: int, proto: str) -> bool:
        return any(self.before(self.outside[f], port, proto, f)
                   for f in self.families(port, proto))

    def admitting(self, port: int, proto: str) -> list[UfwRule]:
        """The incoming rules that admit some connections to ``port``/``proto``."""
        return [r for r in self.rules if r.verdict in ADMITTING
                and not r.action.startswith("route:") and r.iface.startswith("in")
                and r.proto in ("any", proto) and port_matches(r.dport, port)]

    def admitted(self, port: int, proto: str) -> str:
        """open (from anywhere), restricted (some sources or interfaces), blocked."""
        if self.open_anywhere(port, proto):
            return "open"
        return "restricted" if self.filtering and self.admitting(port, proto) else "blocked"

    def why_open(self) -> str:
        if not self.installed:
            return "ufw is not installed"
        if not self.filtering:
            return "UFW is not filtering"
        if self.incoming == "allow":
            return "UFW's default incoming policy is allow"
        return "UFW admits it"

    def ufw_text(self, ports: Iterable[tuple[int, str]]) -> str:
        """What UFW admits on ``ports``: the rules as ufw shows them, or why everything."""
        if not self.filtering:
            return f"everything ({self.why_open()})"
        if self.incoming == "allow":
            return "everything (default incoming allow)"
        shown: list[str] = []
        for port, proto in ports:
            for rule in self.admitting(port, proto):
                text = _described(rule)
                if text not in shown:
                    shown.append(text)
        return "; ".join(shown) or "nothing"

    def sources(self, port: int, proto: str) -> tuple[list[str], list[str], list[str]]:
        """(sources of the admitting rules on ``port`` as validation writes them, the ones
        it refuses with why, the admitting rules no source list can say)."""
        found: list[str] = []
        refused: list[str] = []
        unsayable: list[str] = []
        for rule in self.admitting(port, proto):
            if rule.src == ANY[rule.family] and rule.iface == "in":
                continue  # anywhere: not a source
            if rule.iface != "in" or rule.sport != "any" or rule.src == ANY[rule.family]:
                if _described(rule) not in unsayable:
                    unsayable.append(_described(rule))
                continue
            try:
                source = address(rule.src)
            except ValueError as error:
                refused.append(f"{rule.src} ({rule.describe()}): {error}")
                continue
            if source not in found:
                found.append(source)
        return found, refused, unsayable


# "Somebody on the internet": documentation and unlikely addresses, the first that no
# rule's source network holds (a rule from 2001:db8::/32 would admit the audit's one).
_OUTSIDE = {4: (OUTSIDE[4], "203.0.113.77", "192.0.2.77", "100.64.0.77"),
            6: (OUTSIDE[6], "3fff::77", "fd7e:57ee::77", "2a00:dead::77")}


def _outside(family: int, rules: list[UfwRule]) -> str:
    nets = []
    for rule in rules:
        try:
            net = ipaddress.ip_network(rule.src, strict=False)
        except ValueError:
            continue
        if net.version == family and net.prefixlen:
            nets.append(net)
    return next((c for c in _OUTSIDE[family]
                 if not any(ipaddress.ip_address(c) in net for net in nets)), OUTSIDE[family])


def _described(rule: UfwRule) -> str:
    return rule.describe() + (f" ({rule.comment})" if rule.comment else "")


# --- the proposal ------------------------------------------------------------------------

def propose(host: str, seen: DiscoverState) -> HostProposal:
    """The proposed data for ``host`` from what it runs and what UFW admits."""
    view = _Host(seen)
    out = HostProposal(host)
    data: dict[str, Any] = {}
    ssh_port = _ssh(view, data, out)
    roles = _roles(view, data, out, ssh_port)
    if "ftp" in roles:
        _ftp(view, data, out, roles)
    data["froxlor_roles"] = sorted(roles)
    _froxlor_review(view, out)
    _transfer_sources(view, data, out, roles)
    _settings(view, data, out)
    _checked_scalars(out, data)
    extras = _extras(view, data, out)
    if extras:
        data["firewall_extra_rules"] = extras
    _keep_in_use_open(view, data, out)
    role_ports = {(port, proto) for role in ROLE_SERVICES
                  for port, proto, _ in _role_ports(role, ssh_port)}
    for port, proto in sorted(view.listening):
        if (port, proto) not in role_ports and view.admitted(port, proto) == "blocked":
            out.notes.append(f"{view.runs(port, proto)} listens but UFW blocks it: it stays "
                             "blocked (not proposed)")
    if view.ephemeral:
        out.notes.append(f"UDP sockets on ephemeral ports ({_ports_text(view.ephemeral)}) are "
                         "clients' own (resolver, NTP): not proposed")
    out.data = _ordered({k: v for k, v in data.items() if v != [] or k == "froxlor_roles"})
    plan, problems = validate_data(host, out.data)
    assert plan is not None, problems  # every piece was validated on its way in
    for key, items in out.evidence.items():  # the "froxlor says" column of every line
        out.evidence[key] = [e if e.froxlor is not None else
                             replace(e, froxlor=froxlor_view.says(view.froxlor, e.topic, key))
                             for e in items]
    return out


def _froxlor_review(view: _Host, out: HostProposal) -> None:
    """Where froxlor's settings and what listens disagree (``froxlor.review``), and why
    they were not read."""
    found = view.froxlor
    if found is not None and not found.read:
        out.notes.append(f"froxlor's settings not read: {found.reason}")
    conflicts, notes = froxlor_view.review(found, view.listening, view.state.ftp)
    out.conflicts += conflicts
    out.notes += notes


def _transfer_sources(view: _Host, data: dict[str, Any], out: HostProposal,
                      roles: set[str]) -> None:
    """``dns_transfer_sources`` (who reaches 53/tcp, zone transfers) with the dns role,
    where this version of the deploy has the key: the sources UFW admits 53/tcp from
    when it admits it from some only, else froxlor's ``system.axfrservers``."""
    found, left_out = froxlor_view.sources(view.froxlor, "axfrservers")
    named = ", ".join(found + [item.split(" (")[0] for item in left_out])
    if TRANSFER_KEY not in DEFAULTS:  # looked up now: the key came with a later version
        if named:
            out.notes.append(f"froxlor's axfrservers names {named}: this version has no "
                             f"{TRANSFER_KEY}, not proposed")
        return
    if "dns" not in roles:
        if named:
            out.notes.append(f"froxlor's axfrservers names {named}, but dns is not proposed: "
                             f"{TRANSFER_KEY} not proposed")
        return
    port, proto = 53, "tcp"
    evidence = Evidence("dns", view.runs(port, proto), view.ufw_text([(port, proto)]))
    admitted = view.admitted(port, proto)
    if admitted == "restricted":  # what UFW admits today wins, as for SSH and MySQL
        ufw_sources, refused, unsayable = view.sources(port, proto)
        for line in refused:
            out.conflicts.append(f"DNS transfer source {line}: not proposed")
        if unsayable:
            out.conflicts.append(f"UFW admits 53/tcp by rules a source list cannot say "
                                 f"({'; '.join(unsayable)}): they stay hand-made")
        if ufw_sources:
            data[TRANSFER_KEY] = ufw_sources
            out.add_evidence(TRANSFER_KEY, evidence)
            more = [s for s in found if s not in ufw_sources]
            if more:
                out.notes.append(f"froxlor's axfrservers also names {', '.join(more)}, which UFW "
                                 "does not admit to 53/tcp today: not proposed")
            return
    for item in left_out:
        out.notes.append(f"froxlor's axfrservers: {item} left out of {TRANSFER_KEY}")
    if not found:
        return
    data[TRANSFER_KEY] = found
    out.add_evidence(TRANSFER_KEY, evidence)
    if admitted == "open" and (port, proto) in view.listening:
        view.said.add((port, proto))
        out.conflicts.append(f"{view.runs(port, proto)} is open to anywhere ({view.why_open()}): "
                             f"proposing {TRANSFER_KEY} from froxlor's axfrservers "
                             f"({', '.join(found)}); what admits it from anywhere today stays "
                             "(a hand-made rule, or firewall_extra_rules) until you remove it")


def _ssh(view: _Host, data: dict[str, Any], out: HostProposal) -> int:
    ssh_port = view.state.ssh_port or int(str(DEFAULTS["ssh_port"]))
    if ssh_port != DEFAULTS["ssh_port"]:
        data["ssh_port"] = ssh_port
        out.add_evidence("ssh_port", Evidence(
            "ssh", f"sshd on {ssh_port}/tcp (the port this read connected to)",
            view.ufw_text([(ssh_port, "tcp")])))
    evidence = Evidence("ssh", view.runs(ssh_port, "tcp"), view.ufw_text([(ssh_port, "tcp")]))
    out.add_evidence("froxlor_roles", replace(evidence, topic="ssh (always a role)"))
    out.add_evidence("ssh_allowed_sources", evidence)
    if view.open_anywhere(ssh_port, "tcp"):
        data["ssh_allowed_sources"] = []
    else:
        sources, refused, unsayable = view.sources(ssh_port, "tcp")
        data["ssh_allowed_sources"] = sources
        for line in refused:
            out.conflicts.append(f"SSH source {line}: not proposed")
        if unsayable:
            out.conflicts.append(f"UFW admits SSH ({ssh_port}/tcp) by rules a source list cannot "
                                 f"say ({'; '.join(unsayable)}): they stay hand-made"
                                 + ("" if sources else "; with no source proposed the ssh role "
                                    "opens SSH to anywhere"))
    rules = view.admitting(ssh_port, "tcp") if view.filtering else []
    if rules and all(r.verdict == "limit" for r in rules):
        data["ssh_rate_limit"] = True
        out.add_evidence("ssh_rate_limit", Evidence("ssh", view.runs(ssh_port, "tcp"),
                                                    "; ".join(map(_described, rules))))
    return ssh_port


def _role_ports(role: str, ssh_port: int) -> list[tuple[int, str, str | None]]:
    """(port, proto, the flag it needs) of one role, from the catalog's table."""
    return [(int(p.format(ssh_port=ssh_port)), svc.proto, svc.when)
            for svc in ROLE_SERVICES[role] for p in svc.ports]


def _roles(view: _Host, data: dict[str, Any], out: HostProposal, ssh_port: int) -> set[str]:
    roles: set[str] = set()
    for role in sorted(ROLE_SERVICES):
        if role == "ssh":
            continue  # always a role (validation adds it), its sources above
        ports = _role_ports(role, ssh_port)
        main = [(p, proto) for p, proto, when in ports if when is None]
        evidence = Evidence(role, "; ".join(view.runs(p, proto) for p, proto in main
                                            if (p, proto) in view.listening) or
                            f"nothing on {_ports_text(main)}", view.ufw_text(main))
        listening = [(p, proto) for p, proto in main if (p, proto) in view.listening]
        state = {key: view.admitted(*key) for key in main}
        if not listening:
            idle = [key for key in main if state[key] != "blocked"]
            if idle and view.filtering and view.incoming != "allow":
                out.conflicts.append(f"UFW admits {_ports_text(idle)} ({role}'s ports) but nothing "
                                     f"listens there: {role} not proposed")
            continue
        not_proposed = replace(evidence, topic=f"{role} (not proposed)")
        if role == "mysql":
            proposed = _mysql(view, data, out, listening, state)
            out.add_evidence("froxlor_roles", evidence if proposed else not_proposed)
            if proposed:
                roles.add(role)
            continue
        if not any(state[key] == "open" for key in listening):
            out.add_evidence("froxlor_roles", not_proposed)
            shut = [key for key in listening if state[key] == "blocked"]
            if len(shut) == len(listening):
                out.conflicts.append(
                    f"{_ports_text(listening)} listen{'s' if len(listening) == 1 else ''} "
                    f"({_names(view, listening)}) but UFW blocks it: {role} not proposed; add "
                    "it if customers should reach it")
            else:
                out.conflicts.append(
                    f"UFW admits {_ports_text(listening)} ({_names(view, listening)}) from some "
                    f"sources or interfaces only: {role} not proposed (it opens "
                    f"{_ports_text(main)} to anywhere); its rules are proposed as "
                    "firewall_extra_rules where they can be")
            continue
        roles.add(role)
        out.add_evidence("froxlor_roles", evidence)
        blocked = [key for key in main if key in view.listening and state[key] == "blocked"]
        if blocked:
            out.conflicts.append(f"{_ports_text(blocked)} listen ({_names(view, blocked)}) but UFW "
                                 f"blocks {'it' if len(blocked) == 1 else 'them'} today; the "
                                 f"{role} role opens {'it' if len(blocked) == 1 else 'them'}")
        for port, proto, when in ports:
            if when and (port, proto) in view.listening and view.admitted(port, proto) == "open":
                data[when] = True
                out.add_evidence(when, Evidence(role, view.runs(port, proto),
                                                view.ufw_text([(port, proto)])))
    return roles


def _names(view: _Host, keys: Iterable[tuple[int, str]]) -> str:
    names: list[str] = []
    for key in keys:
        names += [n for n in view.listening.get(key, []) if n not in names]
    return ", ".join(names) or "?"


def _mysql(view: _Host, data: dict[str, Any], out: HostProposal,
           listening: list[tuple[int, str]], state: dict[tuple[int, str], str]) -> bool:
    port, proto = listening[0]
    where = view.runs(port, proto)
    out.add_evidence("mysql_allowed_sources", Evidence("mysql", where,
                                                       view.ufw_text([(port, proto)])))
    sources, refused, unsayable = view.sources(port, proto)
    for line in refused:
        out.conflicts.append(f"MySQL source {line}: not proposed")
    # froxlor's hosts allowed to reach MySQL: a candidate where UFW names no source
    froxlor_sources, left_out = froxlor_view.sources(view.froxlor, "mysql_access_host")
    for item in left_out:
        out.notes.append(f"froxlor's mysql_access_host: {item} left out of mysql_allowed_sources")
    named = ", ".join(froxlor_sources)
    if state[(port, proto)] == "open":
        hint = (f"; ufw's rule files (not enforced) name {', '.join(sources)}" if sources and
                not view.filtering else "")
        view.said.add((port, proto))
        if froxlor_sources:
            out.conflicts.append(f"{where} is open to anywhere ({view.why_open()}) and UFW names no "
                                 f"source: proposing mysql with froxlor's mysql_access_host "
                                 f"({named}) as mysql_allowed_sources; what admits it from "
                                 "anywhere today stays (a hand-made rule, or firewall_extra_rules)"
                                 f" until you remove it{hint}")
            data["mysql_allowed_sources"] = froxlor_sources
            return True
        out.conflicts.append(f"{where} is open to anywhere ({view.why_open()}) and no source is "
                             "known: mysql not proposed (3306 is never opened to the world); it "
                             "stays open to anywhere as today (firewall_extra_rules) until you set "
                             f"froxlor_roles 'mysql' with mysql_allowed_sources{hint}")
        return False
    if state[(port, proto)] == "blocked" or not sources:
        today = (f"UFW admits it only by rules a source list cannot say ({'; '.join(unsayable)}), "
                 "which stay hand-made" if unsayable else "UFW keeps blocking it")
        candidate = (f" (froxlor's mysql_access_host names {named}: mysql_allowed_sources = "
                     f"{froxlor_sources!r} if they should reach it)" if froxlor_sources else "")
        out.conflicts.append(f"{where} listens publicly but no source is known: mysql not "
                             f"proposed; {today} until you set froxlor_roles 'mysql' with "
                             f"mysql_allowed_sources{candidate}")
        return False
    if unsayable:
        out.conflicts.append(f"UFW also admits MySQL by rules a source list cannot say "
                             f"({'; '.join(unsayable)}): they stay hand-made")
    more = [s for s in froxlor_sources if s not in sources]
    if more:
        out.notes.append(f"froxlor's mysql_access_host also names {', '.join(more)}, which UFW "
                         "does not admit to MySQL today: not proposed")
    data["mysql_allowed_sources"] = sources
    return True


def _ftp(view: _Host, data: dict[str, Any], out: HostProposal, roles: set[str]) -> None:
    ftp = view.state.ftp
    choice = choose_daemon(ftp, "auto")
    daemon = choice.daemon
    if daemon is None:
        running = [d for d in DAEMONS if d in ftp.installed and d in ftp.running]
        if len(running) == 1 and all(d in ftp.installed for d in DAEMONS):
            daemon = running[0]
            data["ftp_daemon"] = daemon
            out.add_evidence("ftp_daemon", Evidence(
                "ftp", f"{DAEMON_TITLES[daemon]} running, "
                f"{DAEMON_TITLES[next(d for d in DAEMONS if d != daemon)]} installed", "-"))
        else:
            roles.discard("ftp")
            out.evidence["froxlor_roles"] = [
                replace(e, topic="ftp (not proposed)") if e.topic == "ftp" else e
                for e in out.evidence.get("froxlor_roles", [])]
            out.conflicts.append(f"{view.runs(21, 'tcp')}, but the ftp role cannot be proposed: "
                                 f"{choice.refusal}")
            return
    ranges = _ufw_ranges(view)
    if daemon == "proftpd":
        setting = ftp.proftpd.passive_ports
        have = setting.ports if setting else None
        origin = setting.origin if setting else None
        runs = (f"ProFTPd: PassivePorts {setting.value} ({origin})" if setting
                else "ProFTPd sets no PassivePorts")
        masquerade = ftp.proftpd.masquerade.value if ftp.proftpd.masquerade else None
        masquerade_origin = ftp.proftpd.masquerade.origin if ftp.proftpd.masquerade else None
    else:
        have = ftp.pureftpd.passive_port_range
        runs = (f"pure-ftpd: PassivePortRange {have[0]} {have[1]} ({PURE_RANGE_FILE})" if have
                else f"pure-ftpd has no {PURE_RANGE_FILE}")
        masquerade = ftp.pureftpd.force_passive_ip
        masquerade_origin = "/etc/pure-ftpd/conf/ForcePassiveIP"
    ufw_text = (", ".join(f"{r}/tcp" for r in ranges) or "no passive range") if view.filtering \
        else view.ufw_text([])
    out.add_evidence("ftp_passive_ports", Evidence("ftp", runs, ufw_text))
    title = DAEMON_TITLES[daemon]
    if have is not None:
        wanted: tuple[int, int] = have
        if view.filtering and ranges and f"{have[0]}:{have[1]}" not in ranges:
            out.conflicts.append(f"{title} offers passive ports {have[0]}:{have[1]} but UFW admits "
                                 f"{', '.join(ranges)}: passive transfers stall today; proposing "
                                 f"{title}'s range")
    elif len(ranges) == 1:
        low, high = ranges[0].split(":")
        wanted = (int(low), int(high))
        out.conflicts.append(f"FTP listens but {title} sets no passive range (any port); UFW "
                             f"admits {ranges[0]}: proposing it (the deploy writes it into "
                             f"{title}'s configuration)")
    else:
        default = DEFAULTS["ftp_passive_ports"]
        assert isinstance(default, tuple)
        wanted = (int(default[0]), int(default[1]))
        out.conflicts.append(f"FTP listens but no passive range is known ({title} sets none"
                             f"{', UFW admits ' + ', '.join(ranges) if ranges else ''}): proposing "
                             f"the default {wanted[0]}:{wanted[1]}")
    data["ftp_passive_ports"] = wanted
    if masquerade:
        data["ftp_masquerade_address"] = masquerade
        out.add_evidence("ftp_masquerade_address", Evidence(
            "ftp", f"{title}: {masquerade} ({masquerade_origin})", "-"))


def _ufw_ranges(view: _Host) -> list[str]:
    """Port ranges UFW admits over TCP from anywhere (a passive range's shape)."""
    found: set[str] = set()
    for rule in view.rules:
        if (rule.verdict in ADMITTING and rule.iface == "in" and rule.proto in ("tcp", "any")
                and rule.src == ANY[rule.family]):
            found.update(item for item in rule.dport.split(",") if ":" in item)
    return sorted(found, key=lambda r: int(r.split(":")[0]))


def _settings(view: _Host, data: dict[str, Any], out: HostProposal) -> None:
    ufw = view.state.ufw
    if not ufw.installed:
        out.conflicts.append("ufw is not installed: the deploy installs and enables it; what is "
                             "in use today is kept open (see firewall_extra_rules)")
        return
    if not ufw.running:
        why = "ENABLED=yes, but its chains are not loaded" if ufw.conf_enabled else "inactive"
        out.conflicts.append(f"UFW is not filtering today ({why}): the deploy enables it, and "
                             "the rules in its files apply then (hand-made denies too); what is "
                             "in use today is kept open (see firewall_extra_rules)")
    elif not ufw.conf_enabled:
        out.notes.append("UFW filters but ufw.conf says ENABLED=no: the deploy sets it")
    if view.filtering and ufw.incoming == "allow":
        out.conflicts.append("UFW's default incoming policy is allow: the deploy sets deny; what "
                             "is in use today is kept open (see firewall_extra_rules)")
    for key, have in (("firewall_default_incoming", ufw.incoming),
                      ("firewall_default_outgoing", ufw.outgoing),
                      ("firewall_logging", ufw.logging)):
        if have == DEFAULTS[key] or (key == "firewall_default_incoming" and have == "allow"):
            continue
        data[key] = have
        out.add_evidence(key, Evidence("ufw", "-", f"{key.split('_')[-1]} {have} "
                                       "(/etc/default/ufw, ufw.conf)"))


def _checked_scalars(out: HostProposal, data: dict[str, Any]) -> None:
    """Drop every value the deploy's validation refuses (a conflict each): values read
    from a host may be what ufw or ProFTPd take but the data does not (an interface
    name as MasqueradeAddress, a single passive port)."""
    prefix = f"host {out.host}: "
    for _ in range(len(data)):
        _, problems = validate_data(out.host, data)
        bad = {key: line.removeprefix(prefix) for line in reversed(problems) for key in data
               if line.startswith(f"{prefix}{key} = ")}
        if not bad:
            return
        for key, line in bad.items():
            value = data.pop(key)
            reason = line.removeprefix(f"{key} = {value!r}: ")
            out.conflicts.append(f"{key} = {value!r} read from the host is refused by the "
                                 f"deploy's validation ({reason}): not proposed")
            if key == "ftp_passive_ports" and "ftp" in data.get("froxlor_roles", []):
                default = DEFAULTS["ftp_passive_ports"]
                data[key] = default
                out.conflicts.append(f"proposing the default ftp_passive_ports {default!r} instead")


# --- extra rules --------------------------------------------------------------------------

@dataclass
class _Candidate:
    entry: dict[str, Any]
    rules: list[UfwRule]  # the v4 and v6 twins it adopts


def _covered(role_rules: list[tuple[tuple[str, ...], str]], rule: UfwRule) -> bool:
    """Does every port of ``rule`` lie in a proposed role's rule of its protocol?"""
    for item in rule.dport.split(","):
        low, _, high = item.partition(":")
        lo, hi = int(low), int(high or low)
        if not any(proto == rule.proto and any(_span(p)[0] <= lo and hi <= _span(p)[1]
                                               for p in ports)
                   for ports, proto in role_rules):
            return False
    return True


def _span(item: str) -> tuple[int, int]:
    low, _, high = item.partition(":")
    return int(low), int(high or low)


def _unsayable(rule: UfwRule) -> str | None:
    """Why ``rule`` cannot be a ``firewall_extra_rules`` entry (None: it can)."""
    if rule.action.startswith("route:") or not rule.iface.startswith("in"):
        return "not an incoming rule"
    if rule.iface != "in":
        return f"on interface {rule.iface.partition('_')[2]} only"
    if rule.dapp != "-" or rule.sapp != "-":
        return "an application profile's rule"
    if rule.dst != ANY[rule.family]:
        return f"to {rule.dst} only"
    if rule.sport != "any":
        return "from a source port"
    if rule.proto not in ("tcp", "udp"):
        return "for every protocol"
    if rule.dport == "any":
        return "for every port"
    return None


def _entry(rule: UfwRule) -> tuple[dict[str, Any], str | None]:
    """The ``firewall_extra_rules`` entry that adopts ``rule`` (same ports, protocol,
    source and verdict: the deploy updates it in place), and a comment it had to drop."""
    items = rule.dport.split(",")
    ports: list[Any] = [int(p) if p.isdigit() else p for p in items]
    entry: dict[str, Any] = {"port": ports[0] if len(ports) == 1 else ports}
    if rule.proto != "tcp":
        entry["proto"] = rule.proto
    if rule.src != ANY[rule.family]:
        entry["sources"] = [rule.src]
    if rule.verdict != "allow":
        entry["action"] = rule.verdict
    note = rule.comment[len(f"{MARKER}extra"):].strip() if rule.managed else rule.comment
    dropped = None
    if note:
        try:
            entry["comment"] = comment_text(note)
        except ValueError as error:
            dropped = f"its comment {note!r} is dropped ({error})"
    return entry, dropped


def _note(out: HostProposal, text: str) -> None:
    if text not in out.notes:  # a rule's v4 and v6 twins: said once
        out.notes.append(text)


def _extras(view: _Host, data: dict[str, Any], out: HostProposal) -> list[dict[str, Any]]:
    plan, problems = validate_data(out.host, data)
    assert plan is not None, problems
    role_rules = [(spec.ports, spec.proto) for spec in plan.rules]
    candidates: dict[str, _Candidate] = {}
    for rule in view.rules:
        if ban_jail(rule) is not None or (rule.managed and rule.label != "extra"):
            continue  # fail2ban's bans; this deploy's role rules (the roles decide those)
        blocking = rule.verdict in BLOCKING
        why = _unsayable(rule)
        shown = _described(rule)
        if why is not None:
            if blocking or any(port_matches(rule.dport, p) and rule.proto in ("any", proto)
                               for p, proto in view.listening):
                _note(out, f"UFW rule {shown} stays hand-made ({why}: not a "
                      "firewall_extra_rules entry); the deploy keeps it while "
                      "firewall_purge_unmanaged is off")
            continue
        if not blocking and _covered(role_rules, rule):
            continue
        used = [(p, proto) for p, proto in view.listening
                if proto == rule.proto and port_matches(rule.dport, p)]
        if not blocking and not used:
            _note(out, f"UFW rule {shown}: nothing listens there, not proposed (the deploy "
                  "keeps it while firewall_purge_unmanaged is off)")
            continue
        entry, dropped = _entry(rule)
        key = repr(entry)
        if key in candidates:
            candidates[key].rules.append(rule)
            continue
        if dropped:
            out.conflicts.append(f"UFW rule {rule.describe()}: {dropped}")
        candidates[key] = _Candidate(entry, [rule])
    extras: list[dict[str, Any]] = []
    for candidate in candidates.values():
        rule = candidate.rules[0]
        trial = {**data, "firewall_extra_rules": [*extras, candidate.entry]}
        _, problems = validate_data(out.host, trial)
        if problems:
            out.conflicts.append(f"UFW rule {_described(rule)} not proposed as an extra rule: "
                                 f"{problems[0].split(': ', 1)[-1]}")
            continue
        extras.append(candidate.entry)
        ports = [(p, proto) for p, proto in view.listening
                 if proto == rule.proto and port_matches(rule.dport, p)]
        runs = "; ".join(view.runs(*key) for key in ports) or f"nothing on {rule.dport}/{rule.proto}"
        out.add_evidence("firewall_extra_rules", Evidence(
            f"{rule.dport}/{rule.proto}", runs,
            "; ".join(dict.fromkeys(_described(r) for r in candidate.rules))))
    return extras


# --- the deploy's plan: nothing in use is closed ------------------------------------------

def deploy_final(view_state: HostState, plan: HostPlan) -> list[UfwRule]:
    """The rules UFW holds after the deploy runs with ``plan`` on this state (the
    deploy's own ``plan_rules``; a host without ufw starts from none)."""
    ufw = view_state.ufw
    current = ufw.rules if ufw.installed else []
    ipv6 = ufw.ipv6 if ufw.installed else True
    return plan_rules(current, plan.rules, ipv6, plan.purge_unmanaged).final


def closed_in_use(seen: DiscoverState, plan: HostPlan) -> list[tuple[int, str, str]]:
    """(port, proto, client) a process listens on publicly that a client reaches today
    and would not after the deploy ran with ``plan`` (clients: somebody on the internet,
    and each source UFW's admitting rules on that port name)."""
    view = _Host(seen)
    final = deploy_final(seen.state, plan)
    ipv6 = seen.state.ufw.ipv6 if seen.state.ufw.installed else True
    closed: list[tuple[int, str, str]] = []
    for (port, proto) in sorted(view.listening):
        for family in view.families(port, proto):
            clients = [view.outside[family]]
            for rule in view.admitting(port, proto):
                client = _network(rule.src) if rule.family == family else None
                if client and client not in clients:
                    clients.append(client)
            for client in clients:
                if not view.before(client, port, proto, family):
                    continue
                after = not plan.enabled or admits(final, plan.incoming, client,
                                                   view.server(family), port, proto, ipv6)
                if not after:
                    closed.append((port, proto, client))
    return closed


def _keep_in_use_open(view: _Host, data: dict[str, Any], out: HostProposal) -> None:
    """Whatever the deploy's plan with the proposal would close that is in use today gets
    an extra rule admitting it as today; what still closes is a conflict."""
    seen = DiscoverState(view.state, view.listening, True, view.bound)
    plan, problems = validate_data(out.host, data)
    assert plan is not None, problems
    added: list[dict[str, Any]] = []
    closed: dict[tuple[int, str], list[str]] = {}
    for port, proto, client in closed_in_use(seen, plan):
        closed.setdefault((port, proto), []).append(client)
    wanted: list[tuple[int, str, str, dict[str, Any]]] = []
    for (port, proto), clients in closed.items():
        anywhere = [c for c in clients if c in view.outside.values()]
        for client in anywhere[:1] or clients:
            entry: dict[str, Any] = {"port": port}
            if proto != "tcp":
                entry["proto"] = proto
            if not anywhere:
                entry["sources"] = [next((r.src for r in view.admitting(port, proto)
                                          if _network(r.src) == client), client)]
            entry["comment"] = KEEP_OPEN_NOTE
            if entry not in [w[3] for w in wanted]:
                wanted.append((port, proto, client, entry))
    for port, proto, client, entry in wanted:
        trial = {**data, "firewall_extra_rules": [*data.get("firewall_extra_rules", []), entry]}
        _, problems = validate_data(out.host, trial)
        if problems:
            out.conflicts.append(f"the deploy would close {view.runs(port, proto)} to {client}, "
                                 f"open today, and no extra rule can keep it: {problems[0]}")
            continue
        data["firewall_extra_rules"] = trial["firewall_extra_rules"]
        added.append(entry)
        who = "anywhere" if "sources" not in entry else ", ".join(entry["sources"])
        if (port, proto) not in view.said:
            out.conflicts.append(f"{view.runs(port, proto)} is open to {who} today "
                                 f"({view.why_open()}) and no role covers it: kept open by "
                                 "firewall_extra_rules; remove that entry to close it")
        out.add_evidence("firewall_extra_rules", Evidence(
            f"{port}/{proto}", view.runs(port, proto), view.ufw_text([(port, proto)])))
    if added:
        plan, problems = validate_data(out.host, data)
        assert plan is not None, problems
        for port, proto, client in closed_in_use(seen, plan):
            out.conflicts.append(f"the deploy would still close {view.runs(port, proto)} to "
                                 f"{client}: review")

