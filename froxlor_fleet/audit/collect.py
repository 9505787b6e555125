"""Drive pyinfra for the audit: load the inventory as pyinfra's CLI does, connect to the
targeted hosts with valid data, read each once (``FleetAuditState``), disconnect.

Everything a user or a host can get wrong ends as a ``Finding`` in the ``FleetAudit``
(never an exception): a missing inventory, an error in its files, a ``--limit`` that
matches nothing, bad data, an unreachable host, a read that failed. With ``--probe`` the
hosts it read are then probed from here (``probe.py``). ``Progress`` says how far it got,
on a terminal only.
"""

from __future__ import annotations

import os
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from pyinfra.api import Config, Host, Inventory, State
from pyinfra.api.connect import disconnect_all
from pyinfra.api.exceptions import PyinfraError
from pyinfra.api.facts import get_fact
from pyinfra.api.state import BaseStateCallback, StateStage
from pyinfra.context import ctx_config, ctx_host, ctx_inventory, ctx_state

from ..model import loading
from ..model.groups import connect_name, group_members, resolve_groups
from ..model.plan import HostPlan
from .compare import (
    Finding,
    FleetAudit,
    HostAudit,
    audit_host,
    bad_data,
    fleet_error,
    unreachable,
)
from .fact import AuditState, FleetAuditState
from .probe import ProbeOptions, ProbeTarget, probe_fleet, target_for


class Progress:
    """How far the audit got, as one line on ``stream`` rewritten in place ("audited
    3/30 hosts..."). Only for a terminal (``on_terminal``): a pipe, a file or a CI log
    gets nothing, so ``--json`` on stdout and logs stay as they were."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self._stream = stream
        self._width = 0  # of the line shown: a shorter one must cover all of it

    @classmethod
    def on_terminal(cls, stream: TextIO) -> Progress:
        return cls(stream if stream.isatty() else None)

    def show(self, text: str) -> None:
        if self._stream is None:
            return
        self._stream.write("\r" + text.ljust(self._width))
        self._stream.flush()
        self._width = max(self._width, len(text))

    def done(self) -> None:
        """Clear the line, so the report starts on a clean one."""
        if self._stream is None or not self._width:
            return
        self._stream.write("\r" + " " * self._width + "\r")
        self._stream.flush()
        self._width = 0


@dataclass(frozen=True)
class AuditOptions:
    """The audit's inputs: the inventory as pyinfra takes it, plus pyinfra's config."""

    inventory: loading.InventoryOptions
    config_file: str = "config.py"  # pyinfra's --config, relative to the working directory
    sudo: bool = False
    sudo_user: str | None = None
    su_user: str | None = None
    parallel: int | None = None
    probe: ProbeOptions | None = None  # audit --probe: also try the hosts from here


def error_text(error: BaseException) -> str:
    """One line for an exception from pyinfra or from the user's inventory files."""
    if isinstance(error, SyntaxError):  # a broken inventory, group data or config file
        return f"{error.filename}:{error.lineno}: {error.msg}"
    inner = getattr(error, "exception", None)  # pyinfra_cli's UnexpectedExternalError
    if isinstance(inner, BaseException):  # wraps what the user's file raised
        where = str(getattr(error, "filename", "") or "")
        lines = [f.lineno for f in traceback.extract_tb(inner.__traceback__) if f.filename == where]
        if where and lines:
            where = f"{where}:{lines[-1]}"
        text = f"{type(inner).__name__}: {inner}"
        return f"{where}: {text}" if where else text
    if isinstance(error, OSError) and (error.strerror or error.errno):
        # "Is a directory: /tmp", not the bare errno that is args[0]
        text = error.strerror or os.strerror(error.errno or 0)
        paths = [str(f) for f in (error.filename, error.filename2) if f is not None]
        return f"{text}: {' -> '.join(paths)}" if paths else text
    if error.args and isinstance(error.args[0], str):
        text = error.args[0]
    elif error.args:  # never a lone number
        text = f"{type(error).__name__}: {error}"
    else:
        text = type(error).__name__
    return " ".join(text.split())


