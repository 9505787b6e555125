"""Read-only fleet audit: what every host really admits, against what its roles say.

    froxlor-fleet audit inventory.py [--json] [--prometheus FILE] [--limit NAME ...]

``fact`` reads a host (one remote command), ``compare`` turns plan + state into
findings (pure), ``report`` renders text, JSON and Prometheus, ``collect`` drives
pyinfra (connect, read), ``cli`` is the ``audit`` command.
"""

from .compare import Finding, FleetAudit, HostAudit, PortState, audit_host, exit_status
from .fact import AuditState, FleetAuditState, parse_listening

__all__ = ["AuditState", "Finding", "FleetAudit", "FleetAuditState", "HostAudit", "PortState",
           "audit_host", "exit_status", "parse_listening"]
