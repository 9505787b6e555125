"""The audit's three renderings of one ``FleetAudit``: text for people, JSON for CI
(the contract: ``audit.schema.json`` beside this file), and Prometheus' text format
for node_exporter's textfile collector.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from collections import Counter
from dataclasses import asdict
from pathlib import Path
from typing import Any

import click

from .. import __version__
from ..model.groups import GroupAddresses
from . import probe
from .compare import GRID, VERDICTS, Finding, FleetAudit, HostAudit, PortState

# The JSON document's contract version: raised when a field changes meaning or goes away,
# or a closed list (finding kinds) gains a value a consumer validating with the previous
# schema would reject (adding a field does not raise it). 2: hosts[].probe and the kinds
# added since 0.2.0 (its schema 1 rejected them).
SCHEMA_VERSION = 2
SCHEMA_FILE = "audit.schema.json"
STATUS = {0: "ok", 1: "drift", 2: "error"}

SYMBOLS = {("open", True): "●", ("open", False): "○", ("restricted", True): "◐",
           ("restricted", False): "◌", ("blocked", True): "✗", ("blocked", False): "·"}
LEGEND = ("● listening, admitted   ○ admitted, nothing listens   ◐/◌ admitted from some "
          "sources only   ✗ LISTENING BUT BLOCKED   · blocked")


# --- JSON ---------------------------------------------------------------------------------

def _finding(f: Finding) -> dict[str, Any]:
    found: dict[str, Any] = {
        "kind": f.kind, "severity": f.severity, "host": f.host, "port": f.port,
        "ports": f.ports, "proto": f.proto, "role": f.role,
        "processes": list(f.processes), "detail": f.detail}
    if f.kind == "bans":  # fail2ban's bans per jail: {"sshd": 3, "proftpd": 1}
        found["jails"] = dict(f.jails)
    return found


def _port(p: PortState) -> dict[str, Any]:
    return {"port": p.port, "proto": p.proto, "admitted": p.admitted,
            "listening": p.listening, "processes": list(p.processes)}


def _source_group(group: GroupAddresses) -> dict[str, Any]:
    return {"group": group.group, "addresses": list(group.addresses),
            "unknown": [{"host": host, "why": why} for host, why in group.unknown],
            "ipv6_left_out": list(group.ipv6_left_out)}


def _host(a: HostAudit) -> dict[str, Any]:
    severities = Counter(f.severity for f in a.findings)
    # Only for hosts whose data names an inventory group (an optional field of schema 2).
    groups = {"source_groups": [_source_group(g) for g in a.source_groups]} if a.source_groups \
        else {}
    return {
        "host": a.host,
        "verdict": a.verdict,
        "roles": list(a.roles),
        "purge_unmanaged": a.purge_unmanaged,
        "ufw": asdict(a.ufw) if a.ufw else None,
        "passive_ports": {**asdict(a.passive), "match": a.passive.match} if a.passive else None,
        "ports": [_port(p) for p in a.ports],
        "finding_counts": {s: severities.get(s, 0) for s in ("error", "drift", "notice")},
        "probe": probe.document(a.probe) if a.probe else None,
        **groups,
    }


def document(fleet: FleetAudit) -> dict[str, Any]:
    """The JSON document (see ``audit.schema.json`` and the README)."""
    code = fleet.exit_status
    return {
        "schema": SCHEMA_VERSION,
        "tool": {"name": "froxlor-fleet", "version": __version__},
        "inventory": fleet.inventory,
        "limit": list(fleet.limit),
        "exit": code,
        "status": STATUS[code],
        "summary": {"hosts": len(fleet.hosts), **{v: fleet.count(v) for v in VERDICTS}},
        "hosts": [_host(a) for a in fleet.hosts],
        "findings": [_finding(f) for f in fleet.findings],
        # optional (schema 2 allows fields it does not name): targets left out, no roles
        **({"not_managed": list(fleet.not_managed)} if fleet.not_managed else {}),
    }


def to_json(fleet: FleetAudit) -> str:
    return json.dumps(document(fleet), indent=2, ensure_ascii=False)


# --- Prometheus (node_exporter textfile collector) ---------------------------------------

def _label(value: object) -> str:
    text = str(value)
    return text.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _sample(name: str, value: float, **labels: object) -> str:
    inner = ",".join(f'{key}="{_label(val)}"' for key, val in labels.items())
    number = str(int(value)) if float(value).is_integer() else repr(float(value))
    return f"{name}{{{inner}}} {number}" if inner else f"{name} {number}"


def _metric(name: str, help_text: str, samples: list[str]) -> list[str]:
    return [f"# HELP {name} {help_text}", f"# TYPE {name} gauge", *samples]


# froxlor_fleet_audit_port_admitted's values (the JSON's "admitted" as a number)
ADMITTED_VALUE = {"blocked": 0, "restricted": 1, "open": 2}


def to_prometheus(fleet: FleetAudit, now: float | None = None,
                  duration: float | None = None) -> str:
    """The same facts as the JSON, as gauges. Alert on ``froxlor_fleet_audit_exit_status > 0``
    or ``froxlor_fleet_audit_host_verdict{verdict!="ok"} == 1``, and on a stale
    ``froxlor_fleet_audit_last_run_timestamp_seconds``. ``duration``: how long the run
    took, in seconds (no sample when not given). A port's state is in the values (one
    series per host, port and proto), not in labels, so a change is a new value of the
    same series."""
    p = "froxlor_fleet_audit_"
    kinds = Counter((f.host or "", f.kind, f.severity) for f in fleet.findings)
    lines = _metric(p + "info", "Audit schema and tool version.",
                    [_sample(p + "info", 1, schema=SCHEMA_VERSION, version=__version__)])
    lines += _metric(p + "exit_status", "0 the fleet matches its data, 1 drift, 2 errors.",
                     [_sample(p + "exit_status", fleet.exit_status)])
    lines += _metric(p + "last_run_timestamp_seconds", "When this audit ran (Unix time).",
                     [_sample(p + "last_run_timestamp_seconds",
                              round(time.time() if now is None else now))])
    if duration is not None:
        lines += _metric(p + "duration_seconds", "How long this audit took, in seconds.",
                         [_sample(p + "duration_seconds", round(duration, 3))])
    lines += _metric(p + "hosts", "Audited hosts by verdict.",
                     [_sample(p + "hosts", fleet.count(v), verdict=v) for v in VERDICTS])
    lines += _metric(p + "host_verdict", "1 for the host's verdict, 0 for the others.",
                     [_sample(p + "host_verdict", int(a.verdict == v), host=a.host, verdict=v)
                      for a in fleet.hosts for v in VERDICTS])
    lines += _metric(p + "findings", "Findings by host, kind and severity (host \"\": the run).",
                     [_sample(p + "findings", n, host=h, kind=k, severity=s)
                      for (h, k, s), n in sorted(kinds.items())])
    lines += _metric(p + "bans", "fail2ban's bans in UFW by host and jail (a notice: they "
                     "never count as drift).",
                     [_sample(p + "bans", n, host=f.host or "", jail=jail)
                      for f in fleet.findings if f.kind == "bans" for jail, n in f.jails])
    ports = [(a.host, q) for a in fleet.hosts for q in a.ports]
    lines += _metric(p + "port_admitted", "What UFW admits to the port: 2 from anywhere, "
                     "1 from some sources or interfaces only, 0 nothing.",
                     [_sample(p + "port_admitted", ADMITTED_VALUE[q.admitted], host=host,
                              port=q.port, proto=q.proto) for host, q in ports])
    lines += _metric(p + "port_listening", "1 when a process listens on the port on a "
                     "non-loopback address.",
                     [_sample(p + "port_listening", int(q.listening), host=host, port=q.port,
                              proto=q.proto) for host, q in ports])
    return "\n".join(lines + _probe_metrics(fleet)) + "\n"


# froxlor_fleet_audit_probe_port's values (a TCP connect from the control node)
REACH_VALUE = {"connected": 2, "refused": 1}


def _probe_metrics(fleet: FleetAudit) -> list[str]:
    """audit --probe's gauges; a check that was not made has no sample (not a 0)."""
    p = "froxlor_fleet_audit_probe_"
    seen = [(a.host, f"ipv{r.family}", r) for a in fleet.hosts if a.probe
            for r in a.probe.addresses]
    if not seen:
        return []
    ftp = [(h, f, r.ftp) for h, f, r in seen if r.ftp]
    checks = [(h, f, c) for h, f, x in ftp for c in x.passive if c.port is not None]
    lines = _metric(p + "ftp", "1 when an FTPS control connection with TLS worked from the "
                    "control node.",
                    [_sample(p + "ftp", int(x.tls), host=h, family=f) for h, f, x in ftp])
    lines += _metric(p + "passive", "1 when the port a passive-mode request (PASV, EPSV) "
                     "offered is inside UFW's range and its data connection opened.",
                     [_sample(p + "passive", int(bool(c.inside) and c.data in probe.DATA_OK),
                              host=h, family=f, command=c.command)
                      for h, f, c in checks if c.data != "not_checked"])
    lines += _metric(p + "passive_port", "The port a passive-mode request offered.",
                     [_sample(p + "passive_port", c.port or 0, host=h, family=f,
                              command=c.command) for h, f, c in checks])
    lines += _metric(p + "port", "A TCP connect from the control node to a role port UFW "
                     "admits: 2 connected, 1 refused, 0 no answer.",
                     [_sample(p + "port", REACH_VALUE.get(q.reach, 0), host=h, family=f,
                              port=q.port, proto=q.proto) for h, f, r in seen for q in r.ports])
    return lines


