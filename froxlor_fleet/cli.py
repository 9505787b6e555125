"""The ``froxlor-fleet`` command; ``python -m froxlor_fleet`` is the same program.

Rolling out stays pyinfra's job (``pyinfra inventory.py deploy.py``); this command
carries what pyinfra has no verb for: ``froxlor-fleet audit``.
"""

from __future__ import annotations

# gevent must patch the standard library before pyinfra connects anywhere; importing
# pyinfra_cli does exactly that, as the `pyinfra` command itself does first thing.
import pyinfra_cli  # noqa: F401  isort: skip

import shlex
import sys
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import click

from . import __version__
from .audit.cli import EXIT_STATUS_HELP, audit_command, usage_error_document
from .discover.cli import discover_command
from .starter import TargetExists, write_example

PROG = "froxlor-fleet"


def _pyinfra_version() -> str:
    try:
        return version("pyinfra")
    except PackageNotFoundError:  # pragma: no cover - pyinfra is a dependency
        return "?"


@click.group(PROG, context_settings={"help_option_names": ["-h", "--help"]},
             epilog=EXIT_STATUS_HELP)
@click.version_option(__version__, "--version", prog_name=PROG,
                      message=f"%(prog)s %(version)s (pyinfra {_pyinfra_version()})")
def main() -> None:
    """Role-driven UFW rules and FTP passive ports for a froxlor fleet.

    Start from an example: `froxlor-fleet init myfleet`. Roll out with pyinfra:
    `pyinfra inventory.py deploy.py --dry --diff`, then `-y`. Check a fleet against its
    data, read-only: `froxlor-fleet audit inventory.py`.
    """


main.add_command(audit_command)
main.add_command(discover_command)


@main.command("init", short_help="Write a commented example fleet to start from.")
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
def init_command(directory: Path) -> int:
    """Write a commented example fleet into DIRECTORY (made if missing): inventory.py,
    group_data/*.py and deploy.py. Edit the hosts and roles, then preview with
    `pyinfra inventory.py deploy.py --dry --diff` from DIRECTORY.

    Never overwrites: if any of the files exists, nothing is written.
    """
    try:
        written = write_example(directory)
    except TargetExists as error:
        raise click.ClickException(
            f"{len(error.paths)} of the files {'exists' if len(error.paths) == 1 else 'exist'} "
            f"already, nothing written: {error}") from None
    except OSError as error:
        raise click.ClickException(f"{directory}: {error.strerror or error}") from None
    for path in written:
        click.echo(f"wrote {path}")
    steps = [] if directory.resolve() == Path.cwd() else [f"cd {shlex.quote(str(directory))}"]
    steps += ["pyinfra inventory.py deploy.py --dry --diff   # preview, touches nothing",
              "pyinfra inventory.py deploy.py -y             # roll out",
              "froxlor-fleet audit inventory.py              # read-only check"]
    click.echo("\nNext: put your hosts in inventory.py and their roles in group_data/, then\n"
               + "\n".join(f"  {step}" for step in steps))
    return 0


def _wants_json(args: list[str]) -> bool:
    return "audit" in args and "--json" in args[args.index("audit"):]


def run(argv: list[str] | None = None) -> None:
    """Entry point: run the command and exit 0, 1 or 2 (never a traceback for a bad
    command line; with ``audit --json`` even a bad command line gives the document)."""
    args = sys.argv[1:] if argv is None else list(argv)
    try:
        code = main.main(args, prog_name=PROG, standalone_mode=False)
    except click.ClickException as error:  # usage errors: unknown option, missing argument
        error.show()
        if _wants_json(args):
            click.echo(usage_error_document(error.format_message()))
        code = 2
    except click.Abort:  # Ctrl-C
        click.echo("Aborted.", err=True)
        code = 2
    sys.exit(code if isinstance(code, int) else 0)
