"""Helpers shared by the lab test modules: the expected state oracle, probes, resets."""

from __future__ import annotations

import ftplib
import ssl
import subprocess
import time

from conftest import TEST_LAB, results
from lab import netns_hosts
from lab.check import probe

UFW_OP = "froxlor firewall | UFW rules, policies and state"
FTP_OP = "froxlor firewall | ProFTPd passive-port fragment"
FRAGMENT = "/etc/proftpd/conf.d/froxlor-fleet-passive-ports.conf"
PASSIVE = (50000, 50100)  # the lab's ftp_servers group data

# The oracle: what `ufw show added` must list per kind of host (written by hand from
# froxlor's port table, not derived from the code under test).
EXPECTED = {
    "web": ["ufw allow 21/tcp comment 'froxlor-fleet:ftp'",
            "ufw allow 50000:50100/tcp comment 'froxlor-fleet:ftp'",
            "ufw allow 22/tcp comment 'froxlor-fleet:ssh'",
            "ufw allow 80,443/tcp comment 'froxlor-fleet:web'"],
    "mail": ["ufw allow 143,993/tcp comment 'froxlor-fleet:imap'",
             "ufw allow 110,995/tcp comment 'froxlor-fleet:pop3'",
             "ufw allow 25,465,587/tcp comment 'froxlor-fleet:smtp'",
             "ufw allow 22/tcp comment 'froxlor-fleet:ssh'"],
    "dns": ["ufw allow 53/tcp comment 'froxlor-fleet:dns'",
            "ufw allow 53/udp comment 'froxlor-fleet:dns'",
            "ufw allow 22/tcp comment 'froxlor-fleet:ssh'"],
    "db": ["ufw allow from 10.213.78.11 to any port 3306 proto tcp comment 'froxlor-fleet:mysql'",
           "ufw allow from 10.213.78.12 to any port 3306 proto tcp comment 'froxlor-fleet:mysql'",
           "ufw allow 22/tcp comment 'froxlor-fleet:ssh'"],
}


def ftp_transfer(ip: str, timeout: float, name: str = "hello.txt") -> tuple[int, bytes]:
    """Anonymous passive-mode RETR over explicit FTPS, as froxlor's ProFTPd requires
    (``TLSRequired on``): AUTH TLS, then ``PROT P`` so the data channel is encrypted too
    and no firewall helper could read the PASV reply. Returns (the data port the client
    really connected to, the data)."""
    ftp = ftplib.FTP_TLS(ip, timeout=timeout)
    try:
        ftp.login()  # AUTH TLS first: a plain USER is refused by TLSRequired
        ftp.prot_p()
        ftp.set_pasv(True)
        ftp.voidcmd("TYPE I")
        conn = ftp.transfercmd(f"RETR {name}")
        try:
            port = conn.getpeername()[1]
            chunks = []
            while chunk := conn.recv(65536):
                chunks.append(chunk)
            if isinstance(conn, ssl.SSLSocket):
                conn.unwrap()
        finally:
            conn.close()
        ftp.voidresp()
        return port, b"".join(chunks)
    finally:
        try:
            ftp.close()
        except OSError:
            pass


def cut_by_a_restart(error: Exception) -> bool:
    """What a client meets while ProFTPd restarts: the connection refused, or a session
    it already had closed under it (reset, EOF, TLS EOF, a 421). Not a timeout: a
    transfer that times out has stalled on a port the firewall drops."""
    if isinstance(error, TimeoutError):
        return False
    return isinstance(error, (ConnectionError, EOFError, ssl.SSLError, ftplib.error_temp))


def connect(ip: str, port: int, timeout: float = 2.0) -> str:
    """A TCP connect from the control side: connected, refused (RST) or timeout."""
    outcome = probe(ip, port, timeout)
    return {"open": "connected", "closed": "refused", "blocked": "timeout"}[outcome]


def assert_no_change(res) -> None:
    rows = results(res.out)
    assert set(rows) == {UFW_OP, FTP_OP}, res.out
    for op, (hosts, success, error, no_change) in rows.items():
        assert (success, error, no_change) == ("-", "-", hosts), (op, res.out)



def reset_ufw(lab, name: str) -> None:
    """Put a lab host's UFW back to a fresh install (files from the packages)."""
    netns_hosts.reset_ufw(name)


def ufw_view(lab, name: str) -> dict[str, str]:
    """Everything ufw keeps or shows: rule files, config, status and the live chains."""
    hd = TEST_LAB / "hosts" / name
    view = {f: (hd / "etc-ufw" / f).read_text() for f in ("user.rules", "user6.rules", "ufw.conf")}
    view["default-ufw"] = (hd / "default-ufw").read_text()
    view["status"] = lab.sh(name, "ufw status verbose").stdout
    return view | lab.live_chains(name)


def wait_until(predicate, timeout: float, step: float = 0.2) -> bool:
    """Poll ``predicate`` every ``step`` s until it holds or ``timeout`` s pass."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step)
    return predicate()


# Plain TCP listeners on a lab host (something "in use" on a port): argv[1] the pid file,
# then the ports.
LISTENER = r"""
import os, socket, sys, time
socks = []
for port in map(int, sys.argv[2:]):
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("0.0.0.0", port)); s.listen(16); socks.append(s)
open(sys.argv[1], "w").write(str(os.getpid()))
time.sleep(600)
"""


def start_listener(lab, name: str, ports: list[str], pidfile: str) -> subprocess.Popen:
    """LISTENER on ``name``, once it listens (its pid file is written after the binds)."""
    proc = subprocess.Popen(netns_hosts.nsenter(name, "python3", "-c", LISTENER, pidfile, *ports))
    wait_until(lambda: lab.sh(name, f"test -s {pidfile}", check=False).returncode == 0, 5, 0.05)
    return proc


def stop_listener(lab, name: str, proc: subprocess.Popen, pidfile: str) -> None:
    lab.sh(name, f"kill $(cat {pidfile}); rm -f {pidfile}", check=False)
    proc.wait(timeout=10)
