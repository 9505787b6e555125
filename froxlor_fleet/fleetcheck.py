"""Validate a pyinfra inventory file's fleet data *before* pyinfra connects.

pyinfra connects to every host before it runs ``deploy.py``, so checking there is too
late for "stop before connecting". An inventory file ends with
``check_fleet(__file__)``. Under the ``pyinfra`` command that loads the inventory again
with the options pyinfra itself parsed (``--data``, ``--group-data``, ``--ssh-port``,
the group named after the inventory file, ``--limit``/``--exclude``), through pyinfra's
own loader (see ``loading``), and raises ``FleetDataError`` (one line per problem) on bad
data of a targeted host, which pyinfra prints as one error and exits non-zero.
Problems of hosts outside ``--limit`` are printed as warnings and do not stop the run.
"""

from __future__ import annotations

import os

from pyinfra import logger

from .model import loading
from .model.plan import HostPlan
from .model.validation import FleetDataError


def check_fleet(inventory_file: str) -> dict[str, HostPlan]:
    """Call at the end of an inventory file: ``check_fleet(__file__)``.

    Returns the targeted hosts' plans. While ``froxlor_fleet.model.loading`` itself loads
    the file (the audit, or this check's own second read) it returns ``{}``: the
    loader validates afterwards, knowing the targets."""
    if loading.is_loading():
        return {}
    options = loading.options_from_pyinfra_cli(inventory_file)
    if options is None:  # loaded by a script through pyinfra's API: all hosts, no flags
        options = loading.InventoryOptions(inventory=inventory_file, cwd=os.getcwd())
    inventory = loading.load_inventory(options)
    targets = loading.target_hosts(inventory, options.limit, options.exclude)
    result = loading.validate(inventory, targets)
    for line in result.outside:
        logger.warning(f"froxlor-fleet: not targeted by this run, fix before targeting: {line}")
    if result.errors:
        raise FleetDataError([line for lines in result.errors.values() for line in lines])
    if result.plans and not any(plan.managed for plan in result.plans.values()):
        # Every host is another deploy's (plan.NOT_MANAGED): most likely the group data
        # was not found (pyinfra reads group_data/ beside the inventory and in the
        # current folder), so say so once instead of letting the run do nothing quietly.
        logger.warning(f"froxlor-fleet: none of the {len(result.plans)} targeted hosts has "
                       "froxlor_roles in its data: froxlor_firewall() leaves them all as they "
                       "are (is group_data/ beside the inventory or in the current folder?)")
    return result.plans
