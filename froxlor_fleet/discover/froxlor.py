"""What froxlor's own settings say, beside what the host runs: the proposal's *froxlor
says* column, the conflicts between the two, and the sources froxlor names. Pure, no I/O.

froxlor's settings alone never decide a role: ``system.ftpserver`` is ``proftpd`` by
default even where no FTP daemon is installed, mail has no on/off switch, and the
services chosen in froxlor's configuration wizard are not stored. So the listeners
decide (``propose``); froxlor's settings are evidence, and where they disagree with
what listens, a conflict to review. Never is a port opened because froxlor says so.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping

from ..ftpconf.dump import FtpConfig
from ..model.validation import address
from .fact import FroxlorSettings

# What the proposal's evidence says where froxlor's settings were not read.
NOT_READ = "(not read)"

Listening = dict[tuple[int, str], list[str]]

WEB_PORTS = ((80, "tcp"), (443, "tcp"))
FTP_PORTS = ((21, "tcp"),)
DNS_PORTS = ((53, "tcp"), (53, "udp"))
MTA_PORTS = ((25, "tcp"), (465, "tcp"), (587, "tcp"))
MDA_PORTS = ((143, "tcp"), (993, "tcp"), (110, "tcp"), (995, "tcp"))

# A setting's value (lower case) -> the process names ss shows for that daemon.
WEB_SERVERS = {"apache2": ("apache2", "httpd"), "nginx": ("nginx",), "lighttpd": ("lighttpd",)}
FTP_SERVERS = {"proftpd": ("proftpd",), "pureftpd": ("pure-ftpd", "pure-ftpd-mysql")}
DNS_SERVERS = {"bind": ("named",), "powerdns": ("pdns_server",)}
MTA_SERVERS = {"postfix": ("master", "smtpd"), "exim4": ("exim4", "exim")}
MDA_SERVERS = {"dovecot": ("dovecot", "imap-login", "pop3-login"),
               "courier": ("couriertcpd", "courierlogger")}

# The settings each evidence topic shows (a role's topic, or a key's own).
TOPIC_SETTINGS = {"web": ("webserver",), "ftp": ("ftpserver",),
                  "dns": ("bind_enable", "dns_server", "nameservers"),
                  "smtp": ("mtaserver",), "imap": ("mdaserver",), "pop3": ("mdaserver",),
                  "mysql": ("mysql_access_host",)}
KEY_SETTINGS = {"web_http3": ("webserver", "http3_support"),
                "dns_transfer_sources": ("axfrservers",),
                "mysql_allowed_sources": ("mysql_access_host",)}
LOOPBACK_NAMES = ("localhost", "localhost.localdomain", "ip6-localhost")


def says(froxlor: FroxlorSettings | None, topic: str, key: str) -> str:
    """The *froxlor says* column of one evidence line (``topic`` as the proposal names
    it: ``web``, ``ftp (not proposed)``, ``8080/tcp``; ``key`` the data key)."""
    if froxlor is None or not froxlor.read:
        return NOT_READ
    names = KEY_SETTINGS.get(key) or TOPIC_SETTINGS.get(topic.split(" ")[0], ())
    if not names:
        return "-"
    shown = [f"{name} {_shown(froxlor.settings[name])}" for name in names
             if name in froxlor.settings]
    return ", ".join(shown) or f"no {names[0]} setting"


def _shown(value: str) -> str:
    return value if value.strip() else repr(value)


def _names(listening: Listening, ports: tuple[tuple[int, str], ...]
           ) -> tuple[list[tuple[int, str]], list[str]]:
    """(the ports of ``ports`` something listens on, the process names ss shows there)."""
    found = [key for key in ports if key in listening]
    names: list[str] = []
    for key in found:
        names += [n for n in listening[key] if n and n != "?" and n not in names]
    return found, names


def _ports(keys: list[tuple[int, str]] | tuple[tuple[int, str], ...]) -> str:
    by_proto: dict[str, list[str]] = {}
    for port, proto in keys:
        by_proto.setdefault(proto, []).append(str(port))
    return ", ".join(f"{','.join(ports)}/{proto}" for proto, ports in by_proto.items())


def _mismatch(value: str, table: Mapping[str, tuple[str, ...]], names: list[str]) -> bool:
    """Do the (known) process names show another daemon than ``value`` names?"""
    expected = table.get(value.lower())
    return bool(expected and names and not any(n in expected or n.startswith(expected)
                                                for n in names))


def review(froxlor: FroxlorSettings | None, listening: Listening, ftp: FtpConfig
           ) -> tuple[list[str], list[str]]:
    """(conflicts, notes): where froxlor's settings and what listens publicly disagree.
    Nothing here proposes or opens anything."""
    if froxlor is None or not froxlor.read:
        return [], []
    conflicts: list[str] = []
    notes: list[str] = []
    web = froxlor.get("webserver")
    if web:
        found, names = _names(listening, WEB_PORTS)
        if not found:
            conflicts.append(f"froxlor says web server {web} but nothing listens on "
                             f"{_ports(WEB_PORTS)}")
        elif _mismatch(web, WEB_SERVERS, names):
            conflicts.append(f"froxlor says {web} but {', '.join(names)} listens on {_ports(found)}")
        if froxlor.get("http3_support") == "1" and (443, "udp") not in listening:
            notes.append(f"froxlor says http3_support 1 ({web}) but nothing listens on 443/udp")
    _ftp(froxlor, listening, ftp, conflicts, notes)
    _dns(froxlor, listening, conflicts, notes)
    for name, ports, table, what in (("mtaserver", MTA_PORTS, MTA_SERVERS, "MTA"),
                                     ("mdaserver", MDA_PORTS, MDA_SERVERS, "IMAP/POP3 server")):
        value = froxlor.get(name)
        found, names = _names(listening, ports)
        if value and _mismatch(value, table, names):
            conflicts.append(f"froxlor says {what} {value} but {', '.join(names)} listens on "
                             f"{_ports(found)}")
    return conflicts, notes


def _ftp(froxlor: FroxlorSettings, listening: Listening, ftp: FtpConfig,
         conflicts: list[str], notes: list[str]) -> None:
    value = froxlor.get("ftpserver")
    if not value:
        return
    found, names = _names(listening, FTP_PORTS)
    if found:
        if _mismatch(value, FTP_SERVERS, names):
            conflicts.append(f"froxlor says FTP ({value}) but {', '.join(names)} listens on 21/tcp")
        return
    if ftp.installed:
        conflicts.append(f"froxlor says FTP ({value}) but nothing listens on 21/tcp "
                         f"({', '.join(sorted(ftp.installed))} installed)")
    else:
        # froxlor's default, set whether or not an FTP daemon was ever installed
        notes.append(f"froxlor says FTP ({value}) but no FTP daemon is installed and nothing "
                     "listens on 21/tcp: froxlor's default setting, no ftp")


def _dns(froxlor: FroxlorSettings, listening: Listening, conflicts: list[str],
         notes: list[str]) -> None:
    enabled = froxlor.get("bind_enable")
    server = froxlor.get("dns_server") or "Bind"
    found, names = _names(listening, DNS_PORTS)
    if enabled == "1":
        if not found:
            conflicts.append(f"froxlor says DNS ({server}, bind_enable 1) but nothing listens on "
                             f"{_ports(DNS_PORTS)}")
        elif _mismatch(server, DNS_SERVERS, names):
            conflicts.append(f"froxlor says DNS ({server}) but {', '.join(names)} listens on "
                             f"{_ports(found)}")
    elif enabled is not None and found:
        notes.append(f"froxlor's nameserver is off (bind_enable {enabled}) but "
                     f"{', '.join(names) or 'something'} listens on {_ports(found)}: froxlor "
                     "does not manage it")


def sources(froxlor: FroxlorSettings | None, name: str) -> tuple[list[str], list[str]]:
    """(the addresses and networks of setting ``name`` (a comma- or space-separated list
    of hosts) that the deploy's validation accepts, as it writes them; what is left out,
    each with why). Names are left out: the firewall takes addresses, and a name resolved
    here may not be what the host resolves (nor stay so)."""
    value = froxlor.get(name) if froxlor else None
    found: list[str] = []
    dropped: list[str] = []
    for item in (i for i in re.split(r"[\s,;]+", value or "") if i):
        bare = item.strip("[]")
        try:
            loopback = ipaddress.ip_network(bare, strict=False).is_loopback
        except ValueError:
            loopback = bare.lower() in LOOPBACK_NAMES
        if loopback:
            dropped.append(f"{item} (this host itself)")
            continue
        if "_" in bare or ("%" in bare and ":" not in bare):
            dropped.append(f"{item} (a MySQL host pattern)")
            continue
        try:
            source = address(bare)
        except ValueError as error:
            why = "a name, not an address" if re.fullmatch(r"[A-Za-z0-9.-]+", bare) and \
                re.search(r"[A-Za-z]", bare) else str(error)
            dropped.append(f"{item} ({why})")
            continue
        if source not in found:
            found.append(source)
    return found, dropped
