"""The packaged deploy: ``froxlor_firewall()`` from a froxlor host's group data."""

from __future__ import annotations

from pyinfra import host, inventory, logger, state
from pyinfra.api import Host, deploy

from .facts import host_state
from .model.catalog import DEFAULTS
from .model.groups import group_members, resolve_groups
from .model.loading import run_plans
from .model.plan import NOT_MANAGED, HostPlan
from .operations import ftp, ufw
from .operations.ftpplan import plan_ftp


def fleet_plans() -> dict[str, HostPlan]:
    """Every targeted host's plan, validated once per run across the hosts this run acts
    on (``--limit``): one bad targeted host stops the run before any operation touches
    any host; hosts outside the limit were only warned about by ``check_fleet``."""
    plans: dict[str, HostPlan] | None = getattr(state, "_froxlor_fleet_plans", None)
    if plans is None:
        plans = run_plans(inventory, state)
        # setattr: pyinfra's State declares no such attribute (mypy's attr-defined)
        setattr(state, "_froxlor_fleet_plans", plans)  # noqa: B010
    return plans


def _run_addresses(member: Host) -> tuple[str, ...] | None:
    """A group member's own addresses, from its state read (one per host and run, the
    one its own deploy uses), when it is part of this run: connected and not failed.
    ``None`` for the others (outside ``--limit``): reading them would connect to them."""
    if member not in state.active_hosts:
        return None
    return host_state(member).addresses


@deploy("froxlor firewall", data_defaults=DEFAULTS)
def froxlor_firewall() -> None:
    """UFW rules, policies and state, and the FTP daemon's passive range (ProFTPd
    fragment or pure-ftpd's files), exactly as the host's ``froxlor_roles`` (and the
    other data keys, see README) ask. Each changed host gets one transaction of the host
    program: the UFW operation carries the FTP daemon's change. A host whose data has no
    ``froxlor_roles`` is left as it is (``plan.NOT_MANAGED``)."""
    data_plan = fleet_plans()[host.name]
    if not data_plan.managed:  # another deploy's host in a shared inventory: no command
        host.log(NOT_MANAGED, logger.info)
        return
    current = host_state(host)
    # Sources naming an inventory group become its hosts' addresses (one resolver, the
    # audit's too): a group without any address leaves this host unchanged, and fails it.
    sources = resolve_groups(data_plan, group_members(inventory, data_plan, _run_addresses),
                             ipv6=current.ufw.ipv6)
    plan = sources.plan
    for group in sources.groups:
        if group.unknown:  # the rules for their addresses would go: say so on every run
            host.log(group.describe(), logger.warning)
    # The FTP side, decided once for this host and run (the daemon, its change, the
    # range switch, or why the ftp role cannot be served) and handed to each operation.
    ftp_plan = plan_ftp(plan, current)
    # A host this run must leave as it is (a source group without addresses, an ftp
    # role no FTP daemon here can serve) fails in the UFW operation, before any change.
    refusal = " | ".join([*sources.errors, *filter(None, [ftp_plan.refusal])]) or None
    ufw.rules_and_policies(
        name="UFW rules, policies and state",
        rules=plan.rules + ftp_plan.keep,
        incoming=plan.incoming,
        outgoing=plan.outgoing,
        logging=plan.logging,
        enabled=plan.enabled,
        purge_unmanaged=plan.purge_unmanaged,
        ssh_port=plan.ssh_port,
        lockout_guard=plan.lockout_guard,
        confirm_timeout=plan.confirm_timeout,
        ftp=ftp_plan.part,
        source_groups=sources.groups,
        refusal=refusal,
    )
    if refusal:
        return  # the host failed: its FTP daemon stays as it is
    if ftp_plan.daemon == "pureftpd" and plan.passive_ports is not None:
        ftp.passive_port_range(name="pure-ftpd passive range",
                               passive_ports=plan.passive_ports,
                               force_passive_ip=plan.masquerade_address, switch=ftp_plan.switch,
                               ftp=ftp_plan)
    else:
        ftp.passive_ports_fragment(name="ProFTPd passive-port fragment",
                                   content=ftp_plan.fragment, switch=ftp_plan.switch,
                                   ftp=ftp_plan)
