"""``froxlor-fleet discover``: propose group data for a running fleet, read-only.

Exit status: 0 every targeted host read, nothing to review; 1 every host read, with
conflicts to review (in the files, and one line each on stderr); 2 a host could not be
read, the inventory is wrong, a --limit matches nothing, or the files could not be
written.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from ..audit.cli import _quiet_logs, connection_options, connection_settings
from ..audit.collect import Progress
from .collect import Discovery, run_discover
from .render import OutputFile, comment, layout, render

PROG = "froxlor-fleet discover"

EXIT_STATUS_HELP = """\b
Exit status:
  0  every targeted host read, nothing to review
  1  every targeted host read, conflicts to review (listed on stderr)
  2  a host could not be read, a missing or broken inventory, a --limit
     that matches no host, files that could not be written, a bad option"""


def _say(text: str) -> None:
    click.echo(f"{PROG}: {comment(text)}", err=True)


def _write(out: Path, files: list[OutputFile]) -> list[Path] | str:
    """Write every file, or none: the paths written, or why nothing was."""
    paths = [out / f.path for f in files]
    existing = [str(p) for p in paths if p.exists() or p.is_symlink()]
    if existing:
        return (f"{len(existing)} of the files exist{'s' if len(existing) == 1 else ''} already, "
                f"nothing written (choose another --out, or remove them): {', '.join(existing)}")
    try:
        for path, file in zip(paths, files, strict=True):
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(path, "x", encoding="utf-8") as handle:
                handle.write(render(file))
    except OSError as error:
        return f"--out {out}: {error.strerror or error}: {error.filename or out}"
    return paths


@click.command("discover", epilog=EXIT_STATUS_HELP,
               short_help="Propose group data from what running hosts do (read-only).")
@click.argument("inventory", type=click.Path())
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), metavar="DIR",
              help="Write DIR/group_data/<group>.py (a group whose members all agree) and "
                   "DIR/host_data/<host>.py (the rest) instead of printing them; never "
                   "overwrites.")
@connection_options(data_help="Override data values, format key=value (connection "
                              "settings: the proposal never takes data from the inventory).",
                    group_data_help="Paths to load additional group data from (connection "
                                    "settings).")
@click.option("--debug", is_flag=True,
              help="Show pyinfra's log, and a traceback for unexpected errors.")
def discover_command(inventory: str, out: Path | None, debug: bool, **params: Any) -> int:
    """Propose froxlor-fleet data for INVENTORY's running hosts: changes nothing.

    Reads each host with one remote command (the audit's: UFW's rules and state, the
    FTP daemon's effective passive range and masquerade address, what listens; then
    froxlor's own settings from its database, read-only, as root: --sudo), and proposes
    froxlor_roles, sources, the passive range and firewall_extra_rules, each with its
    evidence (froxlor says | the host runs | UFW admits) and the conflicts to review.
    What listens decides; froxlor's settings are evidence. Without --out, prints the
    files.
    Review, then preview: pyinfra inventory.py deploy.py --group-data DIR/group_data
    --dry --diff.
    """
    _quiet_logs(debug)
    try:
        found = run_discover(connection_settings(inventory, params), Progress.on_terminal(sys.stderr))
    except Exception as error:  # a bug of ours: still one line and exit 2
        if debug:
            raise
        _say(f"internal error: {type(error).__name__}: {error} (--debug shows the traceback)")
        return 2
    return _report(found, out)


def _report(found: Discovery, out: Path | None) -> int:
    files = layout(found.proposals, found.groups, found.skip_groups)
    failed = bool(found.errors or found.unreachable)
    if out is None:
        for file in files:
            click.echo(f"# ==> {file.path} <==")
            click.echo(render(file))
    elif files:
        written = _write(out, files)
        if isinstance(written, str):
            _say(written)
            failed = True
        else:
            for path in written:
                click.echo(f"wrote {path}")
    for error in found.errors:
        _say(error)
    for host, why in found.unreachable.items():
        _say(f"{host}: unreachable: {why}")
    for proposal in found.proposals:
        for text in proposal.conflicts:
            _say(f"{proposal.host}: {text}")
    if found.proposals:
        read = len(found.proposals)
        _say(f"{read} host{'s' if read != 1 else ''} read, {len(found.unreachable)} not, "
             f"{found.conflicts} conflict{'s' if found.conflicts != 1 else ''} to review")
    if failed:
        return 2
    return 1 if found.conflicts else 0
