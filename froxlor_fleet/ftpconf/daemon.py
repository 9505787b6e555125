"""Which FTP daemon the ftp role manages on a host: the ``ftp_daemon`` data key against
what the host's dump found installed.
"""

from __future__ import annotations

from .dump import DAEMONS, FtpConfig

DAEMON_TITLES = {"proftpd": "ProFTPd", "pureftpd": "pure-ftpd"}


def _daemon_state(cfg: FtpConfig, daemon: str) -> str:
    running = "running" if daemon in cfg.running else "not running"
    return f"{DAEMON_TITLES[daemon]} ({cfg.installed[daemon]}, {running})"


def choose_daemon(cfg: FtpConfig, wanted: str = "auto") -> tuple[str | None, str | None]:
    """``(daemon, None)`` with daemon ``"proftpd"``/``"pureftpd"``, or ``(None, error line)``.

    ``wanted``: the ``ftp_daemon`` data key: ``auto`` (the one installed), ``proftpd`` or
    ``pureftpd`` (insist). Installed means its binary is there: config directories stay
    behind after ``apt remove``, so they prove nothing."""
    if wanted not in ("auto", *DAEMONS):
        return None, f"ftp_daemon must be 'auto', 'proftpd' or 'pureftpd', not {wanted!r}"
    if wanted != "auto":
        if wanted in cfg.installed:
            return wanted, None
        package = "proftpd-basic" if wanted == "proftpd" else "pure-ftpd-mysql"
        return None, (f"ftp_daemon is {wanted!r}, but {DAEMON_TITLES[wanted]} is not installed "
                      f"on this host (froxlor uses {package}); install it first, this deploy "
                      "does not install an FTP server unasked")
    found = [d for d in DAEMONS if d in cfg.installed]
    if not found:
        return None, ("the ftp role needs an FTP server, but neither ProFTPd nor pure-ftpd is "
                      "installed on this host; install the one froxlor is configured for, "
                      "this deploy does not install an FTP server unasked")
    if len(found) > 1:
        return None, (f"both {_daemon_state(cfg, 'proftpd')} and {_daemon_state(cfg, 'pureftpd')} "
                      "are installed on this host; set ftp_daemon to 'proftpd' or 'pureftpd' "
                      "in its data to say which one the ftp role manages")
    return found[0], None
