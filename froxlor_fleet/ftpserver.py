"""Is the host's FTP daemon ready for the ftp role? Checked before the firewall changes.

froxlor configures ProFTPd (all releases) or pure-ftpd (Debian 11/12, Ubuntu): the
``ftp_daemon`` data key says which one the ftp role manages (``auto``: the one
installed). This deploy never installs an FTP server unasked and never edits
``proftpd.conf``: a host it can't serve fails here, before anything on it changes.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import TYPE_CHECKING, Any

from pyinfra import host
from pyinfra.api import operation

from .facts import host_state
from .ftpconf.daemon import choose_daemon
from .ftpconf.judge import conflicts as proftpd_conflicts
from .model.catalog import FRAGMENT_PATH
from .steps import refuse

if TYPE_CHECKING:
    from .ftpplan import FtpPlan

PUREFTPD_MASQUERADE = ("pure-ftpd's ForcePassiveIP takes an IPv4 address or a DNS name (PASV "
                       "replies carry IPv4 only), not {!r}; set ftp_masquerade_address to one")


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
    + ftp: the FTP side the deploy decided for this host and run (``ftpplan.plan_ftp``,
      from the same data): its daemon, or why none can be served, is used as it is.
      ``None``: chosen here from ``ftp_daemon``.

    **Example:**

    .. code:: python

        ftpserver.ready_for_ftp(name="FTP ready", passive_ports=(49152, 65534))
    """
    if passive_ports is None:
        host.noop("no ftp role")
        return
    current = host_state(host)
    daemon, refusal = (ftp.daemon, ftp.refusal) if ftp is not None else choose_daemon(
        current.ftp, ftp_daemon)
    if daemon is None:
        yield refuse(str(refusal))
        return
    if daemon == "pureftpd":
        if masquerade_address and ":" in masquerade_address:
            yield refuse(PUREFTPD_MASQUERADE.format(masquerade_address))
            return
        host.noop("pure-ftpd will use PassivePortRange")
        return
    problems = proftpd_conflicts(current.ftp, path, (passive_ports[0], passive_ports[1]),
                                 masquerade_address)
    if problems:
        yield refuse("ProFTPd would not use this deploy's passive ports, so UFW and ProFTPd "
                     "would disagree; nothing was changed on this host: " + " | ".join(problems))
        return
    host.noop("ProFTPd will use the fragment's passive ports")
