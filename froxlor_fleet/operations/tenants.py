"""The firewall's other tenants on a froxlor host, and what each conflict with UFW means.

A froxlor host's firewall is not ours alone (fail2ban, nftables, iptables-persistent,
Docker). The state read (remote/state.sh, section ``tenants``) reports what is there;
this module decides, once, which of those conflict with UFW and says why, for the
deploy (which warns, or refuses to install ufw) and for the audit (a finding each, with
its severity). fail2ban's bans inside UFW are not a conflict: they are kept
(ufwmodel.ban_jail).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..facts import HostState

NFTABLES_AT_BOOT = (
    "nftables.service is enabled and /etc/nftables.conf flushes the ruleset: at boot it "
    "wipes UFW's rules, and the host then looks converged with its firewall gone (or "
    "closed); disable nftables.service (fail2ban's nftables actions make their own table) "
    "or remove 'flush ruleset' from it")
F2B_FLUSHED = (
    "MANAGE_BUILTINS=yes in /etc/default/ufw while fail2ban's f2b-* chains are loaded: "
    "every ufw reload, enable or disable flushes the built-in chains and fail2ban's jumps "
    "with them (its bans stop working until fail2ban restarts); set MANAGE_BUILTINS=no "
    "(Debian's default) or use fail2ban's ufw or nftables action")
DOCKER = (
    "Docker is installed: ports its containers publish bypass UFW (Docker's own chains in "
    "FORWARD and nat), so neither the deploy nor the audit sees them; publish on "
    "127.0.0.1 or filter in DOCKER-USER")


# Each conflict's name: the audit's finding kind for it.
TENANT_KINDS = ("nftables_at_boot", "f2b_flushed", "persistent", "docker")


@dataclass(frozen=True)
class Conflict:
    name: str      # one of TENANT_KINDS
    severity: str  # in the audit: drift (it bites) or notice (UFW can't see it)
    text: str


def persistent_refusal(packages: tuple[str, ...]) -> str:
    """Why ufw is not installed where iptables-persistent/netfilter-persistent are: ufw's
    package Breaks them, so apt would remove them and the rules they load at boot."""
    one = len(packages) == 1
    are, them, they_load = ("is", "it", "it loads") if one else ("are", "them", "they load")
    return (f"ufw is not installed, and {', '.join(packages)} {are}: installing ufw would "
            f"remove {them} (ufw's package Breaks {them}) and the rules {they_load} at boot; "
            "nothing was changed on this host. Move their rules to UFW and remove "
            f"{them}, then run again")


def conflicts(state: HostState) -> list[Conflict]:
    """The conflicts on this host, in a fixed order. iptables-persistent only counts
    where ufw is missing: dpkg keeps the two apart, and there the deploy refuses."""
    found = []
    if state.nftables_flushes:
        found.append(Conflict("nftables_at_boot", "drift", NFTABLES_AT_BOOT))
    if state.f2b_flushed:
        found.append(Conflict("f2b_flushed", "drift", F2B_FLUSHED))
    if state.persistent and not state.ufw.installed:
        found.append(Conflict("persistent", "drift", persistent_refusal(state.persistent)))
    if state.docker:
        found.append(Conflict("docker", "notice", DOCKER))
    return found
