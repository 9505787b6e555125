"""``froxlor-fleet audit``: the read-only fleet audit as a command.

Takes the inventory options of ``pyinfra`` itself (same names, same meaning) and always
ends with exit status 0, 1 or 2, and with ``--json`` always with the JSON document.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any, TypeVar

import click

from ..model import loading
from .collect import AuditOptions, Progress, run_audit
from .compare import FleetAudit, fleet_error
from .probe import FAMILIES, ProbeOptions
from .report import to_json, to_prometheus, to_text, write_atomically

F = TypeVar("F", bound=Callable[..., Any])

# The probe's FTP password: from the environment only, so it is never on a command line
# (ps, shell history) and never in a usage error.
PASSWORD_VARIABLE = "FROXLOR_FLEET_PROBE_PASSWORD"
PROBE_OPTIONS = ("probe_user", "probe_timeout", "probe_ca_file", "probe_family")

EXIT_STATUS_HELP = """\b
Exit status:
  0  every targeted host matches its data (notices may be listed)
  1  drift: the deploy would change something on a host
  2  errors: a host unreachable or with bad data, a missing or broken
     inventory, a --limit that matches no host, a bad option"""


def _quiet_logs(debug: bool) -> None:
    os.environ["PYINFRA_PROGRESS"] = "off"  # no spinner between our lines
    if debug:
        logging.basicConfig(level=logging.INFO)
        return
    # Connection failures become findings; pyinfra's and paramiko's own log lines
    # (tracebacks included) would only repeat them.
    for name in ("pyinfra", "paramiko"):
        logging.getLogger(name).setLevel(logging.CRITICAL + 1)


def _probe_options(params: dict[str, Any]) -> ProbeOptions | None:
    if not params["probe"]:
        return None
    family = params["probe_family"] or "all"
    return ProbeOptions(
        user=params["probe_user"], password=os.environ.get(PASSWORD_VARIABLE) or None,
        timeout=params["probe_timeout"] or ProbeOptions.timeout,
        ca_file=params["probe_ca_file"],
        families=FAMILIES if family == "all" else (int(family),), parallel=params["parallel"])


def connection_settings(inventory: str, params: dict[str, Any]) -> AuditOptions:
    """What ``connection_options`` gave, as the read's inputs (no probe)."""
    ssh = tuple((key, params[key]) for key in loading.SSH_OVERRIDES if params.get(key))
    return AuditOptions(
        inventory=loading.InventoryOptions(
            inventory=inventory, cwd=os.getcwd(), data=tuple(params["data"]),
            group_data=tuple(params["group_data"]), limit=tuple(params["limit"]),
            exclude=tuple(params["exclude"]), ssh=ssh),
        config_file=params["config_file"] or "config.py", sudo=params["sudo"],
        sudo_user=params["sudo_user"], su_user=params["su_user"], parallel=params["parallel"])


def _options(inventory: str, params: dict[str, Any]) -> AuditOptions:
    return replace(connection_settings(inventory, params), probe=_probe_options(params))


def _check_probe_options(params: dict[str, Any]) -> None:
    """A --probe-* option without --probe would be silently ignored: a usage error."""
    given = [name for name in PROBE_OPTIONS if params.get(name) is not None]
    if given and not params.get("probe"):
        raise click.UsageError(f"--{given[0].replace('_', '-')} needs --probe")


def _write_prometheus(fleet: FleetAudit, path: str, started: float) -> None:
    try:
        write_atomically(path, to_prometheus(fleet, duration=time.monotonic() - started))
    except OSError as error:
        fleet.errors.append(fleet_error("output_error",
                                        f"--prometheus {path}: {error.strerror or error}"))


def _prometheus_path(args: Sequence[str]) -> str | None:
    """--prometheus's FILE in a command line click could not parse (the last one wins,
    as when it parses)."""
    path = None
    for i, arg in enumerate(args):
        if arg == "--":
            break
        if arg == "--prometheus" and i + 1 < len(args):
            path = args[i + 1]
        elif arg.startswith("--prometheus="):
            path = arg.split("=", 1)[1]
    return path or None


def connection_options(data_help: str, group_data_help: str) -> Callable[[F], F]:
    """The options both read-only commands (audit, discover) take, as pyinfra's: which
    hosts, extra data, and how to connect. Paths named on the command line must exist
    (pyinfra itself ignores a missing --config or --group-data: a typo would silently read
    without them). INVENTORY is checked by the loader (an inventory_error, not a usage
    error); a missing --ssh-key is named per host."""
    options = [
        click.option("--limit", multiple=True, help="Restrict the target hosts by name and "
                     "group name (globs allowed), as pyinfra's --limit."),
        click.option("--exclude", multiple=True,
                     help="Exclude target hosts by name and group name."),
        click.option("--data", multiple=True, help=data_help),
        click.option("--group-data", multiple=True, type=click.Path(exists=True),
                     help=group_data_help),
        click.option("--config", "config_file", type=click.Path(exists=True, dir_okay=False),
                     help="pyinfra config file to use (default: config.py, if there is one)."),
        click.option("--sudo", is_flag=True, help="Read the hosts with sudo."),
        click.option("--sudo-user", help="Which user to sudo to."),
        click.option("--su-user", help="Which user to su to."),
        click.option("--parallel", type=click.IntRange(min=1),
                     help="Number of hosts to read in parallel."),
        click.option("--ssh-user", "--user", "ssh_user", help="SSH user to connect as."),
        click.option("--ssh-port", "--port", "ssh_port", type=int,
                     help="SSH port to connect to."),
        click.option("--ssh-key", "--key", "ssh_key", type=click.Path(dir_okay=False),
                     help="SSH private key filename."),
        click.option("--ssh-key-password", "--key-password", "ssh_key_password",
                     help="SSH private key password."),
        click.option("--ssh-password", "--password", "ssh_password", help="SSH password."),
    ]

    def apply(command: F) -> F:
        for option in reversed(options):  # as if stacked in this order above the function
            command = option(command)
        return command
    return apply


