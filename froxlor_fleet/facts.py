"""One pyinfra fact that reads everything the deploy needs from a host in one command.

UFW state comes from ufw's own files (``ufw status`` shows nothing while ufw is
inactive), plus the FTP daemons' configuration and loaded markers, the ProFTPd
fragment, the SSH connection pyinfra is using (for the lockout guard), the host's own
addresses (what a source naming a group it is in stands for), other tenants of
the firewall (iptables-persistent, nftables at boot) and the host program placed for
this version (``model/program.py``).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Any

from pyinfra.api import FactBase, Host, QuoteString, StringCommand
from pyinfra.api.arguments import CONNECTOR_ARGUMENT_KEYS, pop_global_arguments
from pyinfra.api.state import StateStage

from .ftpconf.dump import FtpConfig, dump_command, parse_dump
from .model.catalog import FRAGMENT_PATH, LOADED_MARKER, PUREFTPD_LOADED_MARKER
from .model.program import folder
from .model.ufwrules import UfwRule, parse_tuple_line
from .remote import program

SECTION = ":::froxlor-fleet:"
NO_FINAL_NEWLINE = "no-final-newline"  # the fragment file does not end in a newline
POLICY_NAMES = {"DROP": "deny", "ACCEPT": "allow", "REJECT": "reject"}
# The flags ``ip`` gives an address, as the addrs section repeats them after it
# (remote/state.sh reports exactly these): the one place that decides what they exclude.
# An address that failed duplicate address detection is another host's, not this one's.
NOT_HELD = frozenset({"dadfailed"})
# Addresses no customer reaches a server on: not usable yet (tentative), another host's
# (dadfailed), being replaced (deprecated), outgoing only (temporary: privacy extensions).
UNREACHABLE = NOT_HELD | {"tentative", "deprecated", "temporary"}


@dataclass
class UfwState:
    installed: bool = False
    conf_enabled: bool = False  # ENABLED=yes in ufw.conf
    running: bool = False  # ufw's chains are loaded in the kernel
    logging: str = "low"
    incoming: str = "deny"
    outgoing: str = "allow"
    ipv6: bool = True
    rules: list[UfwRule] = field(default_factory=list)

    @property
    def active(self) -> bool:
        return self.conf_enabled and self.running


@dataclass
class HostState:
    ufw: UfwState
    ssh_client: str | None = None  # address pyinfra connects from
    ssh_server: str | None = None  # address and port it connects to
    ssh_port: int | None = None
    ssh_interface: str | None = None  # the interface holding ssh_server
    # The host's own global IPv4/IPv6 addresses (no loopback, link-local or failed ones),
    # in ``ip``'s order: what a source naming a group it is in stands for (a temporary
    # address is one the host connects from).
    addresses: tuple[str, ...] = ()
    # Those of them customers reach it on (none of the ``UNREACHABLE`` flags), in the
    # same order: what the audit's --probe tries.
    reachable: tuple[str, ...] = ()
    ftp: FtpConfig = field(default_factory=lambda: parse_dump([]))  # FTP daemons, effective config
    fragment: str | None = None  # current fragment text, None when absent
    fragment_sha256: str | None = None  # of the exact bytes on the host
    # sha256 of the fragment ProFTPd last loaded through this deploy (None: not known)
    fragment_loaded: str | None = None
    # sha256 of the passive range pure-ftpd last loaded through this deploy (ftpplan.pureftpd_files_digest)
    pureftpd_loaded: str | None = None
    # Other tenants of the firewall (what each means: operations/tenants.py): installed
    # iptables-persistent/netfilter-persistent, an enabled nftables.service that flushes
    # the ruleset, fail2ban's f2b-* chains that ufw flushes (MANAGE_BUILTINS=yes), Docker.
    persistent: tuple[str, ...] = ()
    nftables_flushes: bool = False
    f2b_flushed: bool = False
    docker: bool = False
    # The host program placed for this version (model/program.py): file name -> sha256,
    # and whether anyone but root could write it.
    program: dict[str, str] = field(default_factory=dict)
    program_unsafe: bool = False



class FleetHostState(FactBase[HostState]):
    """
    Returns the host's UFW state, ProFTPd fragment and SSH connection in one read.

    .. code:: python

        HostState(
            ufw=UfwState(installed=True, conf_enabled=True, running=True, logging="low",
                         incoming="deny", outgoing="allow", ipv6=True,
                         rules=[UfwRule(family=4, action="allow", proto="tcp", dport="22",
                                        dst="0.0.0.0/0", sport="any", src="0.0.0.0/0",
                                        comment="froxlor-fleet:ssh"), ...]),
            ssh_client="10.77.0.1", ssh_server="10.77.0.11", ssh_port=22,
            fragment="...PassivePorts 49152 65534\\n", fragment_loaded="9f2c...",
            ssh_interface="eth0", fragment_sha256="9f2c...",
            addresses=("10.77.0.11", "2001:db8::99"), reachable=("10.77.0.11",),
        )
    """

    def command(self, fragment_path: str = FRAGMENT_PATH, program_dir: str | None = None) -> StringCommand:
        # remote/state.sh: the SSH session is looked up past sudo/su (fail-closed guard);
        # remote/proftpd_dump.sh: what decides ProFTPd's effective passive range.
        return StringCommand("sh", "-c", QuoteString(program("state.sh")),
                             "froxlor-fleet", QuoteString(fragment_path), QuoteString(LOADED_MARKER),
                             QuoteString(PUREFTPD_LOADED_MARKER), QuoteString(program_dir or folder()),
                             f"; echo '{SECTION}ftp'; " + dump_command())

    @staticmethod
    def default() -> HostState:
        return HostState(ufw=UfwState())

    def process(self, output: list[str]) -> HostState:
        return parse_state(output)


def _sections(lines: list[str]) -> dict[str, list[str]]:
    sections: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in lines:
        if line.startswith(SECTION):
            current = sections.setdefault(line[len(SECTION):].strip(), [])
        elif current is not None:
            current.append(line)
    return sections


def _assignments(lines: list[str]) -> dict[str, str]:
    values = {}
    for line in lines:
        line = line.strip()
        if line and not line.startswith("#") and "=" in line:
            key, _, value = line.partition("=")
            values[key.strip()] = value.strip().strip('"').strip("'")
    return values


def _addresses(lines: list[str]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The addrs section: an IP address a line, then its flags (``fd00::5 deprecated``).
    Returns (the addresses the host holds: none ``NOT_HELD``; those customers reach: none
    ``UNREACHABLE``), each in the section's order. Anything else (a scoped IPv6
    address: link-local only) is left out."""
    held: list[str] = []
    reachable: list[str] = []
    for line in lines:
        address, *words = line.split() or [""]
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            continue
        flags = set(words)
        if "%" in address or flags & NOT_HELD:
            continue
        held.append(str(ip))
        if not flags & UNREACHABLE:
            reachable.append(str(ip))
    return tuple(dict.fromkeys(held)), tuple(dict.fromkeys(reachable))


