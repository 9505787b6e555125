"""The FTP side of one host's run, decided once: which daemon the ftp role manages (or
why none can be), the host program's FTP part and the passive-range switch.

The deploy makes it once per host and run (``plan_ftp``) and hands it to every
operation that needs it: ``ready_for_ftp`` (the daemon, or the refusal), the UFW
operation (the part it carries in the host's transaction, the old range it keeps open)
and the FTP daemon's operation (the same part). The audit asks ``daemon_for`` once per
host. Used on their own, the operations decide from their arguments with the same
functions.
"""

from __future__ import annotations

from dataclasses import dataclass

from . import proftpd, pureftpd
from .facts import HostState
from .ftpconf.daemon import DaemonChoice, choose_daemon
from .model.plan import HostPlan, RuleSpec
from .passive_switch import Switch, plan_switch, with_keep


@dataclass(frozen=True)
class FtpPlan:
    """``FtpPlan(daemon="proftpd", refusal=None, fragment="# Managed by ...",
    part={"daemon": "proftpd", ...}, switch=Switch(...))``"""

    daemon: str | None  # "proftpd"/"pureftpd"; None: no ftp role, or none can be served
    refusal: str | None  # why none can be served (ready_for_ftp fails the host with it)
    fragment: str | None  # ProFTPd's fragment as wanted (None: none, or pure-ftpd's host)
    part: dict[str, object] | None  # the host program's FTP part; None: nothing to change
    switch: Switch | None  # a passive-range change (passive_switch)

    @property
    def keep(self) -> tuple[RuleSpec, ...]:
        """The old range's rule, open until the daemon has switched."""
        return self.switch.keep if self.switch else ()


def daemon_for(plan: HostPlan, current: HostState) -> DaemonChoice:
    """The daemon the ftp role manages on this host, or why none can be
    (``ftpconf.daemon.choose_daemon``); a host without the ftp role: neither."""
    if plan.passive_ports is None:
        return DaemonChoice(None, None)
    return choose_daemon(current.ftp, plan.ftp_daemon)


def plan_ftp(plan: HostPlan, current: HostState) -> FtpPlan:
    """The FTP side of this host's run (see the module docstring). Without a daemon
    (no ftp role, or none can be served) it is ProFTPd's fragment: a leftover one is
    removed, and a refused host fails before anything changes."""
    daemon, refusal = daemon_for(plan, current)
    fragment = None
    if daemon == "pureftpd" and plan.passive_ports is not None:
        files = pureftpd.wanted_files(plan.passive_ports, plan.masquerade_address)
        part = pureftpd.request_part(current, files)
    else:
        fragment = proftpd.fragment_for(plan)
        part = proftpd.request_part(current, fragment)
    # A range change: the old range stays open until the daemon has switched (see
    # passive_switch.py); UFW and the FTP daemon never offer different ranges.
    switch = plan_switch(plan, current, part is not None, daemon or "proftpd")
    return FtpPlan(daemon, refusal, fragment, with_keep(part, switch), switch)
