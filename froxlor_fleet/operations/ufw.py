"""The UFW operation: make a host's rules, policies, logging and enabled state match.

Reads ``FleetHostState`` and yields nothing when the host already matches (pyinfra
prints "No change"); otherwise the host program's transaction (``hostprogram.py``),
which carries the FTP daemon's change too when the deploy hands it over (``ftp``).
"""

from __future__ import annotations

from collections.abc import Generator, Sequence
from typing import Any

from pyinfra import host, logger
from pyinfra.api import OperationError, operation
from pyinfra.api.util import format_text
from pyinfra.connectors.ssh import SSHConnector

from ..facts import HostState, UfwState, host_state
from ..model.catalog import DEFAULTS, LOG_LEVELS, POLICIES
from ..model.groups import GroupAddresses
from ..model.plan import RuleSpec
from ..model.ufwrules import (
    RulePlan,
    Session,
    UfwRule,
    describe_spec,
    plan_rules,
    want,
)
from ..remote.ufwmodel import GUARD_NO_SESSION, ban_jail, lockout_risk, needs_confirming
from . import hostprogram
from .steps import carry, refuse, reporting_stage, show_changes
from .tenants import conflicts, persistent_refusal

NOOP_MESSAGE = "UFW rules, policies and state already match the roles"
def _grouped(rules: list[UfwRule]) -> list[tuple[str, UfwRule]]:
    """One line per rule as ufw shows it: the v4 and v6 halves of a rule together."""
    seen: dict[tuple[str, str], UfwRule] = {}
    for rule in rules:
        text = rule.describe()
        if (rule.family == 6 and rule.src == "::/0" and rule.dst == "::/0"
                and (text, rule.comment) not in seen):
            text += " (v6)"
        seen.setdefault((text, rule.comment), rule)
    return [(text, rule) for (text, _), rule in seen.items()]


def rule_diff_lines(plan: RulePlan, current: UfwState) -> list[str]:
    """``+ added``, ``~ changed in place (old -> new)``, ``- removed (why)``. Rules added
    with ``ufw prepend`` (deny/reject) come first, in the order ufw will hold them, and
    say "before allows"; a deny/reject an earlier allow still matches first says that."""
    def _action(action: str) -> str:
        return action.replace("_", " ")  # as ufw shows it: "allow log"

    lines = []
    prepended = [w for w in reversed(plan.add) if w.prepend]  # each went to the top
    for spec in prepended + [w for w in plan.add if not w.prepend]:
        notes = ", before allows" if spec.prepend else ""
        by = plan.shadowing(spec, current.ipv6)
        if by is not None:
            notes += (f"; stays after {by.describe()}, which matches first: delete it by hand "
                      "and run again to put it first")
        retagged = [r for s, r in plan.retag if s == spec]
        if retagged:
            old = retagged[0]
            if old.action == spec.action:
                change = f"{old.label} -> {spec.label}"
            elif old.label == spec.label:
                change = f"{spec.label}: {_action(old.action)} -> {_action(spec.action)}"
            else:
                change = (f"{old.label} {_action(old.action)} -> {spec.label} "
                          f"{_action(spec.action)}")
            lines.append(format_text(f"~ {describe_spec(spec, current.ipv6)}  ({change}{notes})",
                                     "yellow"))
        else:
            lines.append(format_text(f"+ {describe_spec(spec, current.ipv6)}  "
                                     f"({spec.label}{notes})", "green"))
    for text, rule in _grouped(plan.delete):
        why = rule.label if rule.managed else "unmanaged, purge"
        lines.append(format_text(f"- {text}  ({why})", "red"))
    return lines


def ban_summary(bans: list[UfwRule]) -> str:
    """``3 bans (sshd 2, proftpd 1)``: fail2ban's rules per jail (v4 and v6 apart)."""
    jails: dict[str, int] = {}
    for rule in bans:
        jail = ban_jail(rule) or "fail2ban"
        jails[jail] = jails.get(jail, 0) + 1
    per_jail = ", ".join(f"{jail} {count}" for jail, count in jails.items())
    return f"{len(bans)} ban{'' if len(bans) == 1 else 's'} ({per_jail})"


def session_of(current: HostState) -> Session | None:
    """The SSH session pyinfra uses, as the host reported it (``None``: unknown)."""
    if not current.ssh_client or not current.ssh_server or not current.ssh_port:
        return None
    return Session(current.ssh_client, current.ssh_server, current.ssh_port, current.ssh_interface)