def connect_error_text(host: Host, error: BaseException) -> str:
    """pyinfra's connect error, with what paramiko knows underneath it.

    When the SSH handshake does not finish within pyinfra's ``CONNECT_TIMEOUT``, paramiko
    stops waiting without an error of its own and pyinfra then reports the next call's
    "No existing session"; the transport still knows what happened (an error it saved,
    or no banner read at all)."""
    text = error_text(error)
    client = getattr(host.connector, "client", None)
    transport = client.get_transport() if client is not None else None
    if transport is None or getattr(transport, "initial_kex_done", True):
        return text  # no SSH session was being negotiated, or it was: pyinfra's words
    saved = transport.get_exception()
    if saved is not None:
        return f"SSH error ({error_text(saved)})"
    timeout = host.state.config.CONNECT_TIMEOUT if host.state else None
    within = f" within {timeout} s" if timeout else ""
    if not getattr(transport, "remote_version", ""):
        return (f"no SSH banner{within}: the port accepts connections, but no SSH server "
                "answers on it")
    return f"SSH negotiation did not finish{within} (server {transport.remote_version})"


def _connect_all(state: State, errors: dict[str, str], progress: Progress) -> None:
    """pyinfra's ``connect_all``, except that an error the connector raises instead of a
    ``ConnectError`` (a missing or invalid --ssh-key: ``PyinfraError``) fails that host
    with its message instead of ending the connect phase for all (and a gevent
    traceback on stderr)."""
    hosts = [h for h in state.inventory if state.is_host_in_limit(h)]
    progress.show(f"connecting to {len(hosts)} host{'s' if len(hosts) != 1 else ''}...")

    def connect(host: Host) -> None:
        try:
            host.connect()  # a ConnectError goes to host_connect_error, not up here
        except (PyinfraError, OSError) as error:  # e.g. "No such private key file: …"
            errors[host.name] = error_text(error)
        except Exception as error:  # anything else the connector raised: still one host's
            errors[host.name] = f"{type(error).__name__}: {error}"

    state.pool.map(connect, hosts)  # in parallel, as many at once as --parallel says
    for host in hosts:
        if host.connected:
            state.activate_host(host)
    try:
        state.fail_hosts({h for h in hosts if not h.connected}, activated_count=len(hosts))
    except PyinfraError:
        pass  # "No hosts remaining!": every host failed, each has its error


def make_config(options: AuditOptions) -> Config:
    """pyinfra's ``Config``: ``config.py`` first, then the command-line flags over it."""
    from pyinfra_cli.util import exec_file

    config = Config()
    path = Path(options.inventory.cwd, options.config_file)
    if path.is_file():  # pyinfra too ignores a missing config file
        with ctx_config.use(config):
            exec_file(str(path))
    if options.sudo:
        config.SUDO = True
        if options.sudo_user:
            config.SUDO_USER = options.sudo_user
    if options.su_user:
        config.SU_USER = options.su_user
    if options.parallel:
        config.PARALLEL = options.parallel
    # Read every host that answers; the ones that don't are findings, not a reason to stop.
    config.FAIL_PERCENT = None
    return config


def _read_facts(state: State, fact: type[FleetAuditState], progress: Progress,
                total: int) -> dict[Host, Any]:
    """pyinfra's ``get_facts`` for the connected hosts, in parallel as there, saying how
    many hosts are done as each read ends (a host that failed to connect is done)."""
    hosts = list(state.inventory.get_active_hosts())
    done = total - len(hosts)

    def read(host: Host) -> tuple[Host, Any]:
        with ctx_host.use(host):
            return host, get_fact(state, host, fact, apply_failed_hosts=False)

    results: dict[Host, Any] = {}
    with ctx_state.use(state):
        progress.show(f"audited {done}/{total} hosts...")
        for host, value in state.pool.imap_unordered(read, hosts):
            results[host] = value
            done += 1
            progress.show(f"audited {done}/{total} hosts...")
    return results


def _read_hosts(state: State, inventory: Inventory, config: Config, hosts: list[Host],
                fact: type[FleetAuditState], progress: Progress,
                ) -> tuple[dict[str, AuditState], dict[str, str]]:
    """Connect to ``hosts`` and read each once: ({host: state}, {host: why not})."""
    errors: dict[str, str] = {}

    class ConnectErrors(BaseStateCallback):
        @staticmethod
        def host_connect_error(state: State, host: Host, error: BaseException) -> None:
            errors[host.name] = connect_error_text(host, error)

    with ctx_inventory.use(inventory), ctx_config.use(config):
        state.init(inventory, config, initial_limit=hosts)
        state.add_callback_handler(ConnectErrors())
        state.set_stage(StateStage.Connect)
        _connect_all(state, errors, progress)
        state.set_stage(StateStage.Prepare)
        try:
            facts = _read_facts(state, fact, progress, len(hosts))
        finally:
            disconnect_all(state)
    seen = {h.name: f for h, f in facts.items() if isinstance(f, AuditState) and f.complete}
    for host in hosts:
        if host.name not in seen:
            errors.setdefault(host.name, "connected, but could not read its state "
                                         "(the read command failed; --debug shows why)")
    return seen, errors


