"""The ``froxlor-fleet`` command; ``python -m froxlor_fleet`` is the same program.

Rolling out stays pyinfra's job (``pyinfra inventory.py deploy.py``); this command
carries what pyinfra has no verb for: ``froxlor-fleet audit``.
"""

from __future__ import annotations

# gevent must patch the standard library before pyinfra connects anywhere; importing
# pyinfra_cli does exactly that, as the `pyinfra` command itself does first thing.
import pyinfra_cli  # noqa: F401  isort: skip

import sys
from importlib.metadata import PackageNotFoundError, version

import click

from . import __version__
from .audit.cli import EXIT_STATUS_HELP, audit_command, usage_error_document

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
    """Role-driven UFW rules and ProFTPd passive ports for a froxlor fleet.

    Roll out with pyinfra: `pyinfra inventory.py deploy.py --dry --diff`, then
    `-y`. Check a fleet against its data, read-only: `froxlor-fleet audit inventory.py`.
    """


main.add_command(audit_command)


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