def write_atomically(path: str, text: str) -> None:
    """Write ``text`` to ``path`` so a reader (node_exporter) never sees half a file:
    a temporary file in the same folder, flushed to disk, then renamed over it."""
    target = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o644)  # node_exporter often runs as another user
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


# --- text -----------------------------------------------------------------------------------

def colour_wanted(tty: bool) -> bool:
    """Colour only on a terminal, and never when ``NO_COLOR`` is set to anything but ""
    (https://no-color.org)."""
    return tty and not os.environ.get("NO_COLOR")


def plural(count: int, noun: str, nouns: str | None = None) -> str:
    """``1 error``, ``2 errors``, ``0 errors``."""
    return f"{count} {noun if count == 1 else (nouns or noun + 's')}"


def _paint(text: str, colour: str, tty: bool) -> str:
    return click.style(text, fg=colour) if colour_wanted(tty) else text


def _matrix_row(a: HostAudit) -> list[str]:
    passive = "-"
    if a.passive:
        passive = f"{a.passive.proftpd or '-'}|{a.passive.ufw or '-'}"
        passive += "" if a.passive.match else " ≠"
    roles = ",".join(r for r in a.roles if r != "ssh") or ("ssh" if a.roles else "?")
    return [a.host, roles, a.ufw.state if a.ufw else "?",
            # missing: wanted rules not in force as wanted (absent, unmarked, another
            # action, or a deny an earlier allow matches first)
            str(a.count("missing_rule", "retag_rule", "action_rule", "shadowed_rule") or "-"),
            str(a.count("stray_rule") or "-"),
            str(a.count("unmanaged_rule") or "-"),
            str(a.count("setting", "ufw_missing", "ufw_not_enabled") or "-"),
            passive, a.verdict]


