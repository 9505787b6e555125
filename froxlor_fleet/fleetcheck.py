"""Validate a pyinfra inventory file's fleet data *before* pyinfra connects.

pyinfra connects to every host before it runs ``deploy.py``, so checking there is too
late for "stop before connecting". An inventory file ends with
``check_fleet(__file__)``: that loads the inventory's groups and ``group_data/`` the
way pyinfra's CLI does, and raises ``FleetDataError`` (one line per problem) on bad
data, which pyinfra prints as one error and exits non-zero.
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

from pyinfra.api.inventory import Inventory

from .validation import HostPlan, check_inventory


def _groups(namespace: dict[str, Any]) -> dict[str, tuple[list, dict]]:
    from pyinfra_cli.inventory import _is_inventory_group  # pyinfra's own test

    return {name: (value[0], dict(value[1])) if isinstance(value, tuple) else (value, {})
            for name, value in namespace.items() if _is_inventory_group(name, value)}


def _group_data(folder: Path) -> dict[str, dict[str, Any]]:
    from pyinfra_cli.inventory import _get_group_data  # pyinfra's own loader

    return _get_group_data(str(folder)) if folder.is_dir() else {}


def build_inventory(inventory_file: str, namespace: dict[str, Any]) -> Inventory:
    """An ``Inventory`` with the same hosts, groups and group data pyinfra will load."""
    groups = _groups(namespace)
    all_hosts, all_data = groups.pop("all", ([], {}))
    if not all_hosts:
        for hosts, _ in groups.values():
            for entry in hosts:
                name = entry[0] if isinstance(entry, tuple) else entry
                if name not in all_hosts:
                    all_hosts.append(name)
    folders = [Path.cwd() / "group_data", Path(inventory_file).resolve().parent / "group_data"]
    loaded: dict[str, dict[str, Any]] = {}
    for folder in dict.fromkeys(folders):
        for group, data in _group_data(folder).items():
            loaded.setdefault(group, {}).update(data)
    all_data = {**all_data, **loaded.pop("all", {})}
    merged = {name: (hosts, {**data, **loaded.get(name, {})}) for name, (hosts, data) in groups.items()}
    return Inventory((all_hosts, all_data), **merged)


def check_fleet(inventory_file: str) -> dict[str, HostPlan]:
    """Call at the end of an inventory file: ``check_fleet(__file__)``."""
    caller = inspect.currentframe().f_back  # type: ignore[union-attr]
    namespace = dict(caller.f_globals) if caller else {}
    return check_inventory(build_inventory(inventory_file, namespace))
