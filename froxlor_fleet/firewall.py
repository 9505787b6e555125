"""The UFW operation: make a host's rules, policies, logging and enabled state match.

Reads ``FleetHostState`` and yields nothing when the host already matches (pyinfra
prints "No change"); otherwise one remote step (see ``remote_ufw.py``).
"""

from __future__ import annotations

import json
from importlib import resources

from pyinfra import host, logger
from pyinfra.api import OperationError, QuoteString, operation
from pyinfra.api.util import format_text

from .catalog import LOG_LEVELS, POLICIES
from .hoststate import HostState, UfwState, host_state
from .steps import guarded_step, reporting_stage, show_changes
from .ufwrules import RulePlan, UfwRule, admits, describe_spec, plan_rules
from .validation import RuleSpec

NOOP_MESSAGE = "UFW rules, policies and state already match the roles"

# Run $0 (the script) with $1 (the plan) under the interpreter ufw itself uses: the
# first python3 on PATH may be another Python without ufw's modules.
RUN_WITH_UFW_PYTHON = (
    'ufw=$(command -v ufw || echo /usr/sbin/ufw); '
    'py=$(sed -n "1s/^#! *//p" "$ufw" | cut -d" " -f1); '
    'exec "${py:-/usr/bin/python3}" -c "$0" "$1"'
)


def remote_script() -> str:
    return resources.files(__package__).joinpath("remote_ufw.py").read_text()


def _grouped(rules: list[UfwRule]) -> list[tuple[str, UfwRule]]:
    """One line per rule as ufw shows it: the v4 and v6 halves of a rule together."""
    seen: dict[tuple[str, str], UfwRule] = {}
    for rule in rules:
        text = rule.describe()
        if rule.family == 6 and rule.src == "::/0" and rule.dst == "::/0":
            if (text, rule.comment) not in seen:
                text += " (v6)"
        seen.setdefault((text, rule.comment), rule)
    return [(text, rule) for (text, _), rule in seen.items()]


def rule_diff_lines(plan: RulePlan, current: UfwState) -> list[str]:
    lines = []
    for spec in plan.add:
        retagged = [r for s, r in plan.retag if s == spec]
        if retagged:
            lines.append(format_text(f"~ {describe_spec(spec, current.ipv6)}  "
                                     f"({retagged[0].label} -> {spec.label})", "yellow"))
        else:
            lines.append(format_text(f"+ {describe_spec(spec, current.ipv6)}  ({spec.label})", "green"))
    for text, rule in _grouped(plan.delete):
        why = rule.label if rule.managed else "unmanaged, purge"
        lines.append(format_text(f"- {text}  ({why})", "red"))
    return lines


def _ssh_guard(current: HostState, final: list[UfwRule], incoming: str, enabled: bool) -> None:
    """Refuse a plan that would leave a firewall up that does not admit our SSH session."""
    if not current.ssh_client or not current.ssh_server or not current.ssh_port:
        return  # not over SSH (e.g. @local): nothing to lock out
    if not enabled:
        return  # a disabled firewall locks nobody out
    if not admits(final, incoming, current.ssh_client, current.ssh_server, current.ssh_port):
        raise OperationError(
            f"lockout guard: the resulting UFW rules would not admit this SSH session "
            f"({current.ssh_client} -> {current.ssh_server}:{current.ssh_port}); "
            "nothing was changed on this host. Check ssh_port / ssh_allowed_sources."
        )


@operation()
def rules_and_policies(
    rules: tuple[RuleSpec, ...] | list[RuleSpec],
    incoming: str = "deny",
    outgoing: str = "allow",
    logging: str = "low",
    enabled: bool = True,
    purge_unmanaged: bool = False,
):
    """
    Make UFW's rules, default policies, logging and enabled state exactly these.

    + rules: ``RuleSpec`` list (see ``validation.resolve``); rules this deploy added
      earlier and no longer wants are removed
    + incoming: default incoming policy: allow, deny or reject
    + outgoing: default outgoing policy: allow, deny or reject
    + logging: off, low, medium, high or full
    + enabled: enable (True) or disable (False) UFW
    + purge_unmanaged: also remove rules without the froxlor-fleet marker (hand-made)

    Installs ufw with apt if missing. Refuses (``OperationError``) a result that would
    not admit the SSH connection pyinfra is using.

    **Example:**

    .. code:: python

        from froxlor_fleet import firewall
        from froxlor_fleet.validation import RuleSpec

        firewall.rules_and_policies(
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

    current = host_state(host)
    installed = current.ufw.installed
    ufw = current.ufw if installed else UfwState()  # UfwState(): a fresh install

    rule_plan = plan_rules(ufw.rules, tuple(rules), ufw.ipv6, purge_unmanaged)
    if not ufw.ipv6 and any(r.source and ":" in r.source for r in rules):
        raise OperationError("an IPv6 source is wanted but IPV6=no in /etc/default/ufw")
    _ssh_guard(current, rule_plan.final, incoming, enabled)

    default = [[p, d] for p, d, have in ((incoming, "incoming", ufw.incoming),
                                         (outgoing, "outgoing", ufw.outgoing)) if p != have]
    payload = {
        "disable": not enabled and (ufw.conf_enabled or ufw.running),
        "add": [spec.ufw_args() for spec in rule_plan.add],
        "delete": [[r.family, r.tuple_text()] for r in rule_plan.delete],
        "default": default,
        "logging": logging if logging != ufw.logging else None,
        "enable": enabled and not ufw.active,
    }
    changes = [key for key, value in payload.items() if value]

    if reporting_stage():
        _report(rule_plan, ufw, payload, installed)

    if not changes and installed:
        host.noop(NOOP_MESSAGE)
        return

    if not installed:
        yield guarded_step("env", "DEBIAN_FRONTEND=noninteractive", "apt-get", "install", "-y", "-q", "ufw")
    if changes:
        yield guarded_step("sh", "-c", QuoteString(RUN_WITH_UFW_PYTHON),
                     QuoteString(remote_script()), QuoteString(json.dumps(payload)))


def _report(rule_plan: RulePlan, ufw: UfwState, payload: dict, installed: bool) -> None:
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
        if lines:
            host.log("Will change UFW", logger.info)
            for line in lines:
                logger.info("  %s", line)
            logger.info("")
    for text, rule in _grouped(rule_plan.kept):
        host.log(f"keeps unmanaged UFW rule: {text}"
                 + (f"  # {rule.comment}" if rule.comment else "")
                 + " (set firewall_purge_unmanaged = True to remove)", logger.warning)
