"""Load a pyinfra inventory exactly as pyinfra's CLI does; shared by ``check_fleet``
(pre-connect validation) and the audit.

Both must see the data pyinfra will use: the inventory file's groups, the group pyinfra
makes from the file's name, ``group_data/`` next to the working directory and the
file, ``--group-data`` folders, ``--data`` and the ``--ssh-*`` overrides, and which
hosts ``--limit`` / ``--exclude`` target. So nothing here re-implements pyinfra: the
inventory comes from ``pyinfra_cli.inventory.make_inventory`` and the override values
from ``pyinfra_cli.util.parse_cli_arg``; under ``pyinfra`` itself the options are the
ones its own click command parsed. The one private helper used,
``pyinfra_cli.cli._apply_inventory_limit``, has a public-API fallback, and CI runs the
tests against the oldest and the newest pyinfra the package allows.
"""

from __future__ import annotations

import contextvars
import logging
import os
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from fnmatch import fnmatch
from pathlib import Path
from typing import Any

from pyinfra.api import Host, Inventory, State
from pyinfra.api.exceptions import NoGroupError, PyinfraError
from pyinfra.context import ctx_state

from .plan import HostPlan
from .validation import FleetDataError, inventory_groups, inventory_layers, resolve

# Set while this module loads an inventory: the inventory file's own ``check_fleet``
# call then does nothing (the loader validates afterwards, knowing the targets).
_LOADING: contextvars.ContextVar[bool] = contextvars.ContextVar("froxlor_fleet_loading",
                                                                default=False)

# pyinfra turns these CLI options into override data (``_set_override_data``).
SSH_OVERRIDES = ("ssh_user", "ssh_key", "ssh_key_password", "ssh_port", "ssh_password")


class InventoryError(PyinfraError):
    """The inventory could not be loaded (missing file, bad ``--data``, an error in the
    inventory or group data files); the message is one line for the user."""


@dataclass(frozen=True)
class InventoryOptions:
    """What pyinfra's CLI takes to build and target an inventory."""

    inventory: str
    cwd: str
    data: tuple[str, ...] = ()  # --data key=value
    group_data: tuple[str, ...] = ()  # --group-data folders or files
    limit: tuple[str, ...] = ()  # host names, group names, globs
    exclude: tuple[str, ...] = ()
    ssh: tuple[tuple[str, Any], ...] = ()  # (SSH_OVERRIDES key, value), set ones only


@dataclass(frozen=True)
class Validated:
    """Plans of the targeted hosts, their problems, and problems of hosts outside the
    limit (reported, never blocking)."""

    plans: dict[str, HostPlan]
    errors: dict[str, list[str]]  # targeted host -> one line per problem
    outside: list[str]  # problems of hosts outside --limit / --exclude


def is_loading() -> bool:
    """True while ``load_inventory`` runs (the inventory file is being executed)."""
    return _LOADING.get()


def override_data(options: InventoryOptions) -> dict[str, Any]:
    """``--data`` and ``--ssh-*`` as pyinfra's CLI turns them into override data."""
    from pyinfra_cli.util import parse_cli_arg

    data: dict[str, Any] = {}
    for item in options.data:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise InventoryError(f"--data {item!r}: expected key=value")
        data[key] = value
    data = {key: parse_cli_arg(value) for key, value in data.items()}
    data.update((key, value) for key, value in options.ssh if value)
    return data


@contextmanager
def _loading_context(cwd: str) -> Iterator[None]:
    # pyinfra's exec_file records the file it runs on the current State: give it one
    # when the caller (the audit, a script) has none.
    token = _LOADING.set(True)
    try:
        if ctx_state.isset():
            yield
        else:
            state = State(check_for_changes=False)
            state.cwd = cwd
            with ctx_state.use(state):
                yield
    finally:
        _LOADING.reset(token)


def load_inventory(options: InventoryOptions) -> Inventory:
    """The ``Inventory`` pyinfra builds for these options (hosts, groups, all data)."""
    from pyinfra_cli.inventory import make_inventory

    overrides = override_data(options)
    if options.inventory.endswith(".py") and not Path(options.cwd, options.inventory).is_file():
        # pyinfra would take a missing file for a host name and look it up in DNS.
        raise InventoryError(f"no inventory file {options.inventory!r} "
                             f"(in {options.cwd})")
    # quiet: under --debug pyinfra logs every group's data as it loads it, secrets of
    # other deploys included; pyinfra's own load already did, this one adds nothing.
    with _loading_context(options.cwd), _quiet_pyinfra():
        inventory: Inventory = make_inventory(
            options.inventory, override_data=overrides or None, cwd=options.cwd,
            group_data_directories=list(options.group_data) or None)
    return inventory


