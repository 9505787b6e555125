"""What the host's FTP dump says: which FTP daemons are installed and running,
ProFTPd's configuration tree (replayed by ``replay.py``) and pure-ftpd's passive-range
files.

The host side, ``remote/proftpd_dump.sh``, lists ProFTPd's configuration tree and greps
the few directives that decide ``PassivePorts`` and ``MasqueradeAddress`` (with file and
line); it reads pure-ftpd's ``PassivePortRange`` and ``ForcePassiveIP`` files. Includes
outside /etc/proftpd are followed by the host script too (each new target listed as
deep as its pattern reaches, nested ones as well). What it could not list (behind a
symlinked directory, a glob in the first path component) is "unknown": an unknown file
ProFTPd reads before the fragment is a conflict (cannot tell), not a guess.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field

from ..remote import program
from .replay import ConfTree, ProftpdConfig, evaluate, index_children, norm

DAEMONS = ("proftpd", "pureftpd")
# Binaries the dump looks for; the Debian variants of pure-ftpd all count as pure-ftpd.
BINARY_DAEMON = {
    "proftpd": "proftpd", "pure-ftpd": "pureftpd", "pure-ftpd-mysql": "pureftpd",
    "pure-ftpd-postgresql": "pureftpd", "pure-ftpd-ldap": "pureftpd",
    "pure-ftpd-wrapper": "pureftpd",
}
DEFAULT_CONF = "/etc/proftpd/proftpd.conf"  # Debian's; the dump reports the one it read


def dump_script() -> str:
    """The host-side script's text (``sh -c SCRIPT NAME [ROOT [CONFDIR]]``)."""
    return program("proftpd_dump.sh")


def dump_command() -> str:
    """The dump as one shell command for the state fact: ``sh -c '<script>' froxlor-fleet``.

    Comment lines are dropped to keep the command short; it runs in its own ``sh`` so
    its ``cd``/``set -f`` do not leak into the rest of the fact command."""
    lines = [line for line in dump_script().splitlines()
             if line.strip() and not line.lstrip().startswith("#")]
    return f"sh -c {shlex.quote(chr(10).join(lines) + chr(10))} froxlor-fleet"



@dataclass
class PureFtpdConfig:
    """``/etc/pure-ftpd/conf/PassivePortRange`` and ``ForcePassiveIP`` (Debian wrapper).

    ``PureFtpdConfig(passive_port_range=(50000, 50100), passive_port_range_raw="50000 50100",
    force_passive_ip=None)``"""

    passive_port_range: tuple[int, int] | None = None
    passive_port_range_raw: str | None = None  # None: no such file
    force_passive_ip: str | None = None


@dataclass
class FtpConfig:
    """Everything the dump says.

    ``FtpConfig(installed={"proftpd": "/usr/sbin/proftpd"}, running={"proftpd": 812},
    proftpd=ProftpdConfig(...), pureftpd=PureFtpdConfig(...))``"""

    installed: dict[str, str] = field(default_factory=dict)  # daemon -> binary
    running: dict[str, int] = field(default_factory=dict)  # daemon -> pid
    proftpd: ProftpdConfig = field(default_factory=lambda: ProftpdConfig(DEFAULT_CONF))
    pureftpd: PureFtpdConfig = field(default_factory=PureFtpdConfig)
    tree: ConfTree = field(default_factory=ConfTree, repr=False)


def _split_grep_line(line: str, listed: list[str]) -> tuple[str, int, str] | None:
    """``etc/x.conf:12:TEXT`` -> ``("/etc/x.conf", 12, "TEXT")``; the path is matched
    against the listed files, so a ':' in a file name or in TEXT cannot mislead it."""
    for path in listed:
        rel = path.lstrip("/") + ":"
        if line.startswith(rel):
            num, sep, text = line[len(rel):].partition(":")
            if sep and num.isdigit():
                return path, int(num), text
    return None


def _ports(value: str) -> tuple[int, int] | None:
    """pure-ftpd's ``LOW HIGH`` (the wrapper also takes ``LOW:HIGH``)."""
    words = value.replace(":", " ").split()
    if len(words) == 2 and all(w.isdigit() for w in words):
        return int(words[0]), int(words[1])
    return None


def parse_dump(lines: list[str]) -> FtpConfig:
    """Build an ``FtpConfig`` from the dump's output lines (other lines are ignored)."""
    cfg = FtpConfig()
    tree = cfg.tree
    grep_lines: list[str] = []
    conf_path = DEFAULT_CONF
    for raw in lines:
        line = raw.rstrip("\n")
        tag, _, rest = line.partition(" ")
        if tag == "@bin":
            name, _, path = rest.partition(" ")
            daemon = BINARY_DAEMON.get(name)
            if daemon:  # the script lists pure-ftpd's daemons before its wrapper
                cfg.installed.setdefault(daemon, path)
        elif tag == "@run":
            name, _, pid = rest.partition(" ")
            if name in DAEMONS and pid.isdigit():
                cfg.running[name] = int(pid)
        elif tag == "@pure":
            key, _, value = rest.partition(" ")
            if key == "PassivePortRange":
                cfg.pureftpd.passive_port_range_raw = value.strip()
                cfg.pureftpd.passive_port_range = _ports(value)
            elif key == "ForcePassiveIP":
                cfg.pureftpd.force_passive_ip = value.strip() or None
        elif tag == "@conf":
            conf_path = norm(rest)
        elif tag == "@root":
            path, _, depth = rest.rpartition(" ")
            tree.roots.append((norm(path), None if depth == "-" else int(depth)))
        elif tag == "@f":
            kind, _, path = rest.partition(" ")
            tree.entries[norm(path)] = kind
        elif tag == "@missing":
            tree.missing.add(norm(rest))
        elif tag == "@unknown":
            tree.not_listed.add(norm(rest))
        elif line and not line.startswith(("@", ":::")):
            grep_lines.append(line)
    # Longest first: "a.conf" must not claim the lines of "a.conf.bak".
    listed = sorted(tree.entries, key=len, reverse=True)
    for line in grep_lines:
        hit = _split_grep_line(line, listed)
        if hit:
            tree.lines.setdefault(hit[0], []).append((hit[1], hit[2]))
    index_children(tree)
    cfg.proftpd = evaluate(tree, conf_path)
    return cfg