def _load(options: AuditOptions, fleet: FleetAudit) -> tuple[Config, Inventory] | None:
    try:
        config = make_config(options)
        inventory = loading.load_inventory(options.inventory)
    except Exception as error:  # anything in the user's inventory, group data or config
        fleet.errors.append(fleet_error("inventory_error", error_text(error)))
        return None
    if len(inventory) == 0:
        fleet.errors.append(fleet_error(
            "inventory_error", f"inventory {options.inventory.inventory!r} has no hosts"))
        return None
    return config, inventory


def _probe(probes: list[tuple[HostAudit, ProbeTarget]], options: ProbeOptions,
           progress: Progress) -> None:
    def probed(done: int, total: int) -> None:
        progress.show(f"probed {done}/{total} hosts...")

    probe_fleet(probes, options, probed)


def _audited(inventory: Inventory, plan: HostPlan,
             seen: dict[str, AuditState]) -> tuple[HostAudit, HostPlan]:
    """A host the audit read, compared with its plan once its sources naming groups are
    resolved as the deploy resolves them (``groups.resolve_groups``): the hosts read in
    this audit with their own addresses, the others by the address pyinfra connects to
    if it is one. A group without any address is the host's ``data_error``, as the
    deploy fails that host. Returns the audit and the resolved plan."""
    def read(member: Host) -> tuple[str, ...] | None:
        return seen[member.name].state.addresses if member.name in seen else None

    own = seen[plan.host]
    sources = resolve_groups(plan, group_members(inventory, plan, read), ipv6=own.state.ufw.ipv6)
    audit = audit_host(sources.plan, own)
    audit.source_groups = sources.groups
    audit.findings += [Finding("data_error", "error", plan.host, line) for line in sources.errors]
    return audit, sources.plan


def _members_named(inventory: Inventory, plans: list[HostPlan]) -> set[str]:
    """The hosts of the groups these plans' sources name (``"@web_servers"``)."""
    groups = {ref.group for plan in plans for ref in plan.source_groups}
    return {member.name for group in groups for member in inventory.groups.get(group, ())}


def run_audit(options: AuditOptions, progress: Progress | None = None) -> FleetAudit:
    """Audit the targeted hosts; never raises for anything a user or host can cause."""
    progress = progress or Progress()
    try:
        return _run_audit(options, progress)
    finally:
        progress.done()


def _run_audit(options: AuditOptions, progress: Progress) -> FleetAudit:
    fleet = FleetAudit(options.inventory.inventory, options.inventory.limit)
    state = State(check_for_changes=False)
    state.cwd = options.inventory.cwd
    with ctx_state.use(state):
        loaded = _load(options, fleet)
        if loaded is None:
            return fleet
        config, inventory = loaded
        limit = options.inventory.limit
        fleet.errors += [fleet_error("limit_unmatched", f"--limit {p!r} matches no host")
                         for p in loading.unmatched_patterns(inventory, limit)]
        targets = loading.target_hosts(inventory, limit, options.inventory.exclude)
        checked = loading.validate(inventory, targets)
        # (checked.plans: the targets whose data is valid)
        fleet.not_managed = [name for name, plan in checked.plans.items() if not plan.managed]
        audited = [h for h in targets if h.name not in fleet.not_managed]
        # Hosts without froxlor_roles are read only as members of a group a managed
        # host's sources name (their own addresses, as the deploy reads them).
        named = _members_named(inventory, [plan for plan in checked.plans.values() if plan.managed])
        readable = [h for h in targets if h.name in checked.plans
                    and (checked.plans[h.name].managed or h.name in named)]
        # one read for --probe too: the state read has the addresses customers reach
        seen, errors = (_read_hosts(state, inventory, config, readable, FleetAuditState,
                                    progress) if readable else ({}, {}))
    probes: list[tuple[HostAudit, ProbeTarget]] = []
    for host in audited:
        plan: HostPlan | None = checked.plans.get(host.name)
        if plan is None:
            fleet.hosts.append(bad_data(host.name, checked.errors.get(host.name, [])))
        elif host.name in seen:
            audit, plan = _audited(inventory, plan, seen)
            fleet.hosts.append(audit)
            if options.probe:  # only hosts it read: what UFW admits is what is probed
                probes.append((fleet.hosts[-1], target_for(plan, seen[host.name],
                                                           fleet.hosts[-1], connect_name(host))))
        else:
            fleet.hosts.append(unreachable(host.name, plan, errors[host.name]))
    if options.probe and probes:
        _probe(probes, options.probe, progress)
    return fleet