def parse_state(lines: list[str]) -> HostState:
    """Build a ``HostState`` from the fact command's output."""
    sec = _sections(lines)
    ufw = UfwState(installed=any(s.strip() for s in sec.get("ufw", [])))
    conf = _assignments(sec.get("conf", []))
    default = _assignments(sec.get("default", []))
    ufw.conf_enabled = conf.get("ENABLED", "no").lower() == "yes"
    ufw.logging = {"on": "low"}.get(conf.get("LOGLEVEL", "low"), conf.get("LOGLEVEL", "low"))
    ufw.incoming = POLICY_NAMES.get(default.get("DEFAULT_INPUT_POLICY", "DROP"), "deny")
    ufw.outgoing = POLICY_NAMES.get(default.get("DEFAULT_OUTPUT_POLICY", "ACCEPT"), "allow")
    ufw.ipv6 = default.get("IPV6", "yes").lower() == "yes"
    ufw.running = "yes" in [s.strip() for s in sec.get("running", [])]
    for family, name in ((4, "rules4"), (6, "rules6")):
        for line in sec.get(name, []):
            rule = parse_tuple_line(line, family)
            if rule:
                ufw.rules.append(rule)

    state = HostState(ufw=ufw)
    ssh = " ".join(sec.get("ssh", [])).split()
    if len(ssh) == 4:
        state.ssh_client, state.ssh_server = ssh[0], ssh[2]
        state.ssh_port = int(ssh[3])
        state.ssh_interface = next((s.strip() for s in sec.get("sshif", []) if s.strip()), None)
    state.addresses, state.reachable = _addresses(sec.get("addrs", []))
    tenants = [line.split() for line in sec.get("tenants", [])]
    state.persistent = tuple(words[1] for words in tenants if words[:1] == ["persistent"]
                             and len(words) == 2)
    state.nftables_flushes = ["nftables-flush"] in tenants
    state.f2b_flushed = ["f2b-flushed"] in tenants
    state.docker = ["docker"] in tenants
    state.ftp = parse_dump(sec.get("ftp", []))
    state.fragment_loaded = next((s.strip() for s in sec.get("loaded", []) if s.strip()), None)
    for line in sec.get("program", []):
        words = line.split()
        if words == ["unsafe"]:
            state.program_unsafe = True
        elif len(words) == 2:
            state.program[words[1]] = words[0]
    state.pureftpd_loaded = next((s.strip() for s in sec.get("pureloaded", []) if s.strip()), None)
    frag = sec.get("fragment")
    if frag:
        # "<sha256>" or "<sha256> no-final-newline": the state read ends the text it
        # shows with a newline the file lacks (the next marker starts its own line).
        words = frag[0].split() or [""]
        state.fragment_sha256 = words[0]
        text = "".join(line + "\n" for line in frag[1:])
        state.fragment = text[:-1] if NO_FINAL_NEWLINE in words[1:] and text.endswith("\n") else text
    return state


