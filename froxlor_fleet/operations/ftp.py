"""The FTP operations: the host's FTP daemon ready for the ftp role, and its passive range.

froxlor configures ProFTPd (all releases) or pure-ftpd (Debian 11/12, Ubuntu): the
``ftp_daemon`` data key says which one the ftp role manages (``auto``: the one
installed). This deploy never installs an FTP server unasked and never edits
``proftpd.conf``: a host it can't serve fails in ``ready_for_ftp``, before anything on
it changes.

- ``ready_for_ftp``: is the host's FTP daemon ready? Checked before the firewall changes.
- ``passive_ports_fragment``: ProFTPd's passive range, a fragment in ``conf.d/`` (froxlor
  rewrites ``proftpd.conf`` and includes ``conf.d/``). The host program's transaction
  tries a new fragment with ``proftpd -t`` before the firewall changes, then writes it,
  tests the whole config, restarts ProFTPd, and puts the previous fragment back on any
  failure (``remote/ftpapply.py``).
- ``passive_port_range``: pure-ftpd's ``/etc/pure-ftpd/conf/PassivePortRange`` (and
  ``ForcePassiveIP``), one option per file as Debian's wrapper reads them. froxlor
  writes pure-ftpd's other options there but no passive range, so passive transfers
  stall behind UFW until this deploy writes one. pure-ftpd has no reload: a running one
  is restarted, only when a file changes, and must come back (else the previous files
  are put back).

What each daemon should have, and the host program's FTP part, is decided in
``ftpplan``; a range change keeps UFW and the daemon on one range throughout
(``passive_switch``).
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

from pyinfra import host, logger
from pyinfra.api import OperationError, operation
from pyinfra.api.util import format_text
from pyinfra.operations.util.files import generate_color_diff

from ..facts import HostState, host_state
from ..ftpconf.daemon import choose_daemon
from ..model.catalog import FRAGMENT_PATH
from ..model.ufwrules import describe_spec
from . import hostprogram
from .ftpplan import (
    PUREFTPD_CONF_DIR,
    FtpPlan,
    fragment_digest,
    fragment_part,
    pureftpd_files,
    pureftpd_files_now,
    pureftpd_part,
    refusal_for,
)
from .passive_switch import Switch, range_rule, with_keep
from .steps import carried, refuse, reported, show_changes

FRAGMENT_NOOP_MESSAGE = "ProFTPd passive-port fragment already as wanted"
MISSING_PROFTPD = ("the ftp role needs ProFTPd, but 'proftpd' is not installed on this host "
                   "(froxlor uses proftpd-basic); install it first, this deploy does not")
PUREFTPD_NOOP_MESSAGE = "pure-ftpd passive range already as wanted"


@operation()
def ready_for_ftp(*, passive_ports: tuple[int, int] | None,
                  masquerade_address: str | None = None, ftp_daemon: str = "auto",
                  path: str = FRAGMENT_PATH, ftp: FtpPlan | None = None) -> Generator[Any, None, None]:
    """
    Fail the host before anything changes when it has the ftp role but no FTP daemon
    this deploy can serve: none or both installed (``ftp_daemon`` auto), the one asked
    for missing, a ProFTPd that would not use this deploy's fragment (an admin's
    ``PassivePorts`` in proftpd.conf, an earlier conf.d file, a ``<VirtualHost>`` of its
    own...). (The host program's transaction tries a new fragment with ``proftpd -t``
    before it changes anything.)

    + passive_ports: the host's ``(low, high)`` range, ``None``: no ftp role
    + masquerade_address: ``MasqueradeAddress`` / ``ForcePassiveIP``, if any
    + ftp_daemon: ``auto``, ``proftpd`` or ``pureftpd``
    + path: the ProFTPd fragment's path
    + ftp: the FTP side decided for this host and run (``ftpplan.plan_ftp``, from the
      same data): its daemon, or why the role cannot be served, is used as it is.
      ``None``: decided here, with the same functions.

    The packaged deploy does not call it: its UFW operation fails such a host with the
    same line (one operation less per host and run).

    **Example:**

    .. code:: python

        ftp.ready_for_ftp(name="FTP ready", passive_ports=(49152, 65534))
    """
    if passive_ports is None:
        host.noop("no ftp role")
        return
    if ftp is not None:
        daemon, refusal = ftp.daemon, ftp.refusal
    else:
        current = host_state(host)
        daemon, refusal = choose_daemon(current.ftp, ftp_daemon)
        refusal = refusal or refusal_for(current, daemon, passive_ports, masquerade_address, path)
    if refusal:
        yield refuse(refusal)
        return
    host.noop("pure-ftpd will use PassivePortRange" if daemon == "pureftpd"
              else "ProFTPd will use the fragment's passive ports")


@operation()
def passive_ports_fragment(content: str | None, path: str = FRAGMENT_PATH,
                           switch: Switch | None = None,
                           ftp: FtpPlan | None = None) -> Generator[Any, None, None]:
    """
    Make the ProFTPd fragment at ``path`` exactly ``content`` (or remove it: ``None``)
    and loaded by ProFTPd.

    + content: the fragment text (see ``ftpplan.render_fragment``), or ``None`` to remove it
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

        ftp.passive_ports_fragment(
            name="FTP passive ports",
            content=ftpplan.render_fragment((49152, 65534)),
        )
    """
    if not path.startswith("/etc/proftpd/conf.d/") or path.rstrip("/").endswith("conf.d"):
        raise OperationError(f"fragment path {path!r} must be a file in /etc/proftpd/conf.d/")
    current = host_state(host, path)
    if content is not None and "proftpd" not in current.ftp.installed:
        yield refuse(MISSING_PROFTPD)
        return
    part = ftp.part if ftp is not None else with_keep(fragment_part(current, content, path), switch)
    if part is None:
        host.noop(FRAGMENT_NOOP_MESSAGE)
        return

    if show_changes():
        _report_fragment(path, current, content, fragment_digest(content) == current.fragment_sha256,
                         switch)
    if carried(host):
        yield reported("the ProFTPd fragment")
        return
    yield from hostprogram.commands(current, hostprogram.request(ufw=None, ftp=part,
                                                                 confirm_timeout=0))


def _report_fragment(path: str, current: HostState, content: str | None, same_file: bool,
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

        ftp.passive_port_range(name="pure-ftpd passive range", passive_ports=(49152, 65534))
    """
    state = host_state(host)
    have = pureftpd_files_now(state)
    want = pureftpd_files(tuple(passive_ports), force_passive_ip)  # type: ignore[arg-type]
    part = ftp.part if ftp is not None else with_keep(pureftpd_part(state, want), switch)
    if part is None:
        host.noop(PUREFTPD_NOOP_MESSAGE)
        return
    if show_changes() and have == want:
        host.log(f"Will restart pure-ftpd: {PUREFTPD_CONF_DIR} is not known to be loaded", logger.info)
        logger.info("")
    elif show_changes():
        for name in want:
            if have[name] != want[name]:
                host.log(f"Will change {PUREFTPD_CONF_DIR}/{name}", logger.info)
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
