"""froxlor-fleet: role-driven UFW and ProFTPd passive ports for froxlor servers (pyinfra)."""

from .model.catalog import DEFAULTS, ROLE_ALIASES, ROLE_SERVICES, VALID_ROLES
from .model.plan import HostPlan, RuleSpec
from .model.validation import FleetDataError

__all__ = ["DEFAULTS", "ROLE_ALIASES", "ROLE_SERVICES", "VALID_ROLES", "FleetDataError",
           "HostPlan", "RuleSpec"]
__version__ = "0.2.0"