def _matrix(fleet: FleetAudit, tty: bool) -> list[str]:
    head = ["host", "roles", "ufw", "missing", "stray", "unmanaged", "settings",
            "passive proftpd|ufw", "verdict"]
    rows = [_matrix_row(a) for a in fleet.hosts]
    widths = [max(len(r[i]) for r in rows + [head]) for i in range(len(head))]
    colour = {"ok": "green", "drift": "yellow", "unreachable": "red", "error": "red"}
    out = ["  ".join(h.ljust(w) for h, w in zip(head, widths, strict=True)).rstrip()]
    for row, a in zip(rows, fleet.hosts, strict=True):
        cells = [c.ljust(w) for c, w in zip(row, widths, strict=True)]
        cells[-1] = _paint(cells[-1], colour[a.verdict], tty)
        out.append("  ".join(cells).rstrip())
    return out


def _grid(hosts: list[HostAudit], tty: bool) -> list[str]:
    columns = list(GRID)
    columns += sorted({(a.ssh_port, "tcp") for a in hosts} - set(columns))
    labels = [f"{port}" if proto == "tcp" else f"{port}u" for port, proto in columns]
    name_w = max(len(a.host) for a in hosts)
    out = ["ports".ljust(name_w) + " " + " ".join(label.rjust(4) for label in labels)]
    for a in hosts:
        cells = []
        for port, proto in columns:
            state = a.port(port, proto)
            symbol = SYMBOLS[(state.admitted, state.listening)] if state else " "
            cells.append(_paint(symbol.rjust(4), "red", tty) if symbol == "✗" else symbol.rjust(4))
        out.append(a.host.ljust(name_w) + " " + " ".join(cells))
    return out + [LEGEND]


