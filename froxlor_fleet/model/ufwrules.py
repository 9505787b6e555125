"""The control side's view of UFW rules: the shared model (``remote/ufwmodel.py``, which
the host-side program uses too) applied to a ``HostPlan``'s ``RuleSpec``s.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from ..remote.ufwmodel import (
    ANY,
    RulePlan,
    Session,
    UfwRule,
    Want,
    expand,
    parse_tuple_line,
    port_matches,
)
from ..remote.ufwmodel import admits as session_admitted
from ..remote.ufwmodel import plan_rules as _plan_rules

if TYPE_CHECKING:
    from .plan import RuleSpec

__all__ = ["ANY", "RulePlan", "Session", "UfwRule", "Want", "admits", "describe_spec",
           "parse_tuple_line", "plan_rules", "port_matches", "session_admitted", "want"]


def want(spec: RuleSpec) -> Want:
    """A ``RuleSpec`` as the shared model (and the host-side program) takes it."""
    return Want(spec.dport, spec.proto, spec.source, spec.comment, spec.action)


def plan_rules(current: list[UfwRule], wanted: Iterable[RuleSpec | Want], ipv6: bool,
               purge_unmanaged: bool) -> RulePlan:
    """``remote.ufwmodel.plan_rules`` for ``RuleSpec``s (or ``Want``s)."""
    wants = [w if isinstance(w, Want) else want(w) for w in wanted]
    return _plan_rules(current, wants, ipv6, purge_unmanaged)


def describe_spec(spec: RuleSpec | Want, ipv6: bool = True) -> str:
    """A wanted rule as ufw would show it once added: ``allow 80,443/tcp``."""
    return expand(spec if isinstance(spec, Want) else want(spec), ipv6)[0].describe()


def admits(rules: list[UfwRule], incoming_policy: str, client: str, server: str, port: int,
           proto: str = "tcp", ipv6: bool = True) -> bool:
    """Would a new ``proto`` connection from ``client`` to ``server:port`` get in?"""
    return session_admitted(rules, incoming_policy, Session(client, server, port), ipv6, proto)
