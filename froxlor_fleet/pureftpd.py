"""pure-ftpd's passive range: ``/etc/pure-ftpd/conf/PassivePortRange`` (and
``ForcePassiveIP``), one option per file as Debian's wrapper reads them.

froxlor writes pure-ftpd's other options there but no passive range, so passive
transfers stall behind UFW until this deploy writes one. pure-ftpd has no reload: a
running one is restarted, only when a file changes, and must come back (else the
previous files are put back). A range change keeps UFW on one range with pure-ftpd as
for ProFTPd (``passive_switch``).
"""

from __future__ import annotations

from collections.abc import Generator
from typing import TYPE_CHECKING, Any

from pyinfra import host, logger
from pyinfra.api import operation
from pyinfra.operations.util.files import generate_color_diff

from . import hostprogram
from .facts import HostState, host_state
from .model.catalog import PUREFTPD_LOADED_MARKER
from .passive_switch import Switch, with_keep
from .remote.ftpapply import pureftpd_digest
from .steps import carried, reported, show_changes

if TYPE_CHECKING:
    from .ftpplan import FtpPlan

CONF_DIR = "/etc/pure-ftpd/conf"
NOOP_MESSAGE = "pure-ftpd passive range already as wanted"


def wanted_files(passive_ports: tuple[int, int], force_passive_ip: str | None) -> dict[str, str | None]:
    """File name -> first line (``None``: no such file), as the dump reports them."""
    return {"PassivePortRange": f"{passive_ports[0]} {passive_ports[1]}",
            "ForcePassiveIP": force_passive_ip}


def digest(files: dict[str, str | None]) -> str:
    """sha256 of what pure-ftpd runs with, as the host program writes it to the marker
    (``ftpapply.pureftpd_digest``)."""
    if files.get("PassivePortRange") is None:
        return ""  # no range: nothing pure-ftpd can have loaded from this deploy
    return pureftpd_digest(str(files["PassivePortRange"]), files.get("ForcePassiveIP"))


def loaded(current: HostState, files: dict[str, str | None]) -> bool:
    """Does pure-ftpd run with ``files``? A stopped one reads them when it starts; a
    running one has loaded them if this deploy's marker says so."""
    if "pureftpd" not in current.ftp.running:
        return True
    return current.pureftpd_loaded == digest(files)


@operation()
def passive_port_range(passive_ports: tuple[int, int], force_passive_ip: str | None = None,
                       switch: Switch | None = None,
                       ftp: FtpPlan | None = None) -> Generator[Any, None, None]:
    """
    Make pure-ftpd offer ``passive_ports`` (and ``force_passive_ip`` in PASV replies).

    + passive_ports: ``(low, high)``, the range UFW opens for the ftp role
    + force_passive_ip: ``ForcePassiveIP`` (IPv4 address or DNS name), ``None``: none
    + switch: the UFW half of a range change (``passive_switch.plan_switch``)
    + ftp: the FTP side the deploy decided for this host and run (``ftpplan.plan_ftp``,
      from the same range, address and ``switch``): its part, the one the UFW operation
      carries, is used as it is. ``None``: made here from the other arguments.

    **Example:**

    .. code:: python

        pureftpd.passive_port_range(name="pure-ftpd passive range", passive_ports=(49152, 65534))
    """
    state = host_state(host)
    have = files_now(state)
    want = wanted_files(tuple(passive_ports), force_passive_ip)  # type: ignore[arg-type]
    part = ftp.part if ftp is not None else with_keep(request_part(state, want), switch)
    if part is None:
        host.noop(NOOP_MESSAGE)
        return
    if show_changes() and have == want:
        host.log(f"Will restart pure-ftpd: {CONF_DIR} is not known to be loaded", logger.info)
        logger.info("")
    elif show_changes():
        for name in want:
            if have[name] != want[name]:
                host.log(f"Will change {CONF_DIR}/{name}", logger.info)
                had, wants = have[name], want[name]
                old = [had + "\n"] if had is not None else []
                new = [wants + "\n"] if wants is not None else []
                for line in generate_color_diff(old, new):
                    logger.info("  %s", line)
        logger.info("")
    if carried(host):
        yield reported("pure-ftpd's passive range")
        return
    yield from hostprogram.commands(state, hostprogram.request(ufw=None, ftp=part,
                                                               confirm_timeout=0))


def request_part(current: HostState, want: dict[str, str | None]) -> dict[str, object] | None:
    """The host program's FTP part for these files (``wanted_files``), or ``None``: on
    disk and loaded (``changes``). A range switch adds the range to keep open
    (``passive_switch.with_keep``)."""
    if not changes(current, want):
        return None
    return {"daemon": "pureftpd", "range": want["PassivePortRange"],
            "force_ip": want["ForcePassiveIP"], "marker": PUREFTPD_LOADED_MARKER, "keep": []}


def files_now(current: HostState) -> dict[str, str | None]:
    """pure-ftpd's files on the host, as ``wanted_files`` names them."""
    pure = current.ftp.pureftpd
    return {"PassivePortRange": pure.passive_port_range_raw, "ForcePassiveIP": pure.force_passive_ip}


def changes(current: HostState, want: dict[str, str | None]) -> bool:
    """Do pure-ftpd's files or what it has loaded differ from ``want``?"""
    return files_now(current) != want or not loaded(current, want)