def _finding_lines(fleet: FleetAudit, tty: bool) -> list[str]:
    sections: dict[str, list[str]] = {"error": [], "drift": [], "notice": []}
    for f in fleet.errors:
        sections["error"].append(_paint(f"{f.kind.replace('_', ' ')}: {f.detail}", "red", tty))
    for a in fleet.hosts:
        idle = [f for f in a.findings if f.kind == "idle_admitted"]
        for f in a.findings:
            if f.kind == "idle_admitted":
                continue
            line = f"{a.host}: {f.detail}"
            if f.kind == "unmanaged_rule" and f.severity == "notice":
                line += " (kept: firewall_purge_unmanaged is off)"
            red = f.severity == "error" or f.kind == "listening_blocked"
            sections[f.severity].append(_paint(line, "red", tty) if red else line)
        if idle:
            ports = ", ".join(f.detail.split(": ", 1)[1] for f in idle)
            sections["notice"].append(f"{a.host}: admitted, nothing listens: {ports}")
    out: list[str] = []
    for severity, title in (("error", "errors"), ("drift", "drift"), ("notice", "notices")):
        if sections[severity]:
            out += ["", f"{title}:"] + [f"  {line}" for line in sections[severity]]
    return out


def to_text(fleet: FleetAudit, tty: bool = False) -> str:
    errors = fleet.count("error") + len(fleet.errors)
    out = [f"froxlor-fleet audit: {plural(len(fleet.hosts), 'host')}, {fleet.count('ok')} ok, "
           f"{fleet.count('drift')} drift, {fleet.count('unreachable')} unreachable, "
           f"{plural(errors, 'error')}"]
    if fleet.not_managed:
        out += ["", "not audited, no froxlor_roles in their data (not managed by froxlor-fleet): "
                    + ", ".join(fleet.not_managed)]
    if fleet.hosts:
        out += [""] + _matrix(fleet, tty)
    read = [a for a in fleet.hosts if a.ports]
    if read:
        out += [""] + _grid(read, tty)
    probed = [line for a in fleet.hosts if a.probe for line in probe.summary_lines(a.host, a.probe)]
    if probed:
        out += ["", "probe from the control node:"] + [f"  {line}" for line in probed]
    groups = [f"  {a.host}: {g.describe()}" for a in fleet.hosts for g in a.source_groups]
    if groups:
        out += ["", "sources from the inventory:"] + groups
    return "\n".join(out + _finding_lines(fleet, tty))
