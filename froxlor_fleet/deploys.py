"""The packaged deploy: ``froxlor_firewall()`` from a froxlor host's group data."""

from __future__ import annotations

from pyinfra import host, inventory, state
from pyinfra.api import deploy

from . import firewall, ftpserver, proftpd, pureftpd
from .catalog import DEFAULTS
from .ftpserver import daemon_for
from .hoststate import host_state
from .loading import run_plans
from .passive_switch import plan_switch
from .plan import HostPlan


def fleet_plans() -> dict[str, HostPlan]:
    """Every targeted host's plan, validated once per run across the hosts this run acts
    on (``--limit``): one bad targeted host stops the run before any operation touches
    any host; hosts outside the limit were only warned about by ``check_fleet``."""
    plans = getattr(state, "_froxlor_fleet_plans", None)
    if plans is None:
        plans = run_plans(inventory, state)
        state._froxlor_fleet_plans = plans
    return plans


@deploy("froxlor firewall", data_defaults=DEFAULTS)
def froxlor_firewall() -> None:
    """UFW rules, policies and state, and the FTP daemon's passive range (ProFTPd
    fragment or pure-ftpd's files), exactly as the host's ``froxlor_roles`` (and the
    other data keys, see README) ask."""
    plan = fleet_plans()[host.name]
    current = host_state(host)
    daemon = daemon_for(current, plan.ftp_daemon) if plan.passive_ports else None
    fragment = proftpd.fragment_for(plan) if daemon != "pureftpd" else None
    if daemon == "pureftpd":
        files = pureftpd.wanted_files(plan.passive_ports, plan.masquerade_address)  # type: ignore[arg-type]
        changes = files["PassivePortRange"] != current.ftp.pureftpd.passive_port_range_raw
    else:
        changes = proftpd.digest(fragment) != current.fragment_sha256
    # A range change: the old range stays open until the daemon has switched (see
    # passive_switch.py); UFW and the FTP daemon never offer different ranges.
    switch = plan_switch(plan, current, changes, daemon or "proftpd")
    # First: an ftp host without an FTP daemon that takes the new range fails here,
    # before its firewall changes.
    ftpserver.ready_for_ftp(name="FTP server ready for the ftp role",
                            passive_ports=plan.passive_ports,
                            masquerade_address=plan.masquerade_address,
                            candidate=fragment, ftp_daemon=plan.ftp_daemon)
    firewall.rules_and_policies(
        name="UFW rules, policies and state",
        rules=plan.rules + (switch.keep if switch else ()),
        incoming=plan.incoming,
        outgoing=plan.outgoing,
        logging=plan.logging,
        enabled=plan.enabled,
        purge_unmanaged=plan.purge_unmanaged,
        ssh_port=plan.ssh_port,
        lockout_guard=plan.lockout_guard,
        confirm_timeout=plan.confirm_timeout,
    )
    if daemon == "pureftpd":
        pureftpd.passive_port_range(name="pure-ftpd passive range",
                                    passive_ports=plan.passive_ports,
                                    force_passive_ip=plan.masquerade_address, switch=switch)
    else:
        proftpd.passive_ports_fragment(name="ProFTPd passive-port fragment", content=fragment,
                                       switch=switch)
