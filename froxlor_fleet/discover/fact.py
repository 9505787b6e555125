"""What ``discover`` reads from a host: the audit's one command, then froxlor's settings.

``FleetDiscoverState``'s command is the audit's (``FleetAuditState``: the deploy's state
fact plus ``ss``) with one more section at its end, ``froxlor``: froxlor's own settings
as its database holds them (``remote/froxlor_settings.sh``), so a host is still read
once. From the very same ``ss`` lines it also keeps *where* each public socket is bound
(``0.0.0.0``, ``[::]``, ``*``, one address), which the proposal shows as evidence and
which says the address families a listener serves.

froxlor's settings are read read-only and without any credential: the host-side script
finds froxlor's ``lib/userdata.inc.php`` in a few well-known folders (none there: no
more processes than a few ``test``\\ s), takes only the database's name and host from it
(a line pattern, nothing runs it as PHP, the password is never read out), and when the
database is local asks it as root through MariaDB's unix-socket login for the rows of
``SETTINGS`` in ``panel_settings`` (settinggroup ``system``) only, never through a
froxlor command (froxlor's CLI may run a database update). What it cannot read it says
in one line (``FroxlorSettings.reason``): froxlor not installed, its database on
another host, no mysql client, access denied... The control side keeps only rows of
``SETTINGS``, whatever else a host prints.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field

from pyinfra.api import StringCommand

from ..audit.fact import AuditState, FleetAuditState, public_sockets
from ..facts import SECTION
from ..model.catalog import FRAGMENT_PATH
from ..remote import program

# (port, "tcp"/"udp") -> the public addresses it is bound to, as ss shows them
Bound = dict[tuple[int, str], list[str]]

FROXLOR_SECTION = f"{SECTION}froxlor"
# Where froxlor is installed: its Debian package and its install guide's folders.
INSTALL_DIRS = ("/var/www/froxlor", "/var/www/html/froxlor", "/var/customers/webs/froxlor")
USERDATA = "lib/userdata.inc.php"
# froxlor's settings (panel_settings, settinggroup "system") discover reads: what
# froxlor says about the services of a server. The host-side script's SELECT names
# exactly these (tests/test_discover_froxlor.py holds the two together); the table's
# other rows include secrets (system.mail_smtp_passwd) and are never read.
SETTINGS = ("webserver", "ftpserver", "bind_enable", "dns_server", "mtaserver", "mdaserver",
            "mysql_access_host", "nameservers", "axfrservers", "http3_support")
NOT_INSTALLED = "froxlor not installed"
MAX_VALUE = 1000  # characters of one setting kept (a long list of hosts is still whole)
MAX_REASON = 200


@dataclass(frozen=True)
class FroxlorSettings:
    """froxlor's own settings as one host's database holds them (``SETTINGS`` only:
    varname -> value), or why they were not read (``reason``)."""

    settings: dict[str, str] = field(default_factory=dict)
    reason: str | None = None  # None: read (``settings`` may still lack some)
    install: str | None = None  # the folder froxlor was found in
    database: str | None = None  # the database's name (never a credential)

    @property
    def read(self) -> bool:
        return self.reason is None

    def get(self, name: str) -> str | None:
        return self.settings.get(name) if self.read else None


@dataclass
class DiscoverState(AuditState):
    """``AuditState`` plus where each public socket is bound, and froxlor's settings
    (``None``: the command printed no froxlor section, e.g. it ended early)."""

    bound: Bound = field(default_factory=dict)
    froxlor: FroxlorSettings | None = None


def froxlor_command() -> str:
    """The froxlor section's shell: a ``test`` per install folder in the calling shell
    (no process at all where froxlor is absent), the script only where one holds
    ``lib/userdata.inc.php``."""
    lines = [line for line in program("froxlor_settings.sh").splitlines()
             if line.strip() and not line.lstrip().startswith("#")]
    dirs = " ".join(shlex.quote(d) for d in INSTALL_DIRS)
    found = " || ".join(f'[ -e "${{FROXLOR_FLEET_ROOT:-}}"{shlex.quote(f"{d}/{USERDATA}")} ]'
                        for d in INSTALL_DIRS)
    return (f"echo '{FROXLOR_SECTION}'; if {found}; then "
            f"sh -c {shlex.quote(chr(10).join(lines) + chr(10))} froxlor-fleet {dirs}; "
            f"else echo 'reason {NOT_INSTALLED}'; fi")


class FleetDiscoverState(FleetAuditState):
    """The audit's one command (``FleetAuditState``) and froxlor's settings after it;
    processed into a ``DiscoverState``."""

    def command(self, fragment_path: str = FRAGMENT_PATH) -> StringCommand:
        return StringCommand(super().command(fragment_path), ";", froxlor_command())

    def process(self, output: list[str]) -> DiscoverState:
        read = super().process(output)
        return DiscoverState(read.state, read.listening, read.complete, parse_bound(output),
                             parse_froxlor(output))


def parse_bound(lines: list[str]) -> Bound:
    """From the same ``ss -H -ltnup`` lines as ``audit.fact.parse_listening`` (and the
    same notion of public): (port, proto) -> bound addresses, ``*`` for a dual-stack
    socket, ``[::]`` for an IPv6-only one."""
    found: Bound = {}
    for key, address, _ in public_sockets(lines):
        where = found.setdefault(key, [])
        if address not in where:
            where.append(address)
    return found


_ESCAPES = {"t": "\t", "n": "\n", "\\": "\\", "0": "\0"}


def _unescape(value: str) -> str:
    """A value as ``mysql --batch`` escapes it (tab, newline, backslash, NUL)."""
    return re.sub(r"\\(.)", lambda m: _ESCAPES.get(m.group(1), m.group(0)), value)


def _one_line(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit - 3] + "..."


def parse_froxlor(lines: list[str]) -> FroxlorSettings | None:
    """The ``froxlor`` section (``remote/froxlor_settings.sh``): the rows of ``SETTINGS``
    (any other row a host prints is dropped), or the reason it gives; ``None`` without
    the section."""
    try:
        start = lines.index(FROXLOR_SECTION) + 1
    except ValueError:
        return None
    settings: dict[str, str] = {}
    reason = install = database = None
    for line in lines[start:]:
        if line.startswith(SECTION):
            break
        word, _, rest = line.partition(" ")
        if word == "reason" and reason is None:
            reason = _one_line(rest, MAX_REASON) or "not read"
        elif word == "install" and install is None:
            install = _one_line(rest, MAX_REASON)
        elif word == "database" and database is None:
            database = _one_line(rest, MAX_REASON)
        else:
            fields = line.split("\t")
            if len(fields) == 3 and fields[0] == "system" and fields[1] in SETTINGS:
                settings.setdefault(fields[1], _unescape(fields[2])[:MAX_VALUE])
    if reason is None and database is None:
        reason = "froxlor's settings: nothing read"
    return FroxlorSettings({} if reason else settings, reason, install, database)


def families(addresses: list[str]) -> tuple[int, ...]:
    """The address families sockets bound to ``addresses`` accept: ``*`` both (a v6
    socket without IPV6_V6ONLY takes v4 too), ``[...]`` or a ``:`` IPv6, else IPv4."""
    found: set[int] = set()
    for address in addresses:
        bare = address.strip("[]").split("%")[0]
        if bare == "*":
            found.update((4, 6))
        elif ":" in bare:
            found.add(6)
        else:
            found.add(4)
    return tuple(sorted(found)) or (4, 6)
