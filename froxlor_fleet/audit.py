"""Fleet audit: what every host really admits, against what its roles say. Read-only.

    python -m froxlor_fleet audit inventory.py [--json] [--limit NAME ...]

Reads each host with one remote command (the deploy's state fact plus ``ss``), compares
with the host's plan, and prints a fleet matrix, a port grid (admitted / listening)
and the findings. Exit status: 0 the fleet matches its data, 1 drift, 2 errors
(unreachable hosts, bad data).
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import logging
import os
import re
import sys
from dataclasses import asdict, dataclass, field

from .hoststate import SECTION, FleetHostState, HostState, parse_state
from .proftpd import digest, fragment_for
from .ufwrules import ANY, UfwRule, admits, describe_spec, plan_rules, port_matches
from .validation import FleetDataError, HostPlan

# The froxlor ports shown in the grid (plus the host's ssh_port when it is not 22).
GRID = [(22, "tcp"), (21, "tcp"), (80, "tcp"), (443, "tcp"), (25, "tcp"), (465, "tcp"),
        (587, "tcp"), (143, "tcp"), (993, "tcp"), (110, "tcp"), (995, "tcp"), (53, "tcp"),
        (53, "udp"), (3306, "tcp")]
OUTSIDE_V4 = "198.51.100.7"  # a documentation address: "somebody on the internet"
SYMBOLS = {("open", True): "●", ("open", False): "○", ("restricted", True): "◐",
           ("restricted", False): "◌", ("blocked", True): "✗", ("blocked", False): "·"}
LEGEND = ("● listening, admitted   ○ admitted, nothing listens   ◐/◌ admitted from some "
          "sources only   ✗ LISTENING BUT BLOCKED   · blocked")


class FleetAuditState(FleetHostState):
    """
    ``FleetHostState`` plus the host's listening sockets, still one command.

    .. code:: python

        AuditState(state=HostState(...), listening={(22, "tcp"): ["sshd"], ...})
    """

    def command(self, fragment_path: str | None = None) -> str:
        base = super().command() if fragment_path is None else super().command(fragment_path)
        return base + f"; echo '{SECTION}listening'; ss -H -ltnup 2>/dev/null || true"

    def process(self, output: list[str]) -> "AuditState":
        return AuditState(state=parse_state(output), listening=parse_listening(output))


@dataclass
class AuditState:
    state: HostState
    listening: dict[tuple[int, str], list[str]] = field(default_factory=dict)


def parse_listening(lines: list[str]) -> dict[tuple[int, str], list[str]]:
    """Publicly bound sockets from ``ss -H -ltnup``: (port, proto) -> process names."""
    found: dict[tuple[int, str], list[str]] = {}
    try:
        start = lines.index(f"{SECTION}listening") + 1
    except ValueError:
        return found
    for line in lines[start:]:
        parts = line.split()
        if len(parts) < 5 or parts[0] not in ("tcp", "udp"):
            continue
        local = parts[4]
        addr, _, port = local.rpartition(":")
        addr = addr.strip("[]").split("%")[0]
        if not port.isdigit():
            continue
        try:
            if addr not in ("*", "0.0.0.0", "::") and ipaddress.ip_address(addr).is_loopback:
                continue
        except ValueError:
            pass
        names = re.findall(r'\(\("([^"]+)"', line)
        found.setdefault((int(port), parts[0]), [])
        found[(int(port), parts[0])] += [n for n in names if n not in found[(int(port), parts[0])]]
    return found


@dataclass
class HostAudit:
    host: str
    roles: list[str] = field(default_factory=list)
    reachable: bool = True
    error: str | None = None
    ufw: str = "?"  # active, inactive, missing
    missing: list[str] = field(default_factory=list)  # managed rules the roles want, absent
    stray: list[str] = field(default_factory=list)  # managed rules no role wants any more
    unmanaged: list[str] = field(default_factory=list)  # hand-made rules
    settings: list[str] = field(default_factory=list)  # policy / logging / enabled drift
    passive_proftpd: str | None = None
    passive_ufw: str | None = None
    passive_mismatch: bool = False
    fragment_drift: bool = False
    ports: dict[str, str] = field(default_factory=dict)  # "22/tcp" -> symbol
    blocked_listeners: list[str] = field(default_factory=list)
    idle_admitted: list[str] = field(default_factory=list)

    @property
    def drift(self) -> bool:
        return bool(self.missing or self.stray or self.unmanaged or self.settings
                    or self.passive_mismatch or self.fragment_drift or self.ufw == "missing")

    @property
    def verdict(self) -> str:
        if not self.reachable:
            return "unreachable"
        return "drift" if self.drift else "ok"


def _admission(rules: list[UfwRule], active: bool, policy: str, server: str, port: int,
               proto: str) -> str:
    if not active:
        return "open"  # no firewall: everything reaches the host
    if admits(rules, policy, OUTSIDE_V4, server, port, proto):
        return "open"
    for rule in rules:
        if (rule.verdict in ("allow", "limit") and rule.proto in ("any", proto)
                and rule.iface == "in" and port_matches(rule.dport, port)
                and rule.src != ANY[rule.family]):
            return "restricted"
    return "blocked"


def _passive_of_fragment(text: str | None) -> str | None:
    m = re.search(r"^\s*PassivePorts\s+(\d+)\s+(\d+)", text or "", re.M)
    return f"{m.group(1)}:{m.group(2)}" if m else None


def audit_host(plan: HostPlan, seen: AuditState) -> HostAudit:
    """Compare one host's state with its plan (pure: unit-tested with captured facts)."""
    state, ufw = seen.state, seen.state.ufw
    audit = HostAudit(host=plan.host, roles=list(plan.roles))
    audit.ufw = "missing" if not ufw.installed else ("active" if ufw.active else "inactive")
    rule_plan = plan_rules(ufw.rules, plan.rules, ufw.ipv6, purge_unmanaged=False)
    audit.missing = [f"{describe_spec(s, ufw.ipv6)} ({s.label})" for s in rule_plan.add]
    audit.stray = sorted({f"{r.describe()} ({r.label})" for r in rule_plan.delete})
    audit.unmanaged = sorted({r.describe() + (f"  # {r.comment}" if r.comment else "")
                              for r in rule_plan.kept})
    for what, have, want in (("incoming", ufw.incoming, plan.incoming),
                             ("outgoing", ufw.outgoing, plan.outgoing),
                             ("logging", ufw.logging, plan.logging)):
        if have != want:
            audit.settings.append(f"{what} {have} (want {want})")
    if ufw.installed and ufw.active != plan.enabled:
        audit.settings.append(f"ufw {audit.ufw} (want {'active' if plan.enabled else 'inactive'})")

    audit.passive_proftpd = _passive_of_fragment(state.fragment)
    ranges = sorted({r.dport for r in ufw.rules if r.label == "ftp" and ":" in r.dport})
    audit.passive_ufw = ",".join(ranges) or None
    want = f"{plan.passive_ports[0]}:{plan.passive_ports[1]}" if plan.passive_ports else None
    audit.passive_mismatch = not (audit.passive_proftpd == audit.passive_ufw == want)
    audit.fragment_drift = digest(fragment_for(plan)) != state.fragment_sha256

    server = state.ssh_server or "0.0.0.0"
    policy = ufw.incoming
    grid = list(GRID) + ([(plan.ssh_port, "tcp")] if plan.ssh_port != 22 else [])
    for port, proto in grid:
        admitted = _admission(ufw.rules, ufw.active, policy, server, port, proto)
        audit.ports[f"{port}/{proto}"] = SYMBOLS[(admitted, (port, proto) in seen.listening)]
    for (port, proto), names in sorted(seen.listening.items()):
        if _admission(ufw.rules, ufw.active, policy, server, port, proto) == "blocked":
            audit.blocked_listeners.append(f"{port}/{proto} ({', '.join(names) or '?'})")
    idle = set()
    for spec in plan.rules:
        for item in spec.ports:
            if ":" in item:
                continue  # a range (FTP passive) is used on demand
            port = int(item)
            if ((port, spec.proto) not in seen.listening and
                    _admission(ufw.rules, ufw.active, policy, server, port, spec.proto) != "blocked"):
                idle.add((port, spec.proto, spec.label))
    audit.idle_admitted = [f"{p}/{proto} ({label})" for p, proto, label in sorted(idle)]
    return audit


