"""Which FTP daemon the ftp role manages on a host: the ``ftp_daemon`` data key against
what the host's dump found installed.
"""

from __future__ import annotations

from typing import NamedTuple

from .dump import DAEMONS, FtpConfig

DAEMON_TITLES = {"proftpd": "ProFTPd", "pureftpd": "pure-ftpd"}


class DaemonChoice(NamedTuple):
    """``DaemonChoice("proftpd", None)`` or ``DaemonChoice(None, "the ftp role needs ...")``."""

    daemon: str | None  # "proftpd" or "pureftpd"
    refusal: str | None  # why none can be served, one line


def _daemon_state(cfg: FtpConfig, daemon: str) -> str:
    running = "running" if daemon in cfg.running else "not running"
    return f"{DAEMON_TITLES[daemon]} ({cfg.installed[daemon]}, {running})"


def choose_daemon(cfg: FtpConfig, wanted: str = "auto") -> DaemonChoice:
    """``(daemon, None)`` with daemon ``"proftpd"``/``"pureftpd"``, or ``(None, error line)``:
    the one place this is decided (a deploy asks once per host and run: ``ftpplan``).

    ``wanted``: the ``ftp_daemon`` data key: ``auto`` (the one installed), ``proftpd`` or
    ``pureftpd`` (insist). Installed means its binary is there: config directories stay
    behind after ``apt remove``, so they prove nothing."""
    if wanted not in ("auto", *DAEMONS):
        return DaemonChoice(None, "ftp_daemon must be 'auto', 'proftpd' or 'pureftpd', "
                                  f"not {wanted!r}")
    if wanted != "auto":
        if wanted in cfg.installed:
            return DaemonChoice(wanted, None)
        package = "proftpd-basic" if wanted == "proftpd" else "pure-ftpd-mysql"
        return DaemonChoice(None, f"ftp_daemon is {wanted!r}, but {DAEMON_TITLES[wanted]} is not "
                                  f"installed on this host (froxlor uses {package}); install it "
                                  "first, this deploy does not install an FTP server unasked")
    found = [d for d in DAEMONS if d in cfg.installed]
    if not found:
        return DaemonChoice(None, "the ftp role needs an FTP server, but neither ProFTPd nor "
                                  "pure-ftpd is installed on this host; install the one froxlor is "
                                  "configured for, this deploy does not install an FTP server "
                                  "unasked")
    if len(found) > 1:
        return DaemonChoice(None, f"both {_daemon_state(cfg, 'proftpd')} and "
                                  f"{_daemon_state(cfg, 'pureftpd')} are installed on this host; "
                                  "set ftp_daemon to 'proftpd' or 'pureftpd' in its data to say "
                                  "which one the ftp role manages")
    return DaemonChoice(found[0], None)
