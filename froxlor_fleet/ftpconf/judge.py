"""Would ProFTPd use this deploy's fragment? The replay (``replay.py``) of the host's
configuration with the fragment as it is about to be written, judged: conflicts that
must stop the host, notes worth showing.
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass, field, replace

from .dump import FtpConfig
from .replay import ProftpdConfig, Setting, evaluate, index_children, norm


def with_fragment(cfg: FtpConfig, fragment_path: str, wanted_range: tuple[int, int],
                  wanted_masquerade: str | None) -> ProftpdConfig:
    """The replay as it will be once this deploy's fragment is written as wanted."""
    tree = replace(cfg.tree, entries=dict(cfg.tree.entries), lines=dict(cfg.tree.lines))
    path = norm(fragment_path)
    tree.entries[path] = "ff"
    parent = posixpath.dirname(path)
    while parent not in tree.entries and parent != "/":  # written with its directory
        tree.entries[parent] = "dd"
        parent = posixpath.dirname(parent)
    tree.lines[path] = [(0, f"PassivePorts {wanted_range[0]} {wanted_range[1]}")]
    if wanted_masquerade:
        tree.lines[path].append((0, f"MasqueradeAddress {wanted_masquerade}"))
    index_children(tree)
    return evaluate(tree, cfg.proftpd.conf_path, ours=path)


@dataclass
class FtpCheck:
    """``conflicts``: lines that must stop the host; ``notes``: worth showing, harmless."""

    conflicts: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    effective: ProftpdConfig | None = None  # the replay with the wanted fragment


def _where(s: Setting) -> str:
    extra = ""
    if s.conditions:
        extra += f" (inside {', '.join(s.conditions)}, counted as active)"
    if s.global_from is not None:
        extra += " (inside <Global>)"
    return f"{s.origin}{extra}"


def _advice(s: Setting, conf_path: str, fragment_path: str) -> str:
    if s.file == conf_path:
        return ("remove it from proftpd.conf (this deploy does not edit froxlor's "
                "proftpd.conf; froxlor rewrites it and keeps it commented out)")
    if posixpath.dirname(s.file) == posixpath.dirname(fragment_path):
        return (f"remove it from {s.file} (ProFTPd reads {posixpath.dirname(s.file)}/ in byte "
                f"order and uses the first one; {posixpath.basename(s.file)} comes before "
                f"{posixpath.basename(fragment_path)})")
    return f"remove it from {s.file} (ProFTPd reads it before {fragment_path})"


def _same(directive: str, a: str, b: str) -> bool:
    if directive == "PassivePorts":
        pa = Setting(directive, a, "", None).ports
        return pa is not None and pa == Setting(directive, b, "", None).ports
    return a.strip().lower() == b.strip().lower()


def _main_winner(check: FtpCheck, eff: ProftpdConfig, directive: str, wanted: str,
                 fragment_path: str) -> None:
    """Judge the main server's effective ``directive`` against ``wanted``."""
    winner = {"PassivePorts": eff.passive_ports,
              "MasqueradeAddress": eff.masquerade}[directive]
    ours = [o for o in eff.occurrences if o.ours and o.directive == directive]
    where = next((c for o in ours for c in (o.invalid, o.session) if c), None)
    if where or (winner is None and ours):
        if not where:
            # ours apply nowhere in the main server (there, or in <Global>, one would win):
            # they sit in a <VirtualHost>
            vhost = ours[0].vhost
            assert vhost is not None
            where = f"<VirtualHost {eff.vhosts[vhost].name}>"
        check.conflicts.append(
            f"ProFTPd reads {fragment_path} inside {where} (an Include there), so its "
            f"{directive} does not apply to the main server; include it at the top level")
        return
    if winner is None:
        return
    if not winner.ours:
        if _same(directive, winner.value, wanted):
            check.notes.append(
                f"{_where(winner)} sets {directive} {winner.value} too; ProFTPd uses that one "
                f"(it comes before {fragment_path}), the same as this deploy's, so no "
                f"conflict, but if it is ever changed ProFTPd follows it, not this deploy")
        else:
            check.conflicts.append(
                f"{_where(winner)} sets {directive} {winner.value}, which ProFTPd uses instead "
                f"of this deploy's {wanted} ({fragment_path}); "
                f"{_advice(winner, eff.conf_path, fragment_path)}")
    elif ours:
        before = [u for n, u in eff.unknown if n <= eff.occurrences.index(ours[0])]
        for what in before:
            check.conflicts.append(
                f"ProFTPd reads {what} before {fragment_path}, but the host did not show it; "
                f"cannot tell whether it sets {directive}; make it readable or remove it")
    for other in eff.occurrences:
        applies_to_main = other.vhost is None or other.global_from is not None
        if (other.directive == directive and other is not winner and not other.ours
                and applies_to_main and other.session is None and other.invalid is None):
            check.notes.append(f"{_where(other)} sets {directive} {other.value}, ignored: "
                               f"ProFTPd uses the first one ({winner.origin})")


def _unreadable(check: FtpCheck, eff: ProftpdConfig) -> None:
    for o in eff.occurrences:
        if o.directive == "PassivePorts" and not o.ours and o.ports is None:
            check.conflicts.append(f"{_where(o)}: cannot read PassivePorts {o.value!r} "
                                   "(not two port numbers on one line); write it plainly")


def _invalid(check: FtpCheck, eff: ProftpdConfig) -> None:
    for o in eff.occurrences:
        if o.invalid and not o.ours:
            check.conflicts.append(f"{_where(o)} sets {o.directive} inside {o.invalid}, "
                                   "where ProFTPd does not allow it (proftpd -t fails); remove it")


