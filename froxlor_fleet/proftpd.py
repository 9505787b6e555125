"""The ProFTPd passive-port fragment: render it, and the host's change for it.

froxlor rewrites ``proftpd.conf`` itself and includes ``conf.d/``, so the fragment
lives in its own file there. The host program's transaction tries a new fragment with
``proftpd -t`` before the firewall changes, then writes it, tests the whole config,
restarts ProFTPd, and puts the previous fragment back on any failure
(``remote/ftpapply.py``). A range change keeps UFW and ProFTPd on one range
throughout (``passive_switch``).
"""

from __future__ import annotations

from collections.abc import Generator
from importlib import resources
from typing import TYPE_CHECKING, Any

from jinja2 import Environment, StrictUndefined
from pyinfra import host, logger
from pyinfra.api import OperationError, operation
from pyinfra.api.util import format_text
from pyinfra.operations.util.files import generate_color_diff

from . import hostprogram
from .facts import HostState, host_state
from .model.catalog import FRAGMENT_PATH, LOADED_MARKER
from .model.plan import HostPlan
from .model.ufwrules import describe_spec
from .passive_switch import Switch, range_rule, with_keep
from .remote.ftpapply import proftpd_digest
from .steps import carried, refuse, reported, show_changes

if TYPE_CHECKING:
    from .ftpplan import FtpPlan

NOOP_MESSAGE = "ProFTPd passive-port fragment already as wanted"
MISSING_PROFTPD = ("the ftp role needs ProFTPd, but 'proftpd' is not installed on this host "
                   "(froxlor uses proftpd-basic); install it first, this deploy does not")
TEMPLATE = "proftpd-passive-ports.conf.j2"


def render_fragment(passive_ports: tuple[int, int], masquerade_address: str | None = None) -> str:
    """The fragment text for ``passive_ports`` (and optional ``MasqueradeAddress``)."""
    env = Environment(undefined=StrictUndefined, keep_trailing_newline=True,
                      trim_blocks=True, lstrip_blocks=True)
    source = resources.files(__package__).joinpath("templates").joinpath(TEMPLATE).read_text()
    return env.from_string(source).render(
        low=passive_ports[0], high=passive_ports[1], masquerade_address=masquerade_address,
        path=FRAGMENT_PATH,
    )


def fragment_for(plan: HostPlan) -> str | None:
    """The fragment a ``HostPlan`` wants, or ``None`` (not an ftp host: no fragment)."""
    return render_fragment(plan.passive_ports, plan.masquerade_address) if plan.passive_ports else None


def digest(content: str | None) -> str | None:
    """sha256 of the fragment's bytes, as the state fact reports it (``None``: absent)."""
    return proftpd_digest(content) if content is not None else None


def loaded(current: HostState, content: str | None) -> bool:
    """Is ``content`` what ProFTPd runs with? A stopped ProFTPd reads the file when it
    starts; a running one has loaded it if this deploy's marker says so (a restart
    that failed, or a run cut short, leaves the marker behind the file)."""
    if content is None or "proftpd" not in current.ftp.running:
        return True
    return current.fragment_loaded == digest(content)


@operation()
def passive_ports_fragment(content: str | None, path: str = FRAGMENT_PATH,
                           switch: Switch | None = None,
                           ftp: FtpPlan | None = None) -> Generator[Any, None, None]:
    """
    Make the ProFTPd fragment at ``path`` exactly ``content`` (or remove it: ``None``)
    and loaded by ProFTPd.

    + content: the fragment text (see ``render_fragment``), or ``None`` to remove it
    + path: where it lives; must be under ``/etc/proftpd/conf.d/``
    + switch: the UFW half of a passive-range change (``passive_switch.plan_switch``):
      once ProFTPd uses the new range UFW closes the old one; if the switch fails, UFW
      closes the new one. ``None``: UFW is not touched here.
    + ftp: the FTP side the deploy decided for this host and run (``ftpplan.plan_ftp``,
      from the same ``content`` and ``switch``): its part, the one the UFW operation
      carries, is used as it is. ``None``: made here from ``content`` and ``switch``.

    The config is checked with ``proftpd -t`` before ProFTPd is restarted (systemd or
    plain init) and ProFTPd must still run afterwards; on failure the previous fragment
    is put back and ProFTPd restarted on it, and the host fails with ProFTPd's message. An absent
    ProFTPd is an error when ``content`` is set: this deploy does not install an FTP
    server unasked.

    **Example:**

    .. code:: python

        proftpd.passive_ports_fragment(
            name="FTP passive ports",
            content=render_fragment((49152, 65534)),
        )
    """
    if not path.startswith("/etc/proftpd/conf.d/") or path.rstrip("/").endswith("conf.d"):
        raise OperationError(f"fragment path {path!r} must be a file in /etc/proftpd/conf.d/")
    current = host_state(host, path)
    if content is not None and "proftpd" not in current.ftp.installed:
        yield refuse(MISSING_PROFTPD)
        return
    part = ftp.part if ftp is not None else with_keep(request_part(current, content, path), switch)
    if part is None:
        host.noop(NOOP_MESSAGE)
        return

    if show_changes():
        _report(path, current, content, digest(content) == current.fragment_sha256, switch)
    if carried(host):
        yield reported("the ProFTPd fragment")
        return
    yield from hostprogram.commands(current, hostprogram.request(ufw=None, ftp=part,
                                                                 confirm_timeout=0))


def request_part(current: HostState, content: str | None,
                 path: str = FRAGMENT_PATH) -> dict[str, object] | None:
    """The host program's FTP part for this fragment, or ``None``: already in place and
    loaded. Without ProFTPd, a fragment to remove is only removed. A range switch adds
    the range to keep open (``passive_switch.with_keep``)."""
    if digest(content) == current.fragment_sha256 and loaded(current, content):
        return None
    if content is None and "proftpd" not in current.ftp.installed:
        return {"daemon": "none", "path": path, "marker": LOADED_MARKER, "keep": []}
    return {"daemon": "proftpd", "path": path, "content": content, "marker": LOADED_MARKER,
            "keep": []}


def _report(path: str, current: HostState, content: str | None, same_file: bool,
            switch: Switch | None) -> None:
    """The --diff lines: the fragment's diff, a restart for an unchanged one, the switch."""
    if same_file:
        host.log(f"Will restart ProFTPd: {path} is not known to be loaded", logger.info)
        return
    verb = "create" if current.fragment is None else ("remove" if content is None else "modify")
    host.log(f"Will {verb} {path}", logger.info)
    old = (current.fragment or "").splitlines(keepends=True)
    for line in generate_color_diff(old, (content or "").splitlines(keepends=True)):
        logger.info("  %s", line)
    if switch is not None:
        ipv6 = current.ufw.ipv6
        for rule in switch.keep:
            logger.info("  %s", format_text(
                f"- {describe_spec(rule, ipv6)}  (previous passive range: UFW closes it once "
                "ProFTPd uses the new one)", "red"))
        logger.info("  %s", format_text(
            f"~ if ProFTPd can't switch: previous fragment restored and "
            f"{describe_spec(range_rule(switch.new), ipv6)} closed again", "yellow"))
    logger.info("")