@contextmanager
def _quiet_pyinfra() -> Iterator[None]:
    # pyinfra's limit helper warns about patterns that match nothing; pyinfra's CLI
    # prints that itself, and the audit reports it as an error of its own.
    log = logging.getLogger("pyinfra")
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        yield
    finally:
        log.setLevel(level)


def _pyinfra_limit(inventory: Inventory, patterns: Sequence[str]) -> list[Host]:
    """pyinfra's own ``--limit`` matching: group names, else host-name globs."""
    try:
        from pyinfra_cli.cli import _apply_inventory_limit
    except ImportError:  # a later pyinfra 3.x without it: same rules, public API
        hosts: list[Host] = []
        for pattern in patterns:
            try:
                hosts.extend(inventory.get_group(pattern))
            except NoGroupError:
                hosts.extend(h for h in inventory if fnmatch(h.name, pattern))
        return list(dict.fromkeys(hosts))
    with _quiet_pyinfra():
        return list(_apply_inventory_limit(inventory, list(patterns)) or [])


def target_hosts(inventory: Inventory, limit: Sequence[str] = (),
                 exclude: Sequence[str] = ()) -> list[Host]:
    """The hosts a run with ``--limit`` / ``--exclude`` acts on, in inventory order."""
    chosen = set(_pyinfra_limit(inventory, limit)) if limit else set(inventory)
    if exclude:  # pyinfra matches --exclude patterns exactly like --limit ones
        chosen -= set(_pyinfra_limit(inventory, exclude))
    return [host for host in inventory if host in chosen]


def unmatched_patterns(inventory: Inventory, patterns: Iterable[str]) -> list[str]:
    """The ``--limit`` patterns that match no host (pyinfra only warns about them)."""
    return [p for p in patterns if not _pyinfra_limit(inventory, [p])]


def validate(inventory: Inventory, targets: Iterable[Host]) -> Validated:
    """Resolve every host's data; only targeted hosts' problems are errors."""
    targeted = {host.name for host in targets}
    plans: dict[str, HostPlan] = {}
    errors: dict[str, list[str]] = {}
    outside: list[str] = []
    groups = inventory_groups(inventory)
    for host in inventory:
        plan, problems = resolve(host.name, inventory_layers(inventory, host), groups)
        if host.name not in targeted:
            outside += problems
        elif problems:
            errors[host.name] = problems
        elif plan is not None:
            plans[host.name] = plan
    return Validated(plans, errors, outside)


def run_plans(inventory: Inventory, state: State) -> dict[str, HostPlan]:
    """Plans of the hosts a pyinfra run acts on (its ``--limit``/``--exclude``, as pyinfra
    applied them to ``state``); ``FleetDataError`` names the problems of those hosts only:
    the other hosts' problems were reported by ``check_fleet`` and must not stop this run."""
    result = validate(inventory, [h for h in inventory if state.is_host_in_limit(h)])
    if result.errors:
        raise FleetDataError([line for lines in result.errors.values() for line in lines])
    return result.plans


def options_from_pyinfra_cli(inventory_file: str) -> InventoryOptions | None:
    """The options of the running ``pyinfra`` command, or ``None`` when the inventory
    is not being loaded by pyinfra's CLI (read from its click context: public API)."""
    import click

    ctx = click.get_current_context(silent=True)
    if ctx is None:
        return None
    try:
        from pyinfra_cli.cli import cli as pyinfra_command
    except ImportError:
        return None
    root = ctx.find_root()
    if root.command is not pyinfra_command:
        return None
    params = root.params
    from pyinfra import state

    cwd = (state.cwd if ctx_state.isset() else None) or os.getcwd()
    return InventoryOptions(
        inventory=inventory_file,
        cwd=cwd,
        data=tuple(params.get("data") or ()),
        group_data=tuple(params.get("group_data") or ()),
        limit=tuple(params.get("limit") or ()),
        exclude=tuple(params.get("exclude") or ()),
        ssh=tuple((key, params.get(key)) for key in SSH_OVERRIDES if params.get(key)),
    )