def host_state(host: Host, fragment_path: str = FRAGMENT_PATH) -> HostState:
    """``FleetHostState`` read at most once per host and run phase.

    The deploy (to plan a passive-range switch) and each of its operations need it, and
    so does another host's deploy whose data names a group this host is in (its
    addresses); reading it once keeps a no-op run at one remote command per host. Safe
    because no operation changes what a later one reads (UFW state vs. the FTP daemon's
    files). The phases: with change detection, its stage and the execution (a prompt may
    wait in between); with ``-y`` there is one (the deploy reads while preparing, its
    operations run at execution). A read is reused only with the connector arguments it
    was made with (``_connector_arguments``: a read made for another host's deploy has
    this host's own, without its deploy's ``_sudo``)."""
    stage: StateStage | None = host.state.current_stage if host.state.should_check_for_changes() else None
    key = (stage, fragment_path, _connector_arguments(host))
    cached: tuple[tuple[object, ...], HostState] | None = getattr(host, "_froxlor_fleet_state", None)
    if cached and cached[0] == key:
        return cached[1]
    value = host.get_fact(FleetHostState, fragment_path=fragment_path)
    # setattr: pyinfra's Host declares no such attribute (mypy's attr-defined)
    setattr(host, "_froxlor_fleet_state", (key, value))  # noqa: B010
    return value


def _connector_arguments(host: Host) -> tuple[tuple[str, str], ...]:
    """The connector arguments (sudo, su, shell, environment...) a fact read on ``host``
    runs with now, as pyinfra works them out for it (``facts._handle_fact_kwargs``):
    the operation's or deploy's running on ``host``, else its data's and the config's.

    pyinfra's ``pop_global_arguments`` walks every global argument (~2 ms): it runs once
    per host and distinct operation/deploy arguments, since what it adds (the host's
    data, the config) does not change during a run."""
    sources: tuple[dict[str, Any], ...] = (dict(host.current_op_global_arguments or {}),
                                           dict(host.current_deploy_kwargs or {}))
    given = tuple((name, repr(source[name]) if name in source else "-")  # "-": not given
                  for source in sources for name in CONNECTOR_ARGUMENT_KEYS)
    memo: tuple[object, dict[Any, tuple[tuple[str, str], ...]]] | None = \
        host.__dict__.get("_froxlor_fleet_arguments")
    if memo is None or memo[0] is not host.state:  # a run of its own: its own config
        memo = (host.state, {})
        host.__dict__["_froxlor_fleet_arguments"] = memo
    known = memo[1]
    if given not in known:
        arguments, _ = pop_global_arguments(host.state, host,
                                            dict(host.current_op_global_arguments or {}))
        values: dict[str, Any] = dict(arguments)
        known[given] = tuple((name, repr(values.get(name))) for name in CONNECTOR_ARGUMENT_KEYS)
    return known[given]
