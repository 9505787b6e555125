"""A namespace lab seen from the control side: ``status`` (hosts, whether sshd / proftpd
answer) and ``check`` (each host's UFW state and a TCP port check)."""

from __future__ import annotations

import json
import socket

from lab.common import die, preflight
from lab.config import LAB_DIR
from lab.netns_hosts import exec_in, holder_pid


def status() -> None:
    preflight()
    if not (LAB_DIR / "lab.json").exists():
        print("lab: not up")
        return
    info = json.loads((LAB_DIR / "lab.json").read_text())
    for h in info["hosts"]:
        up_ = holder_pid(h["name"]) is not None
        ports = []
        for port in (22, 21):
            try:
                with socket.create_connection((h["ip"], port), timeout=1):
                    ports.append(f"{port}:open")
            except OSError:
                ports.append(f"{port}:closed")
        state = "running" if up_ else "STOPPED"
        print(f"{h['name']:10} {h['ip']:15} {h['kind']:5} {state} {' '.join(ports)}")



CHECK_PORTS = [("ssh", 22), ("ftp", 21), ("http", 80), ("https", 443), ("smtp", 25),
               ("smtps", 465), ("submission", 587), ("imap", 143), ("imaps", 993),
               ("pop3", 110), ("pop3s", 995), ("dns", 53), ("mysql", 3306), ("passive", 50050)]


def probe(ip: str, port: int, timeout: float = 1.5) -> str:
    """open: something answered; closed: firewall admits, nothing listens (RST);
    blocked: no answer (UFW drops it)."""
    try:
        with socket.create_connection((ip, port), timeout=timeout):
            return "open"
    except ConnectionRefusedError:
        return "closed"
    except OSError:
        return "blocked"



def check() -> None:
    """Per-host UFW result and a TCP port check from the control side."""
    from concurrent.futures import ThreadPoolExecutor

    preflight()
    if not (LAB_DIR / "lab.json").exists():
        die("lab is not up")
    info = json.loads((LAB_DIR / "lab.json").read_text())
    hosts = info["hosts"]
    with ThreadPoolExecutor(max_workers=64) as pool:
        results = {(h["name"], port): pool.submit(probe, h["ip"], port)
                   for h in hosts for _, port in CHECK_PORTS}
        mark = {"open": "open", "closed": "adm", "blocked": "-"}
        print(f"{'host':9} {'kind':5} {'ufw':8} " + " ".join(f"{p:>5}" for _, p in CHECK_PORTS))
        for h in hosts:
            status = exec_in(h["name"], "ufw", "status", check=False).stdout
            active = "active" if "Status: active" in status else "inactive"
            cells = [mark[results[(h["name"], p)].result()] for _, p in CHECK_PORTS]
            print(f"{h['name']:9} {h['kind']:5} {active:8} " + " ".join(f"{c:>5}" for c in cells))
    print("open: a service answered; adm: the firewall admits it (nothing listens); "
          "-: blocked (no answer)")