def guard_refusal(current: HostState, rule_plan: RulePlan, ufw: UfwState, *, incoming: str,
                  enabled: bool, ssh_port: int, over_ssh: bool) -> str | None:
    """Why this plan may lock the operator out (``None``: safe), as one line. The
    decision is ``ufwmodel.lockout_risk``, which the host makes again under its lock."""
    session = session_of(current)
    risk = lockout_risk(rule_plan, enabled=enabled, active=ufw.active, incoming_now=ufw.incoming,
                        incoming=incoming, session=session, ipv6=ufw.ipv6, ssh_port=ssh_port,
                        over_ssh=over_ssh)
    if risk is None:
        return None
    if risk == GUARD_NO_SESSION or session is None:
        return ("lockout guard: could not find the SSH session this run uses (no "
                "$SSH_CONNECTION, not even in the session's processes), so it can't prove the "
                "change keeps SSH reachable; nothing was changed on this host. Set "
                "firewall_lockout_guard = False for this host to go ahead anyway.")
    why = " (IPV6=no in /etc/default/ufw drops every IPv6 connection)" if (
        ":" in session.client and not session.client.startswith("::ffff:") and not ufw.ipv6) else ""
    return (f"lockout guard: the resulting UFW rules would not admit a new SSH connection like "
            f"this one ({session.client} -> {session.server}:{session.port}){why}; nothing was "
            "changed on this host. Check ssh_port / ssh_allowed_sources and rules that deny SSH.")


@operation()
def rules_and_policies(
    *,
    rules: tuple[RuleSpec, ...] | list[RuleSpec],
    incoming: str = str(DEFAULTS["firewall_default_incoming"]),
    outgoing: str = str(DEFAULTS["firewall_default_outgoing"]),
    logging: str = str(DEFAULTS["firewall_logging"]),
    enabled: bool = bool(DEFAULTS["firewall_enabled"]),
    purge_unmanaged: bool = bool(DEFAULTS["firewall_purge_unmanaged"]),
    ssh_port: int = int(DEFAULTS["ssh_port"]),  # type: ignore[call-overload]
    lockout_guard: bool = bool(DEFAULTS["firewall_lockout_guard"]),
    confirm_timeout: int = int(DEFAULTS["firewall_confirm_timeout"]),  # type: ignore[call-overload]
    ftp: dict[str, Any] | None = None,
    source_groups: Sequence[GroupAddresses] = (),
    refusal: str | None = None,
) -> Generator[Any, None, None]:
    """
    Make UFW's rules, default policies, logging and enabled state exactly these.

    + rules: ``RuleSpec`` list (see ``validation.resolve``); rules this deploy added
      earlier and no longer wants are removed
    + incoming: default incoming policy: allow, deny or reject
    + outgoing: default outgoing policy: allow, deny or reject
    + logging: off, low, medium, high or full
    + enabled: enable (True) or disable (False) UFW
    + purge_unmanaged: also remove rules without the froxlor-fleet marker (hand-made)
    + ssh_port: the SSH port (for the lockout guard when the session can't be found)
    + lockout_guard: refuse a result that would not admit the SSH session pyinfra uses
      (default True; False: you accept the risk)
    + confirm_timeout: commit-confirmed: a change that can affect SSH is confirmed through
      a new SSH connection, else the host undoes it after this many seconds (0: off)
    + ftp: the FTP daemon's change (``ftpplan.FtpPlan.part``: the host program's FTP part)
      to make in the same transaction (its operation then only reports it)
    + source_groups: what each inventory group the data names as a source became
      (``groups.resolve_groups``; its addresses are in ``rules``), shown under ``--diff``
    + refusal: why this host must stay as it is (the deploy's: a source group without
      any address); the host fails with it, unchanged

    Installs ufw with apt if missing. A refused plan fails this host only, unchanged.
    The host program plans again under the host lock, re-checks the guard and arms
    commit-confirm from its own plan.

    **Example:**

    .. code:: python

        from froxlor_fleet.model.plan import RuleSpec
        from froxlor_fleet.operations import ufw

        ufw.rules_and_policies(
            name="Open web and SSH",
            rules=[RuleSpec(("22",), "tcp", None, "ssh"),
                   RuleSpec(("80", "443"), "tcp", None, "web")],
        )
    """
    for value, options, what in ((incoming, POLICIES, "incoming"),
                                 (outgoing, POLICIES, "outgoing"),
                                 (logging, LOG_LEVELS, "logging")):
        if value not in options:
            raise OperationError(f"invalid {what} {value!r}, must be one of {', '.join(options)}")

    if show_changes():
        for group in source_groups:
            host.log(f"sources from the inventory: {group.describe()}", logger.info)
    if refusal:
        yield refuse(refusal)
        return

    current = host_state(host)
    installed = current.ufw.installed
    ufw = current.ufw if installed else UfwState()  # UfwState(): a fresh install

    rule_plan = plan_rules(ufw.rules, tuple(rules), ufw.ipv6, purge_unmanaged)
    default = [[p, d] for p, d, have in ((incoming, "incoming", ufw.incoming),
                                         (outgoing, "outgoing", ufw.outgoing)) if p != have]
    changes = {
        "disable": not enabled and (ufw.conf_enabled or ufw.running),
        "rules": rule_plan.changes,
        "default": default,
        "logging": logging if logging != ufw.logging else None,
        "enable": enabled and not ufw.active,
    }

    if reporting_stage():
        for conflict in conflicts(current):
            if conflict.name != "persistent":  # that one refuses below, when it matters
                host.log(conflict.text, logger.warning)
        _report(rule_plan, ufw, changes, installed,
                confirm_timeout if _needs_confirming(changes, rule_plan, confirm_timeout) else 0)

    if not any(changes.values()) and installed:
        carry(host, False)
        host.noop(NOOP_MESSAGE)
        return

    if not ufw.ipv6 and any(r.source and ":" in r.source for r in rules):
        yield refuse("an IPv6 source is wanted but IPV6=no in /etc/default/ufw; "
                     "nothing was changed on this host")
        return
    over_ssh = isinstance(host.connector, SSHConnector)
    refusal = guard_refusal(current, rule_plan, ufw, incoming=incoming, enabled=enabled,
                            ssh_port=ssh_port, over_ssh=over_ssh)
    if refusal and lockout_guard:
        yield refuse(refusal)
        return

    if not installed and current.persistent:
        yield refuse(persistent_refusal(current.persistent))
        return
    request = ufw_request(rules, incoming=incoming, outgoing=outgoing, logging=logging,
                          enabled=enabled, purge_unmanaged=purge_unmanaged,
                          session=session_of(current), guard=lockout_guard, over_ssh=over_ssh,
                          ssh_port=ssh_port)
    # The FTP daemon's old passive range (``ftp["keep"]``, among ``rules`` here) is kept
    # open by the host only until the daemon has switched.
    keep = (ftp or {}).get("keep") or []
    request["wanted"] = [w for w in request["wanted"] if w not in keep]
    # The plan made here; the host plans again under its lock and says if it differs.
    request["expect"] = {"add": [" ".join(w.ufw_args()) for w in rule_plan.add],
                         "delete": [r.tuple_text() for r in rule_plan.delete]}
    carry(host, ftp is not None)
    yield from hostprogram.commands(current, hostprogram.request(
        ufw=request, ftp=ftp, confirm_timeout=confirm_timeout if over_ssh else 0))


