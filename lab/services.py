"""A namespace host's services (its sshd and proftpd), and waiting for SSH."""

from __future__ import annotations

import socket
import time
from pathlib import Path

from lab.common import run
from lab.netns_hosts import nsenter


def start_services(name: str, hd: Path) -> None:
    if run(*nsenter(name, "sh", "-c", "[ -s /run/sshd.pid ] && kill -0 $(cat /run/sshd.pid)"),
           check=False).returncode != 0:
        run(*nsenter(name, "/usr/sbin/sshd", "-f", str(hd / "sshd_config")))
    if run(*nsenter(name, "sh", "-c", "[ -s /run/proftpd.pid ] && kill -0 $(cat /run/proftpd.pid)"),
           check=False).returncode != 0:
        run(*nsenter(name, "/usr/sbin/proftpd"))



def wait_ssh(ips: list[str], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    pending = set(ips)
    while pending and time.monotonic() < deadline:
        for ip in list(pending):
            try:
                with socket.create_connection((ip, 22), timeout=1):
                    pending.discard(ip)
            except OSError:
                pass
        time.sleep(0.1)
    if pending:
        raise RuntimeError(f"sshd did not answer on {', '.join(sorted(pending))}")