class AuditCommand(click.Command):
    """The ``audit`` command; a command line it cannot parse still writes the
    ``--prometheus`` file when it names one (exit status 2, a ``usage_error``), so a
    scheduled audit with a broken command line shows up in monitoring, not just in a log."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        started = time.monotonic()
        given = list(args)
        try:
            rest = super().parse_args(ctx, args)
            _check_probe_options(ctx.params)
            return rest
        except click.UsageError as error:
            path = _prometheus_path(given)
            if path:
                fleet = FleetAudit(None, errors=[fleet_error("usage_error",
                                                             error.format_message())])
                _write_prometheus(fleet, path, started)
                for failed in fleet.errors[1:]:  # the file could not be written either
                    click.echo(f"froxlor-fleet audit: {failed.detail}", err=True)
            raise


@click.command("audit", cls=AuditCommand, epilog=EXIT_STATUS_HELP,
               short_help="Read-only audit of a fleet against its data (exit 0/1/2).")
@click.argument("inventory", type=click.Path())
@click.option("--json", "json_output", is_flag=True,
              help="Print the JSON document (schema in the package) instead of the text "
                   "report; printed on errors too.")
@click.option("--prometheus", metavar="FILE", type=click.Path(dir_okay=False),
              help="Also write the results as Prometheus metrics to FILE (node_exporter "
                   "textfile collector), atomically.")
@connection_options(data_help="Override data values, format key=value.",
                    group_data_help="Paths to load additional group data from (overrides "
                                    "matching keys).")
@click.option("--probe", is_flag=True,
              help="Also try each host from here, as a customer would: on ftp hosts an "
                   "explicit-FTPS session on IPv4 and IPv6 (AUTH TLS, PASV and EPSV: the port "
                   "offered inside UFW's passive range, the data connection opens), and a TCP "
                   "connect to every role port UFW admits.")
@click.option("--probe-user", metavar="USER",
              help="FTP login for --probe (anonymous, or a test account; password from "
                   f"${PASSWORD_VARIABLE}): the data connection then carries a LIST. Without "
                   "it only what the daemon allows before a login is checked.")
@click.option("--probe-timeout", type=click.FloatRange(min=0.1, max=60), metavar="SECONDS",
              help="--probe: the longest wait of each network step (default 3).")
@click.option("--probe-ca-file", type=click.Path(exists=True, dir_okay=False),
              help="--probe: verify the FTP daemons' certificates against this CA file "
                   "(default: not verified; froxlor's are often self-signed).")
@click.option("--probe-family", type=click.Choice(["all", "4", "6"]),
              help="--probe: the address families to try (default all the host has).")
@click.option("--debug", is_flag=True,
              help="Show pyinfra's log, and a traceback for unexpected errors.")
def audit_command(inventory: str, json_output: bool, prometheus: str | None, debug: bool,
                  **params: Any) -> int:
    """Read-only audit of INVENTORY's hosts against their data: changes nothing.

    One remote command per host (the deploy's state read plus `ss`): UFW rules
    (with their actions), policies and state, the passive range ProFTPd really uses
    (file:line) against UFW's, which ports are admitted and which listen. INVENTORY is
    what `pyinfra` takes (e.g. inventory.py). With --probe, what a customer sees too,
    tried from this machine. On a terminal, progress is shown on stderr.
    """
    started = time.monotonic()
    _quiet_logs(debug)
    try:
        fleet = run_audit(_options(inventory, params), Progress.on_terminal(sys.stderr))
    except Exception as error:  # a bug of ours: still exit 2, still a document
        if debug:
            raise
        fleet = FleetAudit(inventory, tuple(params["limit"]),
                           errors=[fleet_error("internal_error",
                                               f"{type(error).__name__}: {error} "
                                               "(--debug shows the traceback)")])
    if prometheus:
        _write_prometheus(fleet, prometheus, started)
    if json_output:
        click.echo(to_json(fleet))
        for finding in fleet.findings:  # the reason for exit 2, for CI logs
            if finding.severity == "error":
                click.echo(f"froxlor-fleet audit: {finding.host or finding.kind}: "
                           f"{finding.detail}", err=True)
    else:
        click.echo(to_text(fleet, tty=sys.stdout.isatty()))  # colour: see colour_wanted
    return fleet.exit_status


def usage_error_document(message: str) -> str:
    """The JSON document for a command line the audit could not even parse."""
    return to_json(FleetAudit(None, errors=[fleet_error("usage_error", message)]))
