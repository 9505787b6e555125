'''The example fleet ``froxlor-fleet init DIR`` writes (``examples/`` in the source is
the same files, a test keeps them equal): an inventory, its group data and the deploy,
commented, that run as written with ``pyinfra inventory.py deploy.py``.
'''

from __future__ import annotations

from pathlib import Path

INVENTORY = '''\
"""The fleet: which hosts, in which groups. Each group's roles and settings are in
group_data/<group>.py (data keys: the README's "Data reference").

    pyinfra inventory.py deploy.py --dry --diff   # preview per host; touches nothing
    pyinfra inventory.py deploy.py -y             # roll out; a second run changes nothing
    froxlor-fleet audit inventory.py              # read-only: does the fleet match its data?

Replace the example.net names with your servers. A name that is not the address:
("web1", {"ssh_hostname": "203.0.113.10"}). A host in several groups runs the union of
their froxlor_roles (web1 below: web and ftp).
"""

from froxlor_fleet.fleetcheck import check_fleet

web_servers = ["web1.example.net", "web2.example.net"]
ftp_servers = ["web1.example.net", "web2.example.net"]
mail_servers = ["mail1.example.net"]
dns_servers = ["ns1.example.net", "ns2.example.net"]
db_servers = ["db1.example.net"]

# Keep this last: it checks every host's data and stops the run with one line per
# problem (host, group, key, value) before pyinfra connects to any host.
check_fleet(__file__)
'''

DEPLOY = '''\
"""Firewall a froxlor fleet: every host's UFW and FTP passive ports from its roles.

    pyinfra inventory.py deploy.py --dry --diff   # preview, touches nothing
    pyinfra inventory.py deploy.py -y             # roll out
    pyinfra inventory.py deploy.py --limit web_servers   # one group (or one host)

Other deploys can share the inventory: froxlor-fleet reads only its own data keys.
"""

from froxlor_fleet.deploys import froxlor_firewall

froxlor_firewall()
'''

ALL = '''\
# Every host (lowest precedence: a group's file or host data overrides these).
# froxlor_roles and firewall_extra_rules are combined across all of a host's groups;
# other keys follow pyinfra's precedence. Every key of this deploy has a default (the
# README's data table); set here only what differs on your fleet, e.g.:

ssh_user = "root"  # pyinfra's own key; a sudo user works too: ssh_user = "admin", _sudo = True
# ssh_port = 2222  # opened in UFW and the port pyinfra connects to, so the two agree
# ssh_allowed_sources = ["198.51.100.0/24"]  # who may reach SSH (default: anywhere)
# ssh_rate_limit = True  # `ufw limit`: a source's 6th new connection within 30 s is refused
# firewall_confirm_timeout = 120  # seconds a new SSH connection has to confirm a change
# firewall_purge_unmanaged = True  # also remove hand-made rules (kept and listed by default)
'''

WEB = '''\
# froxlor's web servers: 80 and 443/tcp.
froxlor_roles = ["web"]
# web_http3 = True  # also 443/udp, for HTTP/3 (froxlor's nginx "http3" setting)
'''

FTP = '''\
# froxlor's FTP servers: 21/tcp and the passive range, which is also written to the FTP
# daemon's config (ProFTPd's conf.d fragment, or pure-ftpd's PassivePortRange), so UFW
# and the daemon always agree. The daemon must be installed (froxlor sets it up).
froxlor_roles = ["ftp"]
ftp_passive_ports = (49152, 65534)  # (low, high) within 1024-65535
# ftp_masquerade_address = "203.0.113.10"  # the public address, for hosts behind NAT
'''

MAIL = '''\
# froxlor's mail servers. "mail" = smtp (25, 465, 587) + imap (143, 993); pop3: 110, 995.
froxlor_roles = ["mail", "pop3"]
'''

DNS = '''\
# froxlor's name servers: 53/udp, and 53/tcp (zone transfers) from dns_transfer_sources.
froxlor_roles = ["dns"]
# dns_transfer_sources = ["@dns_servers"]  # 53/tcp from these name servers only (default: anywhere)
'''

DB = '''\
# froxlor's database servers: 3306/tcp, only from these sources (required with mysql).
froxlor_roles = ["mysql"]
mysql_allowed_sources = ["192.0.2.0/24"]  # the web servers' network; never the world
# mysql_allowed_sources = ["@web_servers"]  # or: the web servers' own addresses (README)
'''

FILES: dict[str, str] = {
    "inventory.py": INVENTORY,
    "deploy.py": DEPLOY,
    "group_data/all.py": ALL,
    "group_data/web_servers.py": WEB,
    "group_data/ftp_servers.py": FTP,
    "group_data/mail_servers.py": MAIL,
    "group_data/dns_servers.py": DNS,
    "group_data/db_servers.py": DB,
}


class TargetExists(Exception):
    """Some of the files are there already; nothing was written."""

    def __init__(self, paths: list[Path]) -> None:
        super().__init__(", ".join(str(p) for p in paths))
        self.paths = paths


def write_example(folder: Path) -> list[Path]:
    """Write ``FILES`` under ``folder`` (made if missing) and return their paths. Writes
    nothing and raises ``TargetExists`` if any of them exists; never overwrites a file
    (each is created exclusively, so a file that appears meanwhile is not replaced)."""
    targets = [folder / name for name in FILES]
    existing = [p for p in targets if p.exists() or p.is_symlink()]
    if existing:
        raise TargetExists(existing)
    written = []
    for path, text in zip(targets, FILES.values(), strict=True):
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("x", encoding="utf-8") as handle:
            handle.write(text)
        written.append(path)
    return written
