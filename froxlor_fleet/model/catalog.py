"""The role catalog: which ports each froxlor role opens, and every data default.

Single source of truth, taken from froxlor's "Service Ports" page. The README's
data table mirrors ``DEFAULTS``; ``tests/test_catalog.py`` keeps the two in step.
"""

from __future__ import annotations

from dataclasses import dataclass

# Every rule this deploy adds carries a comment starting with ``MARKER``, so a later
# run can tell its own rules (removable) from hand-made ones (kept). Written once, in the
# rule model the host program shares.
from ..remote.ufwmodel import MARKER as MARKER

FRAGMENT_PATH = "/etc/proftpd/conf.d/froxlor-fleet-passive-ports.conf"
LOCK_PATH = "/run/froxlor-fleet.lock"
# How long a run waits for the host lock (another run, or a revert timer, holds it).
LOCK_WAIT = 300
# firewall_confirm_timeout: 0 (off) or this many seconds. Long enough to open a new SSH
# connection, short enough that a run waiting for the host lock (which the revert timer
# holds) does not give up (LOCK_WAIT).
CONFIRM_TIMEOUT_RANGE = (5, 240)
assert CONFIRM_TIMEOUT_RANGE[1] < LOCK_WAIT
# Where the host program is placed, one folder per version (program.py): root-only,
# beside the deploy's other state on the host.
PROGRAM_DIR = "/var/lib/froxlor-fleet/program"
# sha256 of the fragment ProFTPd last loaded through this deploy (a reload that
# failed, or a run cut short, leaves it different from the file: the next run reloads).
LOADED_MARKER = "/var/lib/froxlor-fleet/proftpd-fragment.loaded"
# sha256 of the passive range pure-ftpd last loaded through this deploy
# (``ftpplan.pureftpd_files_digest``): files written but no restart leave it behind the files.
PUREFTPD_LOADED_MARKER = "/var/lib/froxlor-fleet/pureftpd-range.loaded"


@dataclass(frozen=True)
class Service:
    """Ports one role opens: ``ports`` share ``proto``; ``sources_key`` names the
    data key that restricts who may connect (``None``: anywhere); ``when`` names a
    boolean data key without which the service stays closed; ``limit_key`` one that
    makes its rules ``limit`` (ufw's rate limit) instead of ``allow``."""

    ports: tuple[str, ...]
    proto: str
    sources_key: str | None = None
    when: str | None = None
    limit_key: str | None = None


# "ssh" and the FTP passive range depend on data (``validation._role_rules`` fills them
# in, ``plan.py`` holds the result); the rest is fixed.
ROLE_SERVICES: dict[str, tuple[Service, ...]] = {
    # HTTP/3 (froxlor's nginx "http3" setting: listen 443 quic) arrives over UDP.
    "web": (Service(("80", "443"), "tcp"), Service(("443",), "udp", when="web_http3")),
    "ftp": (Service(("21",), "tcp"),),
    # The froxlor table lists 53/tcp only; ordinary DNS queries arrive over UDP, open to
    # anywhere. 53/tcp carries zone transfers to the secondaries (dns_transfer_sources
    # keeps it to them), but also resolvers' retries of answers too big for UDP.
    "dns": (Service(("53",), "tcp", "dns_transfer_sources"), Service(("53",), "udp")),
    "ssh": (Service(("{ssh_port}",), "tcp", "ssh_allowed_sources", limit_key="ssh_rate_limit"),),
    "imap": (Service(("143", "993"), "tcp"),),
    "pop3": (Service(("110", "995"), "tcp"),),
    "smtp": (Service(("25", "465", "587"), "tcp"),),
    # froxlor's UFW example never opens 3306 to the world; neither do we.
    "mysql": (Service(("3306",), "tcp", "mysql_allowed_sources"),),
}

FTP_DAEMONS = ("auto", "proftpd", "pureftpd")

# Convenience names that expand to several roles.
ROLE_ALIASES: dict[str, tuple[str, ...]] = {"mail": ("smtp", "imap")}

VALID_ROLES: tuple[str, ...] = tuple(sorted(set(ROLE_SERVICES) | set(ROLE_ALIASES)))

# Data keys (the public contract of group_data) and their defaults.
DEFAULTS: dict[str, object] = {
    "froxlor_roles": [],
    "ftp_passive_ports": (49152, 65534),
    "ftp_masquerade_address": None,
    # auto: the FTP daemon installed on the host (ProFTPd or pure-ftpd); or insist on one.
    "ftp_daemon": "auto",
    "ssh_port": 22,
    "ssh_allowed_sources": [],  # empty: anywhere
    # ufw limit: a source's 6th new connection within 30 s is refused.
    "ssh_rate_limit": False,
    "web_http3": False,  # the web role also opens 443/udp
    "mysql_allowed_sources": None,  # required when "mysql" is a role
    "dns_transfer_sources": [],  # who may reach 53/tcp on a dns host; empty: anywhere
    "firewall_extra_rules": [],
    "firewall_default_incoming": "deny",
    "firewall_default_outgoing": "allow",
    "firewall_logging": "low",
    "firewall_enabled": True,
    "firewall_purge_unmanaged": False,
    # Refuse changes that could cut the SSH session pyinfra uses (or, when that session
    # can't be found, anything that could cut SSH). False: you accept the risk.
    "firewall_lockout_guard": True,
    # Commit-confirmed UFW changes: the host restores its previous firewall this many
    # seconds after a change unless a NEW SSH connection confirms it. 0: off.
    "firewall_confirm_timeout": 60,
}

# Fields of one ``firewall_extra_rules`` entry besides the required ``port``, and their
# defaults (README: "proto (tcp/udp, default tcp), optional sources, optional comment,
# action (default allow)").
EXTRA_RULE_DEFAULTS: dict[str, object] = {"proto": "tcp", "sources": None, "comment": None,
                                          "action": "allow"}

# What a rule may do: ufw's four verdicts (src/parser.py, UFWCommandRule.parse). ufw
# takes each for tcp and udp alike. deny/reject are added before the allows.
RULE_ACTIONS = ("allow", "deny", "reject", "limit")

# Which data keys are ours: exactly the keys of ``DEFAULTS``. An inventory is shared with
# other deploys (``mysql_root_password``, ``ftp_users``, ``firewall_backend``): any other
# key is theirs, ignored and never printed, unless it is a near miss of one of ours
# (``ssh_allowd_sources``), which would silently mean "not set" — then it is an error
# naming the key meant (``validation.near_miss``). A near miss is two edits (insert,
# delete, substitute, swap two neighbours; case ignored) from our key, or one from a key
# shorter than this, where two edits reach other words (``ssh_port``: ``ssh_host``).
NEAR_MISS_SHORT_KEY = 10

# Keys whose values are combined across host data, groups and all.py instead of
# replaced (pyinfra's own precedence replaces lists: last group wins).
UNION_KEYS = ("froxlor_roles", "firewall_extra_rules")

POLICIES = ("allow", "deny", "reject")
LOG_LEVELS = ("off", "low", "medium", "high", "full")
PROTOCOLS = ("tcp", "udp")
