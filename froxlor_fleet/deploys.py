"""The packaged deploy: ``froxlor_firewall()`` from a froxlor host's group data."""

from __future__ import annotations

from pyinfra import host, inventory, state
from pyinfra.api import deploy

from .facts import host_state
from .model.catalog import DEFAULTS
from .model.loading import run_plans
from .model.plan import HostPlan
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


@deploy("froxlor firewall", data_defaults=DEFAULTS)
def froxlor_firewall() -> None:
    """UFW rules, policies and state, and the FTP daemon's passive range (ProFTPd
    fragment or pure-ftpd's files), exactly as the host's ``froxlor_roles`` (and the
    other data keys, see README) ask. Each changed host gets one transaction of the host
    program: the UFW operation carries the FTP daemon's change."""
    plan = fleet_plans()[host.name]
    # The FTP side, decided once for this host and run (the daemon, its change, the
    # range switch) and handed to each operation below.
    ftp_plan = plan_ftp(plan, host_state(host))
    # First: an ftp host without an FTP daemon that takes the new range fails here,
    # before its firewall changes.
    ftp.ready_for_ftp(name="FTP server ready for the ftp role",
                      passive_ports=plan.passive_ports,
                      masquerade_address=plan.masquerade_address,
                      ftp_daemon=plan.ftp_daemon, ftp=ftp_plan)
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
    )
    if ftp_plan.daemon == "pureftpd" and plan.passive_ports is not None:
        ftp.passive_port_range(name="pure-ftpd passive range",
                               passive_ports=plan.passive_ports,
                               force_passive_ip=plan.masquerade_address, switch=ftp_plan.switch,
                               ftp=ftp_plan)
    else:
        ftp.passive_ports_fragment(name="ProFTPd passive-port fragment",
                                   content=ftp_plan.fragment, switch=ftp_plan.switch,
                                   ftp=ftp_plan)