# --- running it over a fleet ------------------------------------------------------------

def collect(inventory_file: str, limit: list[str]) -> tuple[dict[str, HostPlan], dict, dict]:
    """Load the inventory like pyinfra's CLI, connect, read every host once.
    Returns (plans, {host: AuditState}, {host: error})."""
    from pyinfra.api import Config, State
    from pyinfra.api.connect import connect_all
    from pyinfra.api.facts import get_facts
    from pyinfra.api.state import BaseStateCallback
    from pyinfra.context import ctx_inventory, ctx_state
    from pyinfra_cli.inventory import make_inventory

    logging.getLogger("pyinfra").setLevel(logging.CRITICAL)
    errors: dict[str, str] = {}

    class Errors(BaseStateCallback):
        @staticmethod
        def host_connect_error(state, host, error):
            errors[host.name] = str(error.args[0] if getattr(error, "args", None) else error)

    state = State(check_for_changes=False)
    with ctx_state.use(state):
        inventory = make_inventory(inventory_file, cwd=os.getcwd())  # runs check_fleet
        from .validation import check_inventory
        plans = check_inventory(inventory)
        with ctx_inventory.use(inventory):
            hosts = [h for h in inventory if not limit or h.name in limit
                     or any(g in limit for g in h.groups)]
            state.init(inventory, Config(), initial_limit=hosts)
            state.add_callback_handler(Errors())
            connect_all(state)
            facts = get_facts(state, FleetAuditState)
            for host in hosts:
                if host.name not in errors and not isinstance(facts.get(host), AuditState):
                    errors[host.name] = "could not read its state"
            for host in state.inventory.get_active_hosts():
                host.disconnect()
    seen = {h.name: f for h, f in facts.items() if isinstance(f, AuditState)}
    return {h.name: plans[h.name] for h in hosts}, seen, errors