def _per_session(check: FtpCheck, eff: ProftpdConfig, wanted: dict[str, str | None]) -> None:
    for o in eff.occurrences:
        if o.session is None or o.invalid or o.directive not in wanted:
            continue
        want = wanted[o.directive]
        if want is None:
            check.notes.append(f"{_where(o)} sets {o.directive} {o.value} for sessions "
                               f"matching {o.session}")
        elif _same(o.directive, o.value, want):
            check.notes.append(f"{_where(o)} sets {o.directive} {o.value} for sessions "
                               f"matching {o.session}, the same as this deploy's")
        else:
            check.conflicts.append(
                f"{_where(o)} sets {o.directive} {o.value} inside {o.session}: sessions "
                f"matching it use that instead of this deploy's {want}; remove it")


def _vhosts(check: FtpCheck, eff: ProftpdConfig, wanted_ports: str,
            wanted_masquerade: str | None) -> None:
    for vh in eff.vhosts:
        label = f"<VirtualHost {vh.name}> ({vh.origin})"
        pp = vh.passive_ports
        if pp is None:
            check.conflicts.append(
                f"{label} has no PassivePorts, so its passive transfers use any port, not this "
                f"deploy's {wanted_ports}: the fragment applies to the main server only; set "
                f"PassivePorts {wanted_ports} inside that <VirtualHost> (or in a <Global>)")
        elif not _same("PassivePorts", pp.value, wanted_ports):
            check.conflicts.append(
                f"{label} uses PassivePorts {pp.value} from {_where(pp)}, not this deploy's "
                f"{wanted_ports} (the fragment applies to the main server only); set it to "
                f"{wanted_ports}")
        if wanted_masquerade is None:
            continue
        # Under FTPS (froxlor: TLSRequired on) TLSMasqueradeAddress comes first.
        for s, name in ((vh.tls_masquerade, "TLSMasqueradeAddress"),
                        (vh.masquerade, "MasqueradeAddress")):
            if s is not None:
                if not _same(name, s.value, wanted_masquerade):
                    check.conflicts.append(
                        f"{label} uses {name} {s.value} from {_where(s)}, not this deploy's "
                        f"MasqueradeAddress {wanted_masquerade}; set it to {wanted_masquerade}")
                break
        else:
            check.conflicts.append(
                f"{label} has no MasqueradeAddress, so it announces its own address, not "
                f"this deploy's {wanted_masquerade}; set MasqueradeAddress inside it")


def check(cfg: FtpConfig, fragment_path: str, wanted_range: tuple[int, int],
          wanted_masquerade: str | None = None) -> FtpCheck:
    """Would ProFTPd use this deploy's fragment? Conflicts and notes, one line each.

    Replays the configuration with the fragment as it is about to be written (so it
    works before the first write, and an old fragment on the host does not count)."""
    result = FtpCheck()
    eff = with_fragment(cfg, fragment_path, wanted_range, wanted_masquerade)
    result.effective = eff
    frag = norm(fragment_path)
    wanted_ports = f"{wanted_range[0]} {wanted_range[1]}"
    if not eff.found:
        result.conflicts.append(f"{eff.conf_path} not found: cannot tell what ProFTPd uses "
                                "(froxlor writes it when its FTP service is configured)")
        return result
    if frag not in eff.parse_order:
        result.conflicts.append(
            f"ProFTPd never reads {frag}: no Include in {eff.conf_path} reaches it (froxlor's "
            f"proftpd.conf ends with 'Include {posixpath.dirname(frag)}/'); restore that line")
    else:
        _main_winner(result, eff, "PassivePorts", wanted_ports, frag)
        if wanted_masquerade:
            _main_winner(result, eff, "MasqueradeAddress", wanted_masquerade, frag)
    if eff.masquerade and not eff.masquerade.ours and not wanted_masquerade:
        result.notes.append(f"ProFTPd announces MasqueradeAddress {eff.masquerade.value} "
                            f"({_where(eff.masquerade)}); this deploy sets none")
    tls = eff.tls_masquerade
    if tls is not None:
        if wanted_masquerade and not _same("MasqueradeAddress", tls.value, wanted_masquerade):
            result.conflicts.append(
                f"{_where(tls)} sets TLSMasqueradeAddress {tls.value}: FTPS sessions (froxlor "
                f"requires TLS) announce it instead of this deploy's MasqueradeAddress "
                f"{wanted_masquerade}; remove it or set it to {wanted_masquerade}")
        else:
            result.notes.append(f"FTPS sessions announce TLSMasqueradeAddress {tls.value} "
                                f"({_where(tls)})")
    _unreadable(result, eff)
    _invalid(result, eff)
    _per_session(result, eff, {"PassivePorts": wanted_ports,
                               "MasqueradeAddress": wanted_masquerade,
                               "TLSMasqueradeAddress": wanted_masquerade})
    _vhosts(result, eff, wanted_ports, wanted_masquerade)
    return result


def conflicts(cfg: FtpConfig, fragment_path: str, wanted_range: tuple[int, int],
              wanted_masquerade: str | None = None) -> list[str]:
    """One line per reason ProFTPd would not use ``wanted_range``/``wanted_masquerade``
    from ``fragment_path``; ``[]`` when it will. E.g.::

        ["/etc/proftpd/proftpd.conf:42 sets PassivePorts 49152 65534, which ProFTPd uses
          instead of this deploy's 50000 50100 (/etc/proftpd/conf.d/froxlor-fleet-passive-
          ports.conf); remove it from proftpd.conf (this deploy does not edit ...)"]
    """
    return check(cfg, fragment_path, wanted_range, wanted_masquerade).conflicts