def ufw_request(rules: Sequence[RuleSpec], *, incoming: str, outgoing: str, logging: str,
                enabled: bool, purge_unmanaged: bool, session: Session | None, guard: bool,
                over_ssh: bool, ssh_port: int) -> dict[str, Any]:
    """What the host program (``remote/ufw_apply.py``) makes of UFW: these rules (and no
    other managed ones), policies, logging, state; the lockout guard (``guard``,
    ``session``: None when not found, ``over_ssh``, ``ssh_port``)."""
    return {
        "wanted": [want(spec).to_wire() for spec in rules],
        "purge": purge_unmanaged, "incoming": incoming, "outgoing": outgoing,
        "logging": logging, "enabled": enabled,
        "guard": guard, "session": session.to_wire() if session else None,
        "over_ssh": over_ssh, "ssh_port": ssh_port,
    }


def _needs_confirming(changes: dict[str, Any], rule_plan: RulePlan, confirm_timeout: int) -> bool:
    """Whether this change is armed: it could affect reachability
    (``ufwmodel.needs_confirming``, the host's rule too), and only over SSH."""
    reach = needs_confirming(rule_plan, enable=changes["enable"], incoming_changes=any(
        direction == "incoming" for _, direction in changes["default"]))
    return bool(reach and confirm_timeout > 0 and isinstance(host.connector, SSHConnector))


def _report(rule_plan: RulePlan, ufw: UfwState, payload: dict[str, Any], installed: bool,
            confirm_timeout: int = 0) -> None:
    """The --diff lines, and (always) the unmanaged rules that are kept."""
    if show_changes():
        lines = rule_diff_lines(rule_plan, ufw)
        for policy, direction in payload["default"]:
            lines.append(format_text(f"~ default {direction}: "
                                     f"{getattr(ufw, direction)} -> {policy}", "yellow"))
        if payload["logging"]:
            lines.append(format_text(f"~ logging: {ufw.logging} -> {payload['logging']}", "yellow"))
        if payload["enable"]:
            lines.append(format_text("~ ufw: inactive -> active", "yellow"))
        if payload["disable"]:
            lines.append(format_text("~ ufw: active -> inactive", "yellow"))
        if not installed:
            lines.insert(0, format_text("+ install ufw", "green"))
        if lines and confirm_timeout:
            lines.append(format_text(f"~ commit-confirmed: a new SSH connection must confirm within "
                                     f"{confirm_timeout} s, else the host restores its previous UFW",
                                     "yellow"))
        if lines:
            host.log("Will change UFW", logger.info)
            for line in lines:
                logger.info("  %s", line)
            logger.info("")
    for text, rule in _grouped(rule_plan.kept):
        host.log(f"keeps unmanaged UFW rule: {text}"
                 + (f"  # {rule.comment}" if rule.comment else "")
                 + " (set firewall_purge_unmanaged = True to remove)", logger.warning)
    if rule_plan.bans and show_changes():
        host.log(f"leaves fail2ban's bans alone: {ban_summary(rule_plan.bans)}", logger.info)
    if rule_plan.inert:
        host.log(f"leaves {len(rule_plan.inert)} IPv6 rule(s) in user6.rules alone: IPV6=no, "
                 "ufw ignores them", logger.warning)
