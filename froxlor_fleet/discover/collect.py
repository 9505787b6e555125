"""Drive pyinfra for ``discover``: the audit's own loading and reading (``audit.collect``),
one command per targeted host (``FleetDiscoverState``: the audit's fact), then a proposal
per host read.

Unlike the audit, hosts are read whatever their data says: a fleet being onboarded has
no data yet (or data of other deploys). Nothing here validates or shows the inventory's
data; the proposals come from the hosts alone. Whatever a user or a host gets wrong
ends as one line in ``Discovery.errors`` / ``Discovery.unreachable``, never as an
exception.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from pyinfra.api import State
from pyinfra.context import ctx_state

from ..audit.collect import AuditOptions, Progress, _read_hosts, error_text, make_config
from ..model import loading
from .fact import DiscoverState, FleetDiscoverState
from .propose import HostProposal, propose


@dataclass
class Discovery:
    """One discover run: a proposal per host read, and what went wrong."""

    proposals: list[HostProposal] = field(default_factory=list)  # in inventory order
    unreachable: dict[str, str] = field(default_factory=dict)  # host -> why, one line
    errors: list[str] = field(default_factory=list)  # inventory, --limit
    groups: dict[str, list[str]] = field(default_factory=dict)  # every group's hosts
    skip_groups: tuple[str, ...] = ("all",)  # never a group file (see render.layout)
    states: dict[str, DiscoverState] = field(default_factory=dict)

    @property
    def conflicts(self) -> int:
        return sum(len(p.conflicts) for p in self.proposals)


def run_discover(options: AuditOptions, progress: Progress | None = None) -> Discovery:
    """Read the targeted hosts and propose their data; never raises for anything a user
    or a host can cause."""
    progress = progress or Progress()
    try:
        return _run(options, progress)
    finally:
        progress.done()


def _run(options: AuditOptions, progress: Progress) -> Discovery:
    found = Discovery()
    state = State(check_for_changes=False)
    state.cwd = options.inventory.cwd
    with ctx_state.use(state):
        try:
            config = make_config(options)
            inventory = loading.load_inventory(options.inventory)
        except Exception as error:  # anything in the user's inventory, group data or config
            found.errors.append(error_text(error))
            return found
        if len(inventory) == 0:
            found.errors.append(f"inventory {options.inventory.inventory!r} has no hosts")
            return found
        limit = options.inventory.limit
        found.errors += [f"--limit {p!r} matches no host"
                         for p in loading.unmatched_patterns(inventory, limit)]
        targets = loading.target_hosts(inventory, limit, options.inventory.exclude)
        found.groups = {name: [h.name for h in hosts]
                        for name, hosts in inventory.groups.items() if hosts}
        found.skip_groups = ("all", Path(options.inventory.inventory).name.rsplit(".", 1)[0])
        seen, errors = (_read_hosts(state, inventory, config, targets, FleetDiscoverState,
                                    progress) if targets else ({}, {}))
    for host in targets:
        read = seen.get(host.name)
        if isinstance(read, DiscoverState):
            found.states[host.name] = read
            found.proposals.append(propose(host.name, read))
        else:
            found.unreachable[host.name] = errors.get(host.name, "could not be read")
    return found