def audit_fleet(plans: dict[str, HostPlan], seen: dict, errors: dict) -> list[HostAudit]:
    audits = []
    for name, plan in plans.items():
        if name in seen:
            audits.append(audit_host(plan, seen[name]))
        else:
            audits.append(HostAudit(host=name, roles=list(plan.roles), reachable=False,
                                    error=errors.get(name, "unreachable")))
    return audits


def exit_status(audits: list[HostAudit]) -> int:
    if any(not a.reachable for a in audits):
        return 2
    return 1 if any(a.drift for a in audits) else 0


def to_json(audits: list[HostAudit]) -> str:
    hosts = [{**asdict(a), "drift": a.drift, "verdict": a.verdict} for a in audits]
    summary = {v: sum(a.verdict == v for a in audits) for v in ("ok", "drift", "unreachable")}
    return json.dumps({"summary": {"hosts": len(audits), **summary, "exit": exit_status(audits)},
                       "hosts": hosts}, indent=2, ensure_ascii=False)


def _paint(text: str, colour: str, tty: bool) -> str:
    codes = {"red": "31", "green": "32", "yellow": "33", "bold": "1"}
    return f"\033[{codes[colour]}m{text}\033[0m" if tty else text


def to_text(audits: list[HostAudit], tty: bool) -> str:
    counts = {v: sum(a.verdict == v for a in audits) for v in ("ok", "drift", "unreachable")}
    out = [f"froxlor-fleet audit: {len(audits)} hosts, {counts['ok']} ok, {counts['drift']} drift, "
           f"{counts['unreachable']} unreachable", ""]
    head = ["host", "roles", "ufw", "missing", "stray", "unmanaged", "settings",
            "passive proftpd|ufw", "verdict"]
    rows = []
    for a in audits:
        passive = "-" if a.passive_proftpd is None and a.passive_ufw is None else \
            f"{a.passive_proftpd or '-'}|{a.passive_ufw or '-'}"
        rows.append([a.host, ",".join(r for r in a.roles if r != "ssh") or "ssh", a.ufw if a.reachable else "?",
                     str(len(a.missing) or "-"), str(len(a.stray) or "-"),
                     str(len(a.unmanaged) or "-"), str(len(a.settings) or "-"),
                     passive + (" ≠" if a.passive_mismatch and a.reachable else ""), a.verdict])
    widths = [max(len(r[i]) for r in rows + [head]) for i in range(len(head))]
    colour = {"ok": "green", "drift": "yellow", "unreachable": "red"}
    out.append("  ".join(h.ljust(w) for h, w in zip(head, widths)))
    for row, a in zip(rows, audits):
        cells = [c.ljust(w) for c, w in zip(row, widths)]
        cells[-1] = _paint(cells[-1], colour[a.verdict], tty)
        out.append("  ".join(cells).rstrip())
    reachable = [a for a in audits if a.reachable]
    if reachable:
        cols = list(dict.fromkeys(p for a in reachable for p in a.ports))
        labels = [c.replace("/tcp", "").replace("/udp", "u") for c in cols]
        name_w = max(len(a.host) for a in reachable)
        out += ["", "ports".ljust(name_w) + " " + " ".join(l.rjust(4) for l in labels)]
        for a in reachable:
            cells = []
            for c in cols:
                sym = a.ports.get(c, " ")
                cells.append(_paint(sym.rjust(4), "red", tty) if sym == "✗" else sym.rjust(4))
            out.append(a.host.ljust(name_w) + " " + " ".join(cells))
        out.append(LEGEND)
    findings = []
    for a in audits:
        if not a.reachable:
            findings.append(_paint(f"{a.host}: unreachable: {a.error}", "red", tty))
            continue
        findings += [f"{a.host}: missing rule {m}" for m in a.missing]
        findings += [f"{a.host}: stray managed rule {s}" for s in a.stray]
        findings += [f"{a.host}: unmanaged rule {u}" for u in a.unmanaged]
        findings += [f"{a.host}: {s}" for s in a.settings]
        if a.passive_mismatch:
            findings.append(f"{a.host}: passive ports: proftpd {a.passive_proftpd or 'none'}, "
                            f"ufw {a.passive_ufw or 'none'}")
        elif a.fragment_drift:
            findings.append(f"{a.host}: ProFTPd fragment differs from the template")
        findings += [_paint(f"{a.host}: listening but blocked: {b}", "red", tty)
                     for b in a.blocked_listeners]
        if a.idle_admitted:
            findings.append(f"{a.host}: admitted, nothing listens: {', '.join(a.idle_admitted)}")
    if findings:
        out += ["", "findings:"] + [f"  {f}" for f in findings]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m froxlor_fleet audit",
                                     description="Read-only fleet audit (changes nothing).")
    parser.add_argument("inventory")
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.add_argument("--limit", action="append", default=[], help="host or group (repeatable)")
    args = parser.parse_args(argv)
    try:
        plans, seen, errors = collect(args.inventory, args.limit)
    except FleetDataError as e:
        print(f"froxlor-fleet audit: {e}", file=sys.stderr)
        return 2
    audits = audit_fleet(plans, seen, errors)
    print(to_json(audits) if args.json else to_text(audits, sys.stdout.isatty()))
    return exit_status(audits)
